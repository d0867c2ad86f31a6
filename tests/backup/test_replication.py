"""Replication of backups to destinations in other regions: real restic copy, local disk to S3 (moto)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from hostcraft.errors import NotFound
from hostcraft.services.alerts import find_open_alert
from hostcraft.services.backup_destinations import find_destination, restic_for
from hostcraft.services.backup_replication import (
    forget_expired_replicas,
    newest_good_backup,
    retry_replication,
)
from hostcraft.services.backup_schedules import prune_expired
from hostcraft.services.backups import CONFIG_FILENAME
from tests.backup.test_config_backups import backup, create_app
from tests.backup.test_destinations import local_destination, s3_destination
from tests.conftest import Api, create_region
from tests.s3_server import S3Server


def two_regions(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create the app in region eu-west-1 and a second region us-east-1; return the app and both ids."""
    app = create_app(api)
    region_b = create_region(api, "us-east-1", primary=False, priority=2)
    region_a = next(item for item in api.get("/api/regions").json() if item["code"] == "eu-west-1")
    return app | {"_regionA": region_a}, region_b


def replicated_pair(
    api: Api, s3: S3Server, tmp_path: Path, region_a: int, region_b: int, *, bucket: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    replica = s3_destination(api, s3, name="offsite-b", regionId=region_b, bucket=bucket)
    response = api.post(
        "/api/backup-destinations",
        {
            "name": "disk-a",
            "kind": "local",
            "path": str(tmp_path / "repo-a"),
            "regionId": region_a,
            "replicateTo": [replica["id"]],
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json()), replica


def read_config(api: Api, destination_id: int, snapshot_id: str) -> bytes:
    with api.runtime.store.session() as session:
        restic = restic_for(find_destination(session, destination_id), api.runtime)
        return restic.read_file(snapshot_id, CONFIG_FILENAME)


def test_backup_copied_to_replica_destination(api: Api, s3: S3Server, tmp_path: Path) -> None:
    app, region_b = two_regions(api)
    primary, replica = replicated_pair(api, s3, tmp_path, app["_regionA"]["id"], region_b["id"])
    assert primary["replicateTo"] == [replica["id"]]

    done = backup(api, app, primary)
    shown = api.get(f"/api/backups/{done['id']}").json()

    assert shown["status"] == "succeeded"
    assert shown["replicatedTo"] == [replica["id"]]
    [copy] = shown["replicas"]
    assert copy["destinationId"] == replica["id"]
    assert copy["regionId"] == region_b["id"]
    assert copy["status"] == "succeeded", copy
    assert copy["copiedAt"] is not None
    assert len(copy["snapshotIds"]) == 1
    original = read_config(api, primary["id"], done["snapshotIds"][0])
    assert read_config(api, replica["id"], copy["snapshotIds"][0]) == original


def test_restore_reads_replica_when_primary_is_gone(api: Api, s3: S3Server, tmp_path: Path) -> None:
    app, region_b = two_regions(api)
    primary, replica = replicated_pair(api, s3, tmp_path, app["_regionA"]["id"], region_b["id"])
    done = backup(api, app, primary)
    original = json.loads(read_config(api, primary["id"], done["snapshotIds"][0]))
    (tmp_path / "repo-a").rename(tmp_path / "repo-a-lost")

    restored = api.post(f"/api/backups/{done['id']}/restore", {"mode": "new"})

    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert body["sourceDestinationId"] == replica["id"]
    new_app = api.get(f"/api/applications/{body['restored'][0]['applicationId']}").json()
    assert new_app["env"] == original["env"]
    assert new_app["image"] == original["application"]["image"]
    with api.runtime.store.session() as session:
        from hostcraft.services.applications import get_application, secret_values

        restored_secrets = secret_values(get_application(session, new_app["id"]), api.runtime)
    assert restored_secrets == original["secretValues"] == {"db-password": "s3cr3t"}


def test_restore_from_named_source_destination(api: Api, s3: S3Server, tmp_path: Path) -> None:
    app, region_b = two_regions(api)
    primary, replica = replicated_pair(api, s3, tmp_path, app["_regionA"]["id"], region_b["id"])
    done = backup(api, app, primary)

    from_replica = api.post(
        f"/api/backups/{done['id']}/restore", {"mode": "new", "sourceDestinationId": replica["id"]}
    )
    unknown = api.post(f"/api/backups/{done['id']}/restore", {"mode": "new", "sourceDestinationId": 999})

    assert from_replica.status_code == 200, from_replica.text
    assert from_replica.json()["sourceDestinationId"] == replica["id"]
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"]["field"] == "sourceDestinationId"


def test_backups_listed_by_region(api: Api, s3: S3Server, tmp_path: Path) -> None:
    app, region_b = two_regions(api)
    primary, replica = replicated_pair(api, s3, tmp_path, app["_regionA"]["id"], region_b["id"])
    lonely = local_destination(api, tmp_path / "repo-lonely", name="lonely")
    copied = backup(api, app, primary)
    local_only = backup(api, app, lonely)

    in_b = api.get(f"/api/backups?regionId={region_b['id']}").json()
    in_replica = api.get(f"/api/backups?destinationId={replica['id']}").json()
    in_lonely = api.get(f"/api/backups?destinationId={lonely['id']}").json()

    assert [item["id"] for item in in_b] == [copied["id"]]
    assert in_b[0]["availableFrom"]["destinationId"] == replica["id"]
    assert in_b[0]["availableFrom"]["replica"] is True
    assert [item["id"] for item in in_replica] == [copied["id"]]
    assert [item["id"] for item in in_lonely] == [local_only["id"]]
    with api.runtime.store.session() as session:
        found, source = newest_good_backup(session, app["id"], region_id=region_b["id"])
        newest_anywhere, primary_source = newest_good_backup(session, app["id"])
        with pytest.raises(NotFound):
            newest_good_backup(session, app["id"], at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    assert found.id == copied["id"]
    assert source.destination.id == replica["id"]
    assert source.replica is True
    assert source.parts[0]["sourceSnapshotId"] == copied["snapshotIds"][0]
    assert newest_anywhere.id == local_only["id"]
    assert primary_source.replica is False


def test_replica_source_keeps_part_details(api: Api, s3: S3Server, tmp_path: Path) -> None:
    app, region_b = two_regions(api)
    primary, replica = replicated_pair(api, s3, tmp_path, app["_regionA"]["id"], region_b["id"])
    done = backup(api, app, primary)
    copy = api.get(f"/api/backups/{done['id']}").json()["replicas"][0]

    with api.runtime.store.session() as session:
        _, source = newest_good_backup(session, app["id"], region_id=region_b["id"])

    assert source.destination.id == replica["id"]
    part = source.parts[0]
    assert part["snapshotId"] == copy["snapshotIds"][0]
    assert part["sourceSnapshotId"] == done["snapshotIds"][0]
    original = done["snapshots"][0]
    assert {key: part[key] for key in original if key != "snapshotId"} == {
        key: value for key, value in original.items() if key != "snapshotId"
    }


def stopped_check(destination: dict[str, Any], password: str, s3: S3Server) -> subprocess.Popen[bytes]:
    """Start ``restic check`` on the destination and stop it once it holds its exclusive lock."""
    access, secret = s3.keys["admin"]
    environment = {
        "PATH": os.environ["PATH"],
        "RESTIC_PASSWORD": password,
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret,
    }
    lister = ["restic", "-r", destination["repository"], "--no-lock", "list", "locks"]
    # A check of a small repository can end before a poll lists its lock, so the check runs in
    # short steps (SIGCONT, 20 ms, SIGSTOP) until the lock is there, and starts again if it ended.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        process = subprocess.Popen(
            ["restic", "-r", destination["repository"], "--no-cache", "check"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process.send_signal(signal.SIGSTOP)
        while process.poll() is None:
            if subprocess.run(lister, env=environment, capture_output=True, check=True).stdout.strip():
                return process
            process.send_signal(signal.SIGCONT)
            time.sleep(0.02)
            process.send_signal(signal.SIGSTOP)
    raise AssertionError("restic check never showed its lock within 60 s")


def test_copy_waits_for_replica_lock_release(api: Api, s3: S3Server, tmp_path: Path) -> None:
    app, region_b = two_regions(api)
    primary, replica = replicated_pair(api, s3, tmp_path, app["_regionA"]["id"], region_b["id"])
    assert backup(api, app, primary)["status"] == "succeeded"
    password = api.post(f"/api/backup-destinations/{replica['id']}/export-key").json()["password"]
    checker = stopped_check(replica, password, s3)
    resume = threading.Timer(4.0, checker.send_signal, args=(signal.SIGCONT,))
    resume.start()

    done = backup(api, app, primary)

    resume.join()
    checker.wait(timeout=60)
    copy = api.get(f"/api/backups/{done['id']}").json()["replicas"][0]
    assert copy["status"] == "succeeded", copy
    assert copy["attempts"] == 1


def test_failed_copy_alerts_and_is_retried(api: Api, s3: S3Server, tmp_path: Path) -> None:
    app, region_b = two_regions(api)
    bucket = f"hc-later-{uuid.uuid4().hex[:8]}"
    primary, _ = replicated_pair(api, s3, tmp_path, app["_regionA"]["id"], region_b["id"], bucket=bucket)

    done = backup(api, app, primary)
    shown = api.get(f"/api/backups/{done['id']}").json()

    assert shown["status"] == "succeeded"
    assert shown["replicas"][0]["status"] == "failed"
    assert "bucket" in shown["replicas"][0]["error"].lower()
    cause = f"app:{app['id']}:replica:offsite-b"
    with api.runtime.store.session() as session:
        alert = find_open_alert(session, cause)
        assert alert is not None
        assert alert.trigger == "backup_failure"

    s3.create_bucket(bucket)
    too_early = retry_replication(api.runtime)
    later = retry_replication(api.runtime, now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))

    assert too_early == []
    assert later == [done["id"]]
    [copy] = api.get(f"/api/backups/{done['id']}").json()["replicas"]
    assert copy["status"] == "succeeded", copy
    assert copy["attempts"] == 2
    with api.runtime.store.session() as session:
        assert find_open_alert(session, cause) is None


def test_app_policy_names_replica_destination(api: Api, s3: S3Server, tmp_path: Path) -> None:
    app = create_app(api, backupReplicateTo=["offsite"])
    replica = s3_destination(api, s3, name="offsite")
    primary = local_destination(api, tmp_path / "repo")

    done = backup(api, app, primary)

    [copy] = api.get(f"/api/backups/{done['id']}").json()["replicas"]
    assert copy["destinationId"] == replica["id"]
    assert copy["status"] == "succeeded", copy


def test_invalid_replicate_to_rejected(api: Api, tmp_path: Path) -> None:
    first = local_destination(api, tmp_path / "one", name="one")
    body = {"name": "one", "kind": "local", "path": str(tmp_path / "one")}

    to_itself = api.put(f"/api/backup-destinations/{first['id']}", {**body, "replicateTo": [first["id"]]})
    to_unknown = api.post(
        "/api/backup-destinations",
        {**body, "name": "two", "path": str(tmp_path / "two"), "replicateTo": [999]},
    )

    assert to_itself.status_code == 422
    assert to_itself.json()["error"]["details"]["field"] == "replicateTo"
    assert to_unknown.status_code == 422
    assert "999" in to_unknown.json()["error"]["message"]


def test_expired_backup_copies_forgotten(api: Api, s3: S3Server, tmp_path: Path) -> None:
    app = create_app(api, backupKeepLast=1, backupRetentionDays=1, backupReplicateTo=["offsite"])
    replica = s3_destination(api, s3, name="offsite")
    primary = local_destination(api, tmp_path / "repo")
    first, second = backup(api, app, primary), backup(api, app, primary)

    expired = prune_expired(api.runtime, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=90))
    forgotten = forget_expired_replicas(api.runtime)

    assert expired == [first["id"]]
    assert forgotten == 1
    assert api.get(f"/api/backups/{first['id']}").json()["replicas"][0]["status"] == "expired"
    kept = api.get(f"/api/backups/{second['id']}").json()["replicas"][0]
    with api.runtime.store.session() as session:
        restic = restic_for(find_destination(session, replica["id"]), api.runtime)
        remaining = [snapshot.id for snapshot in restic.snapshots(tags=["hostcraft"])]
    assert remaining == kept["snapshotIds"]
