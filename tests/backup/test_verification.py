"""Backup verification through the API with real restic: restore tests, checks, schedule, metrics."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hostcraft.services.alerts import find_open_alert
from hostcraft.services.backup_verification import run_due_verifications
from hostcraft.store.models import BackupVerification
from tests.backup.test_config_backups import backup, create_app
from tests.backup.test_destinations import local_destination
from tests.conftest import Api


def corrupt_repository(path: Path) -> None:
    """Flip bytes in the middle of every pack file, as a failing disk would."""
    packs = [item for item in (path / "data").rglob("*") if item.is_file()]
    assert packs
    for pack in packs:
        pack.chmod(0o600)
        raw = bytearray(pack.read_bytes())
        middle = len(raw) // 2
        raw[middle : middle + 16] = bytes(byte ^ 0xFF for byte in raw[middle : middle + 16])
        pack.write_bytes(bytes(raw))


def test_verify_passes_and_is_listed(api: Api, tmp_path: Path) -> None:
    app = create_app(api)
    done = backup(api, app, local_destination(api, tmp_path / "repo"))

    verified = api.post(f"/api/backups/{done['id']}/verify")

    assert verified.status_code == 200, verified.text
    assert verified.json()["status"] == "passed"
    assert verified.json()["details"]["parts"][0]["part"] == "config"
    listed = api.get(f"/api/backups/{done['id']}").json()
    assert listed["restoreTestStatus"] == "passed"
    assert listed["verifications"][0]["id"] == verified.json()["id"]


def test_corrupt_repository_fails_verification(api: Api, tmp_path: Path) -> None:
    app = create_app(api)
    destination = local_destination(api, tmp_path / "repo")
    done = backup(api, app, destination)
    corrupt_repository(tmp_path / "repo")

    verified = api.post(f"/api/backups/{done['id']}/verify").json()
    checked = api.post(f"/api/backup-destinations/{destination['id']}/check?readDataPercent=100").json()

    assert verified["status"] == "failed"
    assert verified["details"]["parts"][0]["status"] == "failed"
    assert checked["status"] == "failed"
    assert checked["details"] == {"readDataSubset": "100%"}
    with api.runtime.store.session() as session:
        restore_alert = find_open_alert(session, f"app:{app['id']}:restore-test")
        check_alert = find_open_alert(session, f"destination:{destination['id']}:check")
        assert restore_alert is not None
        assert restore_alert.trigger == "backup_failure"
        assert check_alert is not None
        assert check_alert.trigger == "backup_failure"
    metrics = api.get("/metrics").text
    assert (
        f'hostcraft_backup_last_verification_ok{{kind="check",target="{destination["name"]}"}} 0.0' in metrics
    )
    assert 'hostcraft_backup_newest_good_age_seconds{application="default/web"}' in metrics
    assert (
        'hostcraft_backup_runs_total{application="default/web",outcome="succeeded",type="config"}' in metrics
    )


def test_schedule_runs_each_verification_once(api: Api, tmp_path: Path) -> None:
    app = create_app(api)
    destination = local_destination(api, tmp_path / "repo")
    backup(api, app, destination)
    now = dt.datetime.now(dt.UTC)

    first = run_due_verifications(api.runtime, now=now)
    again = run_due_verifications(api.runtime, now=now + dt.timedelta(hours=1))
    later = run_due_verifications(api.runtime, now=now + dt.timedelta(days=8))

    assert len(first) == 2
    assert again == []
    assert len(later) == 2
    with api.runtime.store.session() as session:
        kinds = sorted(session.get(BackupVerification, item).kind for item in first)  # type: ignore[union-attr]
        statuses = {session.get(BackupVerification, item).status for item in first}  # type: ignore[union-attr]
    assert kinds == ["check", "restore_test"]
    assert statuses == {"passed"}


def test_verify_unknown_backup_not_found(api: Api) -> None:
    response = api.post("/api/backups/999/verify")
    assert response.status_code == 404, response.text


def test_engine_pass_runs_in_background(api: Api, tmp_path: Path) -> None:
    from hostcraft.services.backup_verification import _pending, start_due_verifications

    app = create_app(api)
    backup(api, app, local_destination(api, tmp_path / "repo"))

    assert start_due_verifications(api.runtime) is True
    ids = _pending[0].result(timeout=120)

    assert len(ids) == 2
    assert api.get("/api/backups?status=succeeded").json()[0]["restoreTestStatus"] == "passed"


def test_check_of_locked_repository_is_skipped_without_alert(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup holding the repository's lock makes restic 0.14's check fail: that is no alert."""
    import subprocess

    from hostcraft.services import backup_verification
    from hostcraft.services.backup_destinations import restic_for
    from hostcraft.store.models import BackupDestination

    monkeypatch.setattr(backup_verification, "CHECK_LOCK_WAIT_SECONDS", 0.5)
    app = create_app(api)
    destination = local_destination(api, tmp_path / "repo")
    backup(api, app, destination)
    with api.runtime.store.session() as session:
        row = session.get(BackupDestination, destination["id"])
        assert row is not None
        repository = restic_for(row, api.runtime).repository
    # A backup from standard input holds a lock until its input ends.
    holder = subprocess.Popen(
        ["restic", "-r", repository.url, "backup", "--stdin", "--stdin-filename", "slow"],
        stdin=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **repository.environment()},
    )
    try:
        import time

        time.sleep(2)
        checked = api.post(f"/api/backup-destinations/{destination['id']}/check")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert checked.status_code == 200, checked.text
    assert checked.json()["status"] == "skipped", checked.json()["message"]
    assert "lock was created" in checked.json()["message"]
    with api.runtime.store.session() as session:
        assert find_open_alert(session, f"destination:{destination['id']}:check") is None
    again = api.post(f"/api/backup-destinations/{destination['id']}/check")
    assert again.json()["status"] == "passed"
