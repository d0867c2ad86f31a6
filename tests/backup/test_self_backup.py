"""HostCraft's own backup and ``hostcraft restore-self`` on a fresh data directory (and database).

Real restic, real S3 (moto on loopback), real SQLite online backups and real pg_dump/pg_restore;
restore-self runs as a subprocess with no HostCraft running.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hostcraft.config import Settings
from hostcraft.runtime import Runtime
from hostcraft.services.alerts import find_open_alert
from hostcraft.services.applications import get_application, list_applications, secret_values
from hostcraft.services.backup_destinations import list_destinations, repository_for
from hostcraft.services.self_backup import ALERT_CAUSE, run_due_self_backup
from hostcraft.store.models import Region, SelfBackup, Server
from tests.backup.test_destinations import local_destination, s3_destination
from tests.conftest import Api, create_region
from tests.s3_server import S3Server, free_port

HOSTCRAFT = str(Path(sys.executable).parent / "hostcraft")


def populate(api: Api) -> dict[str, Any]:
    """Create two regions, a server, an app with a secret; return the app."""
    region = create_region(api)
    create_region(api, "us-east-1", primary=False, priority=2)
    server = api.post(
        "/api/servers",
        {
            "name": "node-1",
            "endpoint": "unix:///run/hc-none.sock",
            "regionId": region["id"],
            "skipValidation": True,
        },
    )
    assert server.status_code == 201, server.text
    app = api.post(
        "/api/applications",
        {
            "name": "web",
            "image": "127.0.0.1:5000/web:v1",
            "secrets": [{"name": "db-password", "value": "s3cr3t"}],
        },
    )
    assert app.status_code == 201, app.text
    return dict(app.json())


def run_self_backup(api: Api, destination: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/api/self-backup/run?wait=true", {"destinationId": destination["id"]})
    assert response.status_code == 202, response.text
    return dict(response.json())


@pytest.fixture
def fresh_database(api: Api) -> Iterator[str | None]:
    """An empty PostgreSQL database when the runtime uses PostgreSQL, else None."""
    if api.runtime.store.url.startswith("sqlite"):
        yield None
        return
    admin_url = os.environ["HOSTCRAFT_TEST_POSTGRES_URL"]
    name = f"hc_restore_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def restore_self(
    *args: str, repository: str, password_file: Path, data_dir: Path, s3: S3Server | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    if s3 is not None:
        environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"] = s3.keys["admin"]
    command = [HOSTCRAFT, "restore-self", "--repository", repository, "--password-file", str(password_file)]
    return subprocess.run(
        [*command, "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )


def export_password(api: Api, destination: dict[str, Any], folder: Path) -> Path:
    password = api.post(f"/api/backup-destinations/{destination['id']}/export-key").json()["password"]
    path = folder / "restic-password"
    path.write_text(password + "\n")
    return path


def test_restore_self_on_fresh_machine(
    api: Api, s3: S3Server, tmp_path: Path, fresh_database: str | None
) -> None:
    app = populate(api)
    destination = s3_destination(api, s3, name="offsite")
    done = run_self_backup(api, destination)
    assert done["status"] == "succeeded", done
    assert [part["part"] for part in done["snapshots"]] == ["store", "key"]
    assert done["store"] == ("sqlite" if fresh_database is None else "postgresql")
    password_file = export_password(api, destination, tmp_path)
    new_dir = tmp_path / "new-machine"
    database_args = ["--database-url", fresh_database] if fresh_database else []

    result = restore_self(
        *database_args,
        repository=destination["repository"],
        password_file=password_file,
        data_dir=new_dir,
        s3=s3,
    )

    assert result.returncode == 0, result.stderr + result.stdout
    assert "hostcraft up" in result.stdout
    assert (new_dir / "secret.key").stat().st_mode & 0o777 == 0o600
    if fresh_database is None:
        assert (new_dir / "hostcraft.db").exists()
    restored = Runtime.create(Settings(data_dir=new_dir, database_url=fresh_database, engine_enabled=False))
    try:
        with restored.store.session() as session:
            assert [item.name for item in list_applications(session)] == ["web"]
            assert [item.name for item in list_destinations(session)] == ["offsite"]
            assert sorted(region.code for region in session.query(Region)) == ["eu-west-1", "us-east-1"]
            assert [server.name for server in session.query(Server)] == ["node-1"]
            assert secret_values(get_application(session, app["id"]), restored) == {"db-password": "s3cr3t"}
            [offsite] = list_destinations(session)
            assert repository_for(offsite, restored).password == password_file.read_text().strip()
    finally:
        restored.close()


def test_restore_self_from_local_repository(api: Api, tmp_path: Path, fresh_database: str | None) -> None:
    populate(api)
    destination = local_destination(api, tmp_path / "self-repo", name="disk")
    first = run_self_backup(api, destination)
    api.post("/api/regions", {"name": "LATER", "code": "ap-south-1", "isPrimary": False, "priority": 3})
    second = run_self_backup(api, destination)
    password_file = export_password(api, destination, tmp_path)
    database_args = ["--database-url", fresh_database] if fresh_database else []

    older = restore_self(
        *database_args,
        "--snapshot",
        first["snapshotIds"][0],
        repository=destination["repository"],
        password_file=password_file,
        data_dir=tmp_path / "older",
    )

    assert second["status"] == "succeeded"
    assert older.returncode == 0, older.stderr + older.stdout
    restored = Runtime.create(
        Settings(data_dir=tmp_path / "older", database_url=fresh_database, engine_enabled=False)
    )
    try:
        with restored.store.session() as session:
            assert "ap-south-1" not in {region.code for region in session.query(Region)}
    finally:
        restored.close()


def test_restore_self_rejects_wrong_password(api: Api, tmp_path: Path) -> None:
    populate(api)
    destination = local_destination(api, tmp_path / "self-repo", name="disk")
    run_self_backup(api, destination)
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")

    result = restore_self(
        repository=destination["repository"], password_file=wrong, data_dir=tmp_path / "new"
    )

    assert result.returncode != 0
    assert "wrong password" in result.stderr
    assert not (tmp_path / "new" / "secret.key").exists()


def test_restore_self_keeps_existing_store(api: Api, tmp_path: Path) -> None:
    populate(api)
    destination = local_destination(api, tmp_path / "self-repo", name="disk")
    run_self_backup(api, destination)
    password_file = export_password(api, destination, tmp_path)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "hostcraft.db").write_bytes(b"someone else's store")
    # PostgreSQL: the runtime's own database is the non-empty target.
    database_args = (
        [] if api.runtime.store.url.startswith("sqlite") else ["--database-url", api.runtime.store.url]
    )

    result = restore_self(
        *database_args, repository=destination["repository"], password_file=password_file, data_dir=occupied
    )

    assert result.returncode != 0
    assert ("already exists" if not database_args else "is not empty") in result.stderr
    assert (occupied / "hostcraft.db").read_bytes() == b"someone else's store"
    assert not (occupied / "secret.key").exists()
    with api.runtime.store.session() as session:
        assert [item.name for item in list_applications(session)] == ["web"]


def test_failed_self_backup_alerts(api: Api, s3: S3Server) -> None:
    populate(api)
    closed = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    destination = s3_destination(api, s3, name="gone", endpoint=closed, bucket="any-bucket")

    done = run_self_backup(api, destination)

    assert done["status"] == "failed"
    assert "connection refused" in done["message"]
    with api.runtime.store.session() as session:
        alert = find_open_alert(session, ALERT_CAUSE)
        assert alert is not None
        assert alert.trigger == "backup_failure"


def test_self_backup_runs_on_schedule(api: Api, tmp_path: Path) -> None:
    populate(api)
    destination = local_destination(api, tmp_path / "self-repo", name="disk")
    api.runtime.settings.self_backup_schedule = "0 3 * * *"
    api.runtime.settings.self_backup_destination = "disk"
    night = dt.datetime(2024, 5, 1, 1, 0, tzinfo=dt.UTC)

    assert run_due_self_backup(api.runtime, now=night) is None
    started = run_due_self_backup(api.runtime, now=night + dt.timedelta(days=2), wait=True)
    again = run_due_self_backup(api.runtime, now=night + dt.timedelta(days=2, minutes=1), wait=True)

    assert started is not None
    assert again is None
    status = api.get("/api/self-backup").json()
    assert status["schedule"] == "0 3 * * *"
    assert status["nextRunAt"] == "2024-05-03T03:00:00Z"
    assert [(run["id"], run["status"], run["trigger"]) for run in status["runs"]] == [
        (started, "succeeded", "schedule")
    ]
    assert status["runs"][0]["destinationId"] == destination["id"]


def test_self_backup_without_destination_rejected(api: Api) -> None:
    response = api.post("/api/self-backup/run", {})
    viewer = api.request("POST", "/api/self-backup/run", role="viewer", json={})

    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "destinationId"
    assert viewer.status_code == 403


def test_invalid_self_backup_schedule_rejected() -> None:
    with pytest.raises(ValueError, match="invalid cron expression"):
        Settings(self_backup_schedule="every night")


def test_interrupted_self_backup_does_not_block(api: Api, tmp_path: Path) -> None:
    destination = local_destination(api, tmp_path / "self-repo", name="disk")
    with api.runtime.store.session() as session:
        stale = SelfBackup(
            destination_id=destination["id"],
            destination_name="disk",
            status="running",
            actor="t",
            store_kind="sqlite",
            started_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
        )
        session.add(stale)
        session.commit()
        stale_id = stale.id

    done = run_self_backup(api, destination)

    assert done["status"] == "succeeded", done
    runs = {run["id"]: run for run in api.get("/api/self-backup").json()["runs"]}
    assert runs[stale_id]["status"] == "failed"
    assert "interrupted" in runs[stale_id]["message"]
