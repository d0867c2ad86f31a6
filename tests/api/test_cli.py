"""The ``hostcraft`` command end to end: a real ``hostcraft up`` process and CLI subprocesses."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKENDS, _database_url

pytestmark = pytest.mark.docker
HOSTCRAFT = str(Path(sys.executable).parent / "hostcraft")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Control:
    """A running ``hostcraft up`` and a way to run CLI commands against it."""

    def __init__(self, tmp_path: Path, database_url: str, *, local_engine: str | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HOSTCRAFT_DATA_DIR": str(tmp_path / "data"),
            "HOSTCRAFT_DATABASE_URL": database_url,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "HOSTCRAFT_SERVER_HEALTH_INTERVAL_SECONDS": "3600",
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        self.env.pop("HOSTCRAFT_TOKEN", None)
        self.env.pop("HOSTCRAFT_URL", None)
        if local_engine:
            self.env["HOSTCRAFT_LOCAL_ENGINE"] = local_engine
        self.log = tmp_path / "up.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [HOSTCRAFT, "up", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self.log.read_text()
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"hostcraft up did not answer:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def run(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if token:
            env["HOSTCRAFT_TOKEN"] = token
        return subprocess.run(
            [HOSTCRAFT, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    def json(self, *args: str, token: str | None = None) -> Any:
        result = self.run(*args, "-o", "json", token=token)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(params=BACKENDS)
def control(request: pytest.FixtureRequest, tmp_path: Path, docker_engine: object) -> Iterator[Control]:
    for url in _database_url(request.param, tmp_path):
        control = Control(tmp_path, url)
        try:
            yield control
        finally:
            control.stop()


def test_first_up_prints_admin_token_and_registers_local_engine(control: Control) -> None:
    output = control.start()
    match = re.search(r"^\s+(hc_\S+)$", output, re.MULTILINE)
    assert match, output
    assert "registered the local engine as server" in output
    servers = control.json("server", "ls")
    assert [s["endpoint"] for s in servers] == ["unix:///var/run/docker.sock"]
    assert servers[0]["regionCode"] == "default"
    config = Path(control.env["XDG_CONFIG_HOME"]) / "hostcraft" / "cli.json"
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert json.loads(config.read_text())["token"] == match.group(1)

    control.stop()
    again = control.start()
    assert "first start" not in again[len(output) :]
    assert not re.search(r"^\s+hc_\S+$", again[len(output) :], re.MULTILINE)
    assert "local engine already registered" in again[len(output) :]


def test_cli_manages_regions_servers_and_health(control: Control) -> None:
    control.start()
    health = control.json("server", "health", control.json("server", "ls")[0]["name"], "--refresh")
    assert health["status"] in ("healthy", "degraded")
    assert health["latest"]["resources"]["measured"] is True

    region = control.json("region", "add", "US East (DR)", "--code", "us-east-1", "--priority", "2")
    assert region == {**region, "code": "us-east-1", "isPrimary": False, "priority": 2}
    assert control.json("region", "show", "us-east-1")["name"] == "US East (DR)"
    table = control.run("region", "ls")
    assert table.returncode == 0
    assert "us-east-1" in table.stdout

    bad = control.run("region", "add", "Bad", "--code", "EU_West")
    assert bad.returncode == 1
    assert "invalid region code 'EU_West'" in bad.stderr

    ghost = control.run(
        "server", "add", "ghost", "--endpoint", "unix:///run/hostcraft-none.sock", "--region", "us-east-1"
    )
    assert ghost.returncode == 1
    assert "unreachable" in ghost.stderr
    assert "[422 validation_error]" in ghost.stderr

    added = control.json(
        "server",
        "add",
        "ghost",
        "--endpoint",
        "unix:///run/hostcraft-none.sock",
        "--region",
        "us-east-1",
        "--skip-validation",
    )
    assert added["regionCode"] == "us-east-1"
    down = control.run("server", "health", "ghost", "--refresh")
    assert down.returncode == 2
    assert "unreachable" in down.stdout
    assert control.run("region", "rm", "us-east-1").returncode == 1
    assert control.run("server", "rm", "ghost").returncode == 0
    assert control.run("region", "rm", "us-east-1").returncode == 0


def test_cli_tokens_and_viewer_limits(control: Control) -> None:
    control.start()
    created = control.json("token", "create", "--name", "readonly", "--role", "viewer")
    viewer = created["token"]
    assert control.json("region", "ls", token=viewer)[0]["code"] == "default"
    refused = control.run("region", "add", "X", "--code", "x", token=viewer)
    assert refused.returncode == 1
    assert "viewer tokens may only read" in refused.stderr

    listed = control.json("token", "ls")
    assert {t["name"] for t in listed} == {"admin", "readonly"}
    assert viewer not in json.dumps(listed)
    assert control.run("token", "revoke", str(created["id"])).returncode == 0
    revoked = control.run("region", "ls", token=viewer)
    assert revoked.returncode == 1
    assert "invalid or revoked API token" in revoked.stderr


def test_cli_uptime_report_formats(control: Control) -> None:
    control.start()
    csv_output = control.run("report", "uptime", "--window", "7d", "-o", "csv")
    assert csv_output.returncode == 0, csv_output.stderr
    assert csv_output.stdout.splitlines()[0].startswith(
        "applicationId,application,window,availabilityPercent"
    )
    report = control.json("report", "uptime")
    assert report["applications"] == []
    refused = control.run("report", "uptime", "--window", "1w", "-o", "csv")
    assert refused.returncode == 1
    assert "invalid window" in refused.stderr


def test_cli_reports_unreachable_api(tmp_path: Path) -> None:
    control = Control(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")
    result = control.run("region", "ls", token="hc_x")
    assert result.returncode == 1
    assert (
        "cannot reach HostCraft at http://127.0.0.1:8080" in result.stderr or "cannot reach" in result.stderr
    )


def test_up_starts_without_an_engine_and_says_what_to_do(tmp_path: Path) -> None:
    control = Control(
        tmp_path, f"sqlite:///{tmp_path / 'hostcraft.db'}", local_engine="unix:///run/hostcraft-none.sock"
    )
    try:
        output = control.start()
    finally:
        control.stop()
    assert "no local Docker engine responded at unix:///run/hostcraft-none.sock" in output
    assert "hostcraft server add NAME --endpoint URL --region CODE" in output
