"""Due backup work for the engine loop: scheduled backups and retention.

Schedules live in the store (``backup_schedules.next_run_at``), so a restart or a new lease
holder loses no run. After downtime a missed schedule runs once, and a run that would
overlap a backup still in progress is skipped, never queued behind it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.domain.backup_policy import BackupRecord, RetentionPolicy, decide, expired_backups
from hostcraft.errors import BackupError, HostCraftError
from hostcraft.runtime import Runtime
from hostcraft.services.backup_destinations import restic_for
from hostcraft.services.backups import active_backup, start_backup
from hostcraft.services.events import record_event
from hostcraft.store.models import Application, Backup, BackupDestination, BackupSchedule, utcnow

logger = logging.getLogger(__name__)

ENGINE_ACTOR = "engine"


def run_due_backups(runtime: Runtime, *, now: dt.datetime | None = None, wait: bool = False) -> list[int]:
    """Start every scheduled backup that is due; return the ids of the backups started."""
    now = now or utcnow()
    started: list[int] = []
    with runtime.store.session() as session:
        apps = list(session.scalars(select(Application)))
        scheduled = {f"app:{app.id}": app for app in apps if app.spec.get("backupSchedule")}
        _drop_stale_schedules(session, scheduled.keys())
        for key, app in scheduled.items():
            backup_id = _tick(session, runtime, key, app, now=now, wait=wait)
            if backup_id is not None:
                started.append(backup_id)
        session.commit()
    return started


def _tick(
    session: Session, runtime: Runtime, key: str, app: Application, *, now: dt.datetime, wait: bool
) -> int | None:
    expression = str(app.spec["backupSchedule"])
    timezone = str(app.spec.get("backupTimezone") or "UTC")
    row = session.get(BackupSchedule, key)
    if row is None or (row.expression, row.timezone) != (expression, timezone):
        first = decide(expression, timezone, next_run_at=None, now=now)
        if row is None:
            row = BackupSchedule(
                key=key, expression=expression, timezone=timezone, next_run_at=first.next_run_at
            )
            session.add(row)
        row.expression, row.timezone, row.next_run_at = expression, timezone, first.next_run_at
        session.commit()
        return None
    decision = decide(expression, timezone, next_run_at=row.next_run_at, now=now)
    row.next_run_at = decision.next_run_at
    if not decision.run_now:
        return None
    row.last_run_at = now
    session.commit()
    running = active_backup(session, app.id)
    if running is not None:
        logger.info(
            "scheduled backup skipped: one is running", extra={"app": app.name, "backup_id": running.id}
        )
        return None
    try:
        backup = start_backup(
            session, runtime, app.id, kind="full", actor=ENGINE_ACTOR, trigger="schedule", wait=wait
        )
    except HostCraftError as exc:
        logger.warning("failed to start scheduled backup", extra={"app": app.name, "error": exc.message})
        record_event(
            session,
            actor=ENGINE_ACTOR,
            action="backup.schedule",
            target_type="application",
            target_id=app.id,
            target_name=f"{app.project}/{app.name}",
            outcome="failed",
            reason=exc.message,
        )
        return None
    return backup.id


def _drop_stale_schedules(session: Session, keys: object) -> None:
    wanted = set(keys)  # type: ignore[call-overload]
    for row in session.scalars(select(BackupSchedule).where(BackupSchedule.key.like("app:%"))):
        if row.key not in wanted:
            session.delete(row)


def prune_expired(runtime: Runtime, *, now: dt.datetime | None = None) -> list[int]:
    """Expire succeeded backups no retention rule keeps; forget their snapshots. Return their ids."""
    now = now or utcnow()
    expired: list[int] = []
    with runtime.store.session() as session:
        for app in session.scalars(select(Application)):
            expired += _prune_app(session, runtime, app, now=now)
        session.commit()
    return expired


def retention_policy(spec: dict[str, object]) -> RetentionPolicy:
    def count(key: str) -> int | None:
        value = spec.get(key)
        return int(value) if isinstance(value, int) else None

    return RetentionPolicy(
        retention_days=int(spec.get("backupRetentionDays") or 30),  # type: ignore[call-overload]
        keep_last=count("backupKeepLast"),
        keep_daily=count("backupKeepDaily"),
        keep_weekly=count("backupKeepWeekly"),
        keep_monthly=count("backupKeepMonthly"),
    )


def _prune_app(session: Session, runtime: Runtime, app: Application, *, now: dt.datetime) -> list[int]:
    backups = list(session.scalars(select(Backup).where(Backup.application_id == app.id)))
    records = [BackupRecord(b.id, b.status, b.started_at or b.created_at) for b in backups]
    doomed = set(expired_backups(records, retention_policy(app.spec), now=now))
    by_destination: dict[int, list[Backup]] = defaultdict(list)
    for backup in backups:
        if backup.id in doomed:
            by_destination[backup.destination_id].append(backup)
    expired: list[int] = []
    for destination_id, items in by_destination.items():
        destination = session.get(BackupDestination, destination_id)
        assert destination is not None
        snapshot_ids = [part["snapshotId"] for backup in items for part in backup.parts]
        try:
            restic_for(destination, runtime).forget(snapshot_ids, prune=True)
        except BackupError as exc:
            logger.warning("failed to prune expired backups", extra={"app": app.name, "error": exc.message})
            continue
        for backup in items:
            backup.status = "expired"
            expired.append(backup.id)
        record_event(
            session,
            actor=ENGINE_ACTOR,
            action="backup.expire",
            target_type="application",
            target_id=app.id,
            target_name=f"{app.project}/{app.name}",
            outcome="succeeded",
            reason="no retention rule keeps them",
            details={"backupIds": [backup.id for backup in items]},
        )
    return expired
