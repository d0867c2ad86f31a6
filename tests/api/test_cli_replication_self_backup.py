"""CLI end to end: replicated backups listed by region, self-backup, and restore-self onto a new machine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_cli import Control
from tests.conftest import BACKENDS, _database_url

pytestmark = pytest.mark.docker


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, docker_engine: object) -> str:
    return str(request.param)


@pytest.fixture
def old_control(backend: str, tmp_path: Path) -> Iterator[Control]:
    (tmp_path / "old").mkdir()
    for url in _database_url(backend, tmp_path / "old"):
        control = Control(tmp_path / "old", url)
        try:
            yield control
        finally:
            control.stop()


@pytest.fixture
def new_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    (tmp_path / "new").mkdir()
    yield from _database_url(backend, tmp_path / "new")


def test_cli_replicates_and_restores_control_plane(
    old_control: Control, new_database_url: str, tmp_path: Path
) -> None:
    old_control.start()
    token = json.loads((Path(old_control.env["XDG_CONFIG_HOME"]) / "hostcraft" / "cli.json").read_text())[
        "token"
    ]
    region_b = old_control.json("region", "add", "US East", "--code", "us-east-1", "--priority", "2")
    offsite = old_control.json(
        "backup",
        "destination",
        "add",
        "offsite",
        "--path",
        str(tmp_path / "repo-b"),
        "--region",
        str(region_b["id"]),
    )
    disk = old_control.json(
        "backup",
        "destination",
        "add",
        "disk",
        "--path",
        str(tmp_path / "repo-a"),
        "--replicate-to",
        str(offsite["id"]),
    )
    created = httpx.post(
        f"{old_control.url}/api/applications",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "name": "web",
            "image": "127.0.0.1:5000/web:v1",
            "secrets": [{"name": "api-key", "value": "k-123"}],
        },
    )
    assert created.status_code == 201, created.text

    backup = old_control.json("backup", "create", "web", "--type", "config", "--destination", str(disk["id"]))
    shown = old_control.json("backup", "show", str(backup["id"]))
    table = old_control.run("backup", "show", str(backup["id"]))
    in_region = old_control.json("backup", "ls", "--region", "us-east-1")

    assert backup["status"] == "succeeded"
    assert [(item["destination"], item["status"]) for item in shown["replicas"]] == [("offsite", "succeeded")]
    assert "offsite" in table.stdout
    assert [(item["id"], item["availableFrom"]["destination"]) for item in in_region] == [
        (backup["id"], "offsite")
    ]

    self_run = old_control.json("self-backup", "run", "--destination", str(disk["id"]))
    runs = old_control.json("self-backup", "ls")["runs"]
    password = old_control.run("backup", "destination", "export-key", str(disk["id"])).stdout.strip()
    old_control.stop()

    assert self_run["status"] == "succeeded", self_run
    assert [item["id"] for item in runs] == [self_run["id"]]
    password_file = tmp_path / "restic-password"
    password_file.write_text(password)
    new_control = Control(tmp_path / "new", new_database_url)
    # The new machine has no CLI settings yet: the operator points the CLI at it with the old token.
    new_control.env["HOSTCRAFT_URL"] = new_control.url
    restored = new_control.run(
        "restore-self",
        "--repository",
        str(tmp_path / "repo-a"),
        "--password-file",
        str(password_file),
        "--data-dir",
        new_control.env["HOSTCRAFT_DATA_DIR"],
        "--database-url",
        new_database_url,
    )
    assert restored.returncode == 0, restored.stderr + restored.stdout
    assert "hostcraft up" in restored.stdout

    try:
        startup = new_control.start()
        assert "first start" not in startup
        apps = new_control.json("app", "ls", token=token)
        destinations = new_control.json("backup", "destination", "ls", token=token)
        again = new_control.json("backup", "show", str(backup["id"]), token=token)
        exported = new_control.run("backup", "destination", "export-key", str(disk["id"]), token=token)
    finally:
        new_control.stop()
    assert [item["name"] for item in apps] == ["web"]
    assert sorted(item["name"] for item in destinations) == ["disk", "offsite"]
    assert again["replicas"][0]["status"] == "succeeded"
    assert exported.stdout.strip() == password
