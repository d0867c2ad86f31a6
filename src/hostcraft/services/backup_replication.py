"""Replication of backups to destinations in other regions, with ``restic copy``.

Which destinations get a copy: the primary destination's ``replicateTo`` (destination ids)
plus the application's ``backupReplicateTo`` (destination names), without the primary itself.
Each copy is one ``backup_replicas`` row holding the snapshot ids the replica repository
gave the copied snapshots. A failed copy opens a ``backup_failure`` alert but leaves the
backup itself ``succeeded``; the engine retries it with a growing delay.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.backup.restic import retry_while_locked
from hostcraft.errors import BackupError, HostCraftError, NotFound, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services.alerts import open_alert, resolve_alert
from hostcraft.services.backup_destinations import restic_for
from hostcraft.store.models import Application, Backup, BackupDestination, BackupReplica, utcnow

logger = logging.getLogger(__name__)

RETRY_INITIAL_SECONDS = 60.0
RETRY_MAX_SECONDS = 3600.0
RETRY_SCAN_LIMIT = 200
COPY_LOCK_ATTEMPTS = 6
COPY_LOCK_WAIT_SECONDS = 3.0


@dataclass(frozen=True)
class RestoreSource:
    """The source of a restore: the primary destination or one replica, with snapshot ids valid there."""

    destination: BackupDestination
    parts: list[dict[str, Any]]
    replica: bool


# Policy


def replica_destinations(session: Session, backup: Backup) -> tuple[list[BackupDestination], list[str]]:
    """Return the destinations a backup is copied to, and the policy names that match none."""
    primary = session.get(BackupDestination, backup.destination_id)
    wanted: list[int] = [int(item) for item in (primary.replicate_to if primary else [])]
    missing: list[str] = []
    app = session.get(Application, backup.application_id) if backup.application_id else None
    names = list(app.spec.get("backupReplicateTo") or []) if app else []
    if app is not None and app.spec.get("dr"):
        # After a failover the app backs up in its new region: its configured destination, in the
        # region it left, gets copies so that a failback finds the newest data there.
        names.append(app.spec.get("backupDestination"))
    for name in [item for item in names if item]:
        destination_id = session.scalar(select(BackupDestination.id).where(BackupDestination.name == name))
        if destination_id is None:
            missing.append(str(name))
        else:
            wanted.append(destination_id)
    found = []
    for destination_id in dict.fromkeys(wanted):
        destination = session.get(BackupDestination, destination_id)
        if destination is not None and destination.id != backup.destination_id:
            found.append(destination)
    return found, missing


# Copying


def replicate_backup(runtime: Runtime, backup_id: int) -> list[BackupReplica]:
    """Copy a succeeded backup to every replica destination it lacks; failures are recorded, not raised."""
    with runtime.store.session() as session:
        backup = session.get(Backup, backup_id)
        if backup is None or backup.status != "succeeded":
            return []
        destinations, missing = replica_destinations(session, backup)
        for name in missing:
            _alert_missing(session, backup, name)
        replicas = []
        for destination in destinations:
            replica = _replica_row(session, backup, destination)
            if replica.status != "succeeded":
                _copy(session, runtime, backup, destination, replica)
            replicas.append(replica)
        session.commit()
        return replicas


def plan_replicas(session: Session, backup: Backup) -> list[BackupReplica]:
    """Record a ``pending`` replica for every destination the backup is to be copied to."""
    destinations, _ = replica_destinations(session, backup)
    return [_replica_row(session, backup, destination) for destination in destinations]


def _replica_row(session: Session, backup: Backup, destination: BackupDestination) -> BackupReplica:
    query = select(BackupReplica).where(
        BackupReplica.backup_id == backup.id, BackupReplica.destination_id == destination.id
    )
    replica = session.scalar(query)
    if replica is None:
        replica = BackupReplica(backup_id=backup.id, destination_id=destination.id, status="pending")
        session.add(replica)
        session.flush()
    return replica


def _copy(
    session: Session,
    runtime: Runtime,
    backup: Backup,
    destination: BackupDestination,
    replica: BackupReplica,
) -> None:
    primary = session.get(BackupDestination, backup.destination_id)
    assert primary is not None
    replica.attempts += 1
    try:
        source = restic_for(primary, runtime)
        target = restic_for(destination, runtime)
        target.ensure_initialised()
        snapshot_ids = [part["snapshotId"] for part in backup.parts]
        # A check after another app's backup locks the repository for a few seconds. Waiting for
        # it here makes the copy on time, instead of failing it until the next retry.
        retry_while_locked(
            lambda: source.copy_to(target.repository, snapshot_ids),
            attempts=COPY_LOCK_ATTEMPTS,
            wait_seconds=COPY_LOCK_WAIT_SECONDS,
        )
        replica.parts = _copied_parts(target.snapshots(tags=[f"backup:{backup.id}"]), backup)
    except HostCraftError as exc:
        _replica_failed(session, backup, destination, replica, exc.message)
        return
    except Exception as exc:
        logger.exception("copy of backup failed unexpectedly", extra={"backup_id": backup.id})
        _replica_failed(
            session, backup, destination, replica, f"internal error ({type(exc).__name__}: {exc})"
        )
        return
    replica.status = "succeeded"
    replica.error = None
    replica.copied_at = utcnow()
    backup.replicated_to = sorted({*[int(item) for item in backup.replicated_to], destination.id})
    resolve_alert(
        session,
        cause=_cause(backup, destination),
        message=f"backup {backup.id} was copied to {destination.name}",
    )
    session.commit()
    logger.info("backup replicated", extra={"backup_id": backup.id, "destination": destination.name})


def _copied_parts(snapshots: list[Any], backup: Backup) -> list[dict[str, Any]]:
    """Map each part of the backup to its snapshot in the replica, found by the copied tags."""
    by_part: dict[str, Any] = {}
    for snapshot in sorted(snapshots, key=lambda item: item.time):
        for tag in snapshot.tags:
            if tag.startswith("part:"):
                by_part[tag.removeprefix("part:")] = snapshot
    parts = []
    for part in backup.parts:
        copied = by_part.get(part["part"])
        if copied is None:
            raise BackupError(
                f"restic copy ended without error but snapshot {part['snapshotId']} ({part['part']}) is not "
                "in the replica repository",
                reason="failed",
            )
        parts.append({"part": part["part"], "snapshotId": copied.id, "sourceSnapshotId": part["snapshotId"]})
    return parts


def _replica_failed(
    session: Session, backup: Backup, destination: BackupDestination, replica: BackupReplica, message: str
) -> None:
    replica.status = "failed"
    replica.error = message
    app = session.get(Application, backup.application_id) if backup.application_id else None
    open_alert(
        session,
        trigger="backup_failure",
        cause=_cause(backup, destination),
        title=f"Copy of {backup.application_name} backups to {destination.name} failed",
        message=f"failed to copy backup {backup.id} to {destination.name}: {message}; the backup itself "
        "succeeded and the copy is retried",
        severity="warning",
        application_id=backup.application_id,
        region_id=app.region_id if app else None,
        details={"backupId": backup.id, "destinationId": destination.id},
    )
    session.commit()
    logger.warning(
        "failed to copy backup to replica destination",
        extra={"backup_id": backup.id, "destination": destination.name, "error": message},
    )


def _alert_missing(session: Session, backup: Backup, name: str) -> None:
    open_alert(
        session,
        trigger="backup_failure",
        cause=f"app:{backup.application_id}:replica:{name}",
        title=f"Replica destination {name} of {backup.application_name} does not exist",
        message=f"backup destination {name!r} named in backupReplicateTo not found: add it or fix the "
        "application's backupReplicateTo",
        severity="warning",
        application_id=backup.application_id,
        details={"backupId": backup.id},
    )


def _cause(backup: Backup, destination: BackupDestination) -> str:
    return f"app:{backup.application_id}:replica:{destination.name}"


def retry_replication(runtime: Runtime, *, now: dt.datetime | None = None) -> list[int]:
    """Copy recent succeeded backups whose replicas are missing or failed; return the backup ids tried.

    A failed copy waits ``60 s * 2 ** (attempts - 1)``, at most an hour, before its next attempt.
    """
    now = now or utcnow()
    due: list[int] = []
    with runtime.store.session() as session:
        recent = session.scalars(
            select(Backup)
            .where(Backup.status == "succeeded")
            .order_by(Backup.id.desc())
            .limit(RETRY_SCAN_LIMIT)
        )
        for backup in recent:
            destinations, _ = replica_destinations(session, backup)
            rows = {
                row.destination_id: row
                for row in session.scalars(select(BackupReplica).where(BackupReplica.backup_id == backup.id))
            }
            if any(_retry_due(rows.get(item.id), now) for item in destinations):
                due.append(backup.id)
    for backup_id in due:
        replicate_backup(runtime, backup_id)
    return due


def _retry_due(replica: BackupReplica | None, now: dt.datetime) -> bool:
    if replica is None:
        return True
    if replica.status == "succeeded":
        return False
    delay = min(RETRY_INITIAL_SECONDS * 2 ** max(replica.attempts - 1, 0), RETRY_MAX_SECONDS)
    return replica.updated_at + dt.timedelta(seconds=delay) <= now


def forget_expired_replicas(runtime: Runtime) -> int:
    """Forget the replica snapshots of expired backups, so retention applies in every region."""
    forgotten = 0
    with runtime.store.session() as session:
        rows = session.scalars(
            select(BackupReplica)
            .join(Backup, Backup.id == BackupReplica.backup_id)
            .where(Backup.status == "expired", BackupReplica.status == "succeeded")
        )
        for replica in rows:
            destination = session.get(BackupDestination, replica.destination_id)
            assert destination is not None
            try:
                restic_for(destination, runtime).forget([part["snapshotId"] for part in replica.parts])
            except BackupError as exc:
                logger.warning(
                    "failed to forget replica snapshots",
                    extra={
                        "backup_id": replica.backup_id,
                        "destination": destination.name,
                        "error": exc.message,
                    },
                )
                continue
            replica.status = "expired"
            forgotten += 1
        session.commit()
    return forgotten


# Reading


def replicas_of(session: Session, backup_id: int) -> list[BackupReplica]:
    query = select(BackupReplica).where(BackupReplica.backup_id == backup_id).order_by(BackupReplica.id)
    return list(session.scalars(query))


def replica_out(session: Session, replica: BackupReplica) -> dict[str, Any]:
    destination = session.get(BackupDestination, replica.destination_id)
    return {
        "destinationId": replica.destination_id,
        "destination": destination.name if destination else None,
        "regionId": destination.region_id if destination else None,
        "status": replica.status,
        "snapshotIds": [part["snapshotId"] for part in replica.parts],
        "snapshots": replica.parts,
        "attempts": replica.attempts,
        "error": replica.error,
        "copiedAt": replica.copied_at.isoformat().replace("+00:00", "Z") if replica.copied_at else None,
    }


def available_backups(
    session: Session,
    *,
    destination_id: int | None = None,
    region_id: int | None = None,
    app_id: int | None = None,
    limit: int = 100,
) -> list[tuple[Backup, RestoreSource]]:
    """Return succeeded backups readable from a destination or a region, newest first, with their source."""
    query = (
        select(Backup)
        .where(Backup.status == "succeeded")
        .order_by(Backup.started_at.desc(), Backup.id.desc())
    )
    if app_id is not None:
        query = query.where(Backup.application_id == app_id)
    found = []
    for backup in session.scalars(query):
        source = _source_matching(session, backup, destination_id=destination_id, region_id=region_id)
        if source is not None:
            found.append((backup, source))
            if len(found) >= limit:
                break
    return found


def _source_matching(
    session: Session, backup: Backup, *, destination_id: int | None, region_id: int | None
) -> RestoreSource | None:
    for source in _sources(session, backup):
        if destination_id is not None and source.destination.id != destination_id:
            continue
        if region_id is not None and source.destination.region_id != region_id:
            continue
        return source
    return None


def _sources(session: Session, backup: Backup) -> list[RestoreSource]:
    """Return the primary destination and each succeeded replica of the backup."""
    sources = []
    primary = session.get(BackupDestination, backup.destination_id)
    if primary is not None:
        sources.append(RestoreSource(primary, list(backup.parts), replica=False))
    for replica in replicas_of(session, backup.id):
        destination = session.get(BackupDestination, replica.destination_id)
        if replica.status == "succeeded" and destination is not None:
            sources.append(RestoreSource(destination, _replica_parts(backup, replica), replica=True))
    return sources


def _replica_parts(backup: Backup, replica: BackupReplica) -> list[dict[str, Any]]:
    """Return the backup's parts with the snapshot ids the replica repository gave them.

    A replica row records only snapshot ids. The rest of a part (a database dump's database and
    file name, a volume's checksums) is the backup's, and a restore from the replica needs it.
    """
    copied = {part["part"]: part["snapshotId"] for part in replica.parts}
    return [
        {**part, "snapshotId": copied[part["part"]], "sourceSnapshotId": part["snapshotId"]}
        for part in backup.parts
        if part["part"] in copied
    ]


def source_out(source: RestoreSource) -> dict[str, Any]:
    return {
        "destinationId": source.destination.id,
        "destination": source.destination.name,
        "regionId": source.destination.region_id,
        "replica": source.replica,
        "snapshotIds": [part["snapshotId"] for part in source.parts],
    }


def newest_good_backup(
    session: Session, app_id: int, *, region_id: int | None = None, at: dt.datetime | None = None
) -> tuple[Backup, RestoreSource]:
    """Return the newest succeeded backup of the app (at or before ``at``) readable in ``region_id``.

    The source is the destination of that region holding the backup (the primary or a replica)
    and the snapshot ids valid in its repository. Without ``region_id`` the primary is the source.
    """
    query = (
        select(Backup)
        .where(Backup.application_id == app_id, Backup.status == "succeeded")
        .order_by(Backup.started_at.desc(), Backup.id.desc())
    )
    if at is not None:
        query = query.where(Backup.started_at <= at)
    for backup in session.scalars(query):
        source = _source_matching(session, backup, destination_id=None, region_id=region_id)
        if source is not None:
            return backup, source
    where = f" readable in region {region_id}" if region_id is not None else ""
    when = f" taken at or before {at.isoformat()}" if at is not None else ""
    raise NotFound(f"application {app_id} has no succeeded backup{when}{where}")


def restore_source(
    session: Session,
    runtime: Runtime,
    backup: Backup,
    *,
    target_region_id: int | None,
    source_destination_id: int | None,
) -> RestoreSource:
    """Pick where a restore reads from: the requested destination, else the primary when its
    repository opens, else a replica in the target region, else any other replica."""
    sources = _sources(session, backup)
    if source_destination_id is not None:
        for source in sources:
            if source.destination.id == source_destination_id:
                return source
        raise ValidationError(
            f"backup {backup.id} has no copy in destination {source_destination_id}: pick the primary "
            "destination or a destination listed under replicas with status 'succeeded'",
            field="sourceDestinationId",
        )
    replicas = [source for source in sources if source.replica]
    replicas.sort(key=lambda source: source.destination.region_id != target_region_id)
    primary = [source for source in sources if not source.replica]
    problems = []
    for source in primary + replicas:
        problem = _unavailable(runtime, source.destination)
        if problem is None:
            return source
        problems.append(f"{source.destination.name}: {problem}")
        logger.warning(
            "restore source unavailable",
            extra={"backup_id": backup.id, "destination": source.destination.name, "error": problem},
        )
    raise BackupError(
        f"no destination holding backup {backup.id} can be opened ({'; '.join(problems) or 'none recorded'})",
        reason="unreachable",
    )


def _unavailable(runtime: Runtime, destination: BackupDestination) -> str | None:
    """Return why the destination's repository cannot be opened, or None when it can."""
    try:
        if restic_for(destination, runtime).is_initialised():
            return None
    except BackupError as exc:
        return exc.message
    return "the repository does not exist"
