"""``hostcraft alert`` and ``hostcraft maintenance`` against a real ``hostcraft up`` process."""

from __future__ import annotations

import subprocess

import pytest

from tests.alert_receivers import WebhookReceiver
from tests.api.test_cli import HOSTCRAFT, Control, control  # noqa: F401

pytestmark = pytest.mark.docker


def test_cli_manages_channels_and_alerts(control: Control, webhook: WebhookReceiver) -> None:  # noqa: F811
    control.start()
    url = webhook.url("hooks/cli-secret-part")
    added = subprocess.run(
        [HOSTCRAFT, "alert", "channel", "add", "ops", "--trigger", "quorum_lost", "-o", "json"],
        env={**control.env, "HOSTCRAFT_ALERT_CHANNEL_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    from_stdin = subprocess.run(
        [HOSTCRAFT, "alert", "channel", "add", "second"],
        env=control.env,
        input=url + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert from_stdin.returncode == 0, from_stdin.stderr

    channels = control.json("alert", "channel", "ls")
    assert [channel["name"] for channel in channels] == ["ops", "second"]
    assert channels[0]["triggers"] == ["quorum_lost"]
    assert "cli-secret-part" not in control.run("alert", "channel", "ls").stdout
    assert control.json("alert", "channel", "test", "ops")["delivered"] is True
    assert webhook.titles() == ["HostCraft test message"]

    webhook.fail_with = 500
    failed = control.run("alert", "channel", "test", "second")
    assert failed.returncode == 1
    assert "failed" in failed.stdout

    assert control.json("alert", "ls", "--status", "open") == []
    assert control.run("alert", "channel", "rm", "second").returncode == 0
    assert [channel["name"] for channel in control.json("alert", "channel", "ls")] == ["ops"]


def test_cli_manages_maintenance_windows(control: Control) -> None:  # noqa: F811
    control.start()
    window = control.json(
        "maintenance",
        "add",
        "--region",
        "default",
        "--cron",
        "0 2 * * SUN",
        "--duration",
        "90",
        "--timezone",
        "Europe/Berlin",
        "--reason",
        "kernel updates",
    )
    assert window["cron"] == "0 2 * * SUN"
    assert window["timezone"] == "Europe/Berlin"

    bad = control.run("maintenance", "add", "--region", "default", "--cron", "0 2 * * SUN", "--duration", "0")
    assert bad.returncode == 1
    assert "durationMinutes" in bad.stderr
    neither = control.run("maintenance", "add", "--cron", "0 2 * * *", "--duration", "5")
    assert neither.returncode == 1

    table = control.run("maintenance", "ls")
    assert "kernel updates" in table.stdout
    assert control.run("maintenance", "rm", str(window["id"])).returncode == 0
    assert control.json("maintenance", "ls") == []
