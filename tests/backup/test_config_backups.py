"""Config backups, schedules and retention through the API, with real restic and real S3 (moto)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from hostcraft.services import backups as backups_service
from hostcraft.services.backup_schedules import prune_expired, run_due_backups
from hostcraft.store.models import Backup, BackupSchedule
from tests.backup.test_destinations import local_destination, s3_destination
from tests.conftest import Api, create_region
from tests.lab_fixtures import wait_for
from tests.s3_server import S3Server, free_port

IMAGE = "127.0.0.1:5000/hostcraft/webapp:v1"


def create_app(api: Api, **fields: Any) -> dict[str, Any]:
    create_region(api)
    body = {
        "name": "web",
        "image": IMAGE,
        "env": {"MODE": "prod"},
        "secrets": [{"name": "db-password", "value": "s3cr3t"}],
    }
    response = api.post("/api/applications", {**body, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def backup(
    api: Api, app: dict[str, Any], destination: dict[str, Any], kind: str = "config"
) -> dict[str, Any]:
    response = api.post(
        f"/api/applications/{app['id']}/backups?wait=true", {"type": kind, "destinationId": destination["id"]}
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_config_round_trip_restores_spec_and_secret(
    api: Api, s3: S3Server, tmp_path: Path, kind: str
) -> None:
    app = create_app(api)
    destination = s3_destination(api, s3) if kind == "s3" else local_destination(api, tmp_path / "repo")
    done = backup(api, app, destination)
    assert done["status"] == "succeeded", done
    assert done["snapshots"][0]["part"] == "config"
    assert done["checkStatus"] == "passed"
    assert "s3cr3t" not in str(done)

    changed = api.put(
        f"/api/applications/{app['id']}", {**_document(app), "env": {"MODE": "broken"}, "replicas": 3}
    )
    assert changed.status_code == 200, changed.text
    restored = api.post(f"/api/backups/{done['id']}/restore", {"mode": "replace"})
    assert restored.status_code == 200, restored.text
    after = api.get(f"/api/applications/{app['id']}").json()
    assert after["env"] == {"MODE": "prod"}
    assert after["replicas"] == 1
    with api.runtime.store.session() as session:
        from hostcraft.services.applications import get_application, secret_values

        assert secret_values(get_application(session, app["id"]), api.runtime) == {"db-password": "s3cr3t"}


def test_config_restore_as_new_app(api: Api, tmp_path: Path) -> None:
    app = create_app(api)
    done = backup(api, app, local_destination(api, tmp_path / "repo"))
    restored = api.post(f"/api/backups/{done['id']}/restore", {"mode": "new"})
    assert restored.status_code == 200, restored.text
    new_id = restored.json()["restored"][0]["applicationId"]
    new_app = api.get(f"/api/applications/{new_id}").json()
    assert new_app["name"] == f"web-r{done['id']}"
    assert new_app["regionId"] == app["regionId"]


def test_failed_backup_marked_failed_with_alert(api: Api, s3: S3Server) -> None:
    app = create_app(api)
    closed = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    done = backup(api, app, s3_destination(api, s3, endpoint=closed, bucket="any-bucket"))
    assert done["status"] == "failed"
    assert done["snapshotIds"] == []
    assert "connection refused" in done["message"]
    with api.runtime.store.session() as session:
        from hostcraft.services.alerts import find_open_alert

        alert = find_open_alert(session, f"app:{app['id']}:backup")
        assert alert is not None
        assert alert.trigger == "backup_failure"


def test_retention_keeps_success_over_failures(api: Api, s3: S3Server, tmp_path: Path) -> None:
    app = create_app(api, backupKeepLast=2, backupRetentionDays=1)
    good = backup(api, app, local_destination(api, tmp_path / "repo"))
    closed = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    broken = s3_destination(api, s3, endpoint=closed, bucket="any-bucket")
    failures = [backup(api, app, broken) for _ in range(2)]
    assert [item["status"] for item in failures] == ["failed", "failed"]

    expired = prune_expired(api.runtime, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=90))

    assert expired == []
    assert api.get(f"/api/backups/{good['id']}").json()["status"] == "succeeded"


def test_retention_forgets_expired_snapshots(api: Api, tmp_path: Path) -> None:
    app = create_app(api, backupKeepLast=1, backupRetentionDays=1)
    destination = local_destination(api, tmp_path / "repo")
    first, second = backup(api, app, destination), backup(api, app, destination)

    expired = prune_expired(api.runtime, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=90))

    assert expired == [first["id"]]
    assert api.get(f"/api/backups/{first['id']}").json()["status"] == "expired"
    assert api.get(f"/api/backups/{second['id']}").json()["status"] == "succeeded"
    from hostcraft.services.backup_destinations import find_destination, restic_for

    with api.runtime.store.session() as session:
        restic = restic_for(find_destination(session, destination["id"]), api.runtime)
        remaining = [snapshot.id[:8] for snapshot in restic.snapshots(tags=["hostcraft"])]
    assert remaining == [second["snapshotIds"][0][:8]]


def test_schedule_runs_once_after_downtime(api: Api, tmp_path: Path) -> None:
    app = create_app(api, backupSchedule="0 3 * * 7", backupDestination="disk")
    local_destination(api, tmp_path / "repo")
    wednesday = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert run_due_backups(api.runtime, now=wednesday) == []
    with api.runtime.store.session() as session:
        row = session.get(BackupSchedule, f"app:{app['id']}")
        assert row is not None
        assert row.next_run_at == dt.datetime(2024, 5, 5, 3, 0, tzinfo=dt.UTC)

    three_weeks_later = dt.datetime(2024, 5, 26, 9, 0, tzinfo=dt.UTC)
    started = run_due_backups(api.runtime, now=three_weeks_later, wait=True)
    again = run_due_backups(api.runtime, now=three_weeks_later + dt.timedelta(minutes=1), wait=True)

    assert len(started) == 1
    assert again == []
    with api.runtime.store.session() as session:
        row = session.get(BackupSchedule, f"app:{app['id']}")
        assert row is not None
        assert row.next_run_at == dt.datetime(2024, 6, 2, 3, 0, tzinfo=dt.UTC)
        backup_row = session.get(Backup, started[0])
        assert backup_row is not None
        assert (backup_row.status, backup_row.trigger) == ("succeeded", "schedule")


def test_overlapping_backup_rejected(api: Api, tmp_path: Path) -> None:
    app = create_app(api)
    destination = local_destination(api, tmp_path / "repo")
    with api.runtime.store.session() as session:
        session.add(
            Backup(
                application_id=app["id"],
                destination_id=destination["id"],
                kind="config",
                status="running",
                actor="t",
            )
        )
        session.commit()
    response = api.post(
        f"/api/applications/{app['id']}/backups", {"type": "config", "destinationId": destination["id"]}
    )
    assert response.status_code == 409
    assert "never overlap" in response.json()["error"]["message"]


def test_database_type_needs_declared_databases(api: Api, tmp_path: Path) -> None:
    app = create_app(api)
    local_destination(api, tmp_path / "repo")
    response = api.post(f"/api/applications/{app['id']}/backups", {"type": "database"})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "type"


def test_invalid_backup_policy_rejected(api: Api) -> None:
    create_region(api)
    body = {
        "name": "web",
        "image": IMAGE,
        "backupTimezone": "Mars/Olympus",
        "backupKeepLast": 0,
        "backupQuiesce": "freeze",
    }
    response = api.post("/api/applications", body)
    assert response.status_code == 422
    message = str(response.json())
    for field in ("backupTimezone", "backupKeepLast", "backupQuiesce"):
        assert field in message


def _document(app: dict[str, Any]) -> dict[str, Any]:
    document = {
        key: value
        for key, value in app.items()
        if key
        not in {
            "id",
            "regionId",
            "serviceId",
            "lastDeployment",
            "lastSucceededDeployment",
            "createdAt",
            "updatedAt",
            "region",
        }
    }
    document["secrets"] = [{"name": "db-password"}]
    return document


def test_point_in_time_restores_newest_good_backup_before(api: Api, tmp_path: Path) -> None:
    app = create_app(api)
    destination = local_destination(api, tmp_path / "repo")
    taken: list[tuple[str, dict[str, Any]]] = []
    for mode in ("one", "two", "three"):
        changed = api.put(f"/api/applications/{app['id']}", {**_document(app), "env": {"MODE": mode}})
        assert changed.status_code == 200, changed.text
        done = backup(api, app, destination)
        assert done["status"] == "succeeded", done
        taken.append((mode, done))
    # A failed attempt after "two" must never be chosen.
    with api.runtime.store.session() as session:
        second = session.get(Backup, taken[1][1]["id"])
        assert second is not None
        failed = Backup(
            application_id=app["id"],
            kind="config",
            status="failed",
            actor="test",
            destination_id=destination["id"],
            started_at=second.started_at + dt.timedelta(microseconds=1),
        )
        session.add(failed)
        session.commit()
        between = second.started_at + dt.timedelta(microseconds=2)

    restored = api.post(
        f"/api/applications/{app['id']}/restore", {"at": between.isoformat(), "mode": "replace"}
    )
    assert restored.status_code == 200, restored.text
    assert restored.json()["backupId"] == taken[1][1]["id"]
    assert api.get(f"/api/applications/{app['id']}").json()["env"] == {"MODE": "two"}

    too_early = api.post(
        f"/api/applications/{app['id']}/restore", {"at": "2000-01-01T00:00:00Z", "mode": "replace"}
    )
    assert too_early.status_code == 404


def hold_repository_lock(api: Api, destination: dict[str, Any], repository: Path) -> subprocess.Popen[bytes]:
    """Start a restic backup from a pipe that stays open, so it holds a lock on the repository."""
    password = api.post(f"/api/backup-destinations/{destination['id']}/export-key").json()["password"]
    process = subprocess.Popen(
        ["restic", "-r", str(repository), "backup", "--stdin", "--stdin-filename", "held"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"PATH": os.environ["PATH"], "RESTIC_PASSWORD": password},
    )
    wait_for(lambda: any((repository / "locks").iterdir()), timeout=30, what="restic's lock file")
    return process


def release(process: subprocess.Popen[bytes]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=30)


def test_backup_check_waits_for_lock_release(api: Api, tmp_path: Path) -> None:
    app = create_app(api)
    repository = tmp_path / "repo"
    destination = local_destination(api, repository)
    assert backup(api, app, destination)["status"] == "succeeded"
    holder = hold_repository_lock(api, destination, repository)
    releaser = threading.Timer(4.0, release, args=(holder,))
    releaser.start()

    done = backup(api, app, destination)

    releaser.join()
    assert done["status"] == "succeeded", done
    assert done["checkStatus"] == "passed"


def test_backup_succeeds_when_check_stays_locked(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backups_service, "POST_BACKUP_CHECK_WAIT_SECONDS", 0.2)
    app = create_app(api)
    repository = tmp_path / "repo"
    destination = local_destination(api, repository)
    assert backup(api, app, destination)["status"] == "succeeded"
    holder = hold_repository_lock(api, destination, repository)
    try:
        done = backup(api, app, destination)
    finally:
        release(holder)

    assert done["status"] == "succeeded", done
    assert done["checkStatus"] == "skipped"
    assert done["snapshots"][0]["part"] == "config"


def test_concurrent_first_backups_share_new_repository(api: Api, tmp_path: Path) -> None:
    first = create_app(api, name="web-0")
    apps = [first]
    for index in (1, 2):
        response = api.post("/api/applications", {"name": f"web-{index}", "image": IMAGE})
        assert response.status_code == 201, response.text
        apps.append(response.json())
    destination = local_destination(api, tmp_path / "repo")

    started = [
        api.post(
            f"/api/applications/{app['id']}/backups", {"type": "config", "destinationId": destination["id"]}
        )
        for app in apps
    ]

    for response in started:
        assert response.status_code == 202, response.text
    done = [
        wait_for(
            lambda backup_id=response.json()["id"]: _finished(api, backup_id),
            timeout=120,
            what="the backup to finish",
        )
        for response in started
    ]
    assert [backup["status"] for backup in done] == ["succeeded"] * 3, [b["message"] for b in done]


def _finished(api: Api, backup_id: int) -> dict[str, Any] | None:
    backup = api.get(f"/api/backups/{backup_id}").json()
    return dict(backup) if backup["status"] in ("succeeded", "failed") else None
