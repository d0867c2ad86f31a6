"""Records of DR runs (failovers, failbacks, drills): timed steps, lookups and their JSON form."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.errors import HostCraftError, NotFound
from hostcraft.runtime import Runtime
from hostcraft.services.alerts import Severity, Trigger
from hostcraft.services.events import Outcome, audit
from hostcraft.store.models import DrRun, Region, utcnow

logger = logging.getLogger(__name__)

StepCallback = Callable[[dict[str, Any]], None]


def stamp(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


class StepLog:
    """Append timed steps to a run, each change committed in its own session so a reader sees
    progress live and the step's own work is never committed or rolled back by the log."""

    def __init__(self, runtime: Runtime, run_id: int, *, on_step: StepCallback | None = None) -> None:
        self.runtime = runtime
        self.run_id = run_id
        self.on_step = on_step

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Run one step: its entry is ``running`` inside the block, then ``succeeded`` or ``failed``.

        The block fills the yielded dict: ``message`` and any ``details``. A HostCraftError
        raised inside marks the step failed with its message and propagates.
        """
        started = utcnow()
        entry: dict[str, Any] = {"name": name, "status": "running", "startedAt": stamp(started)}
        self._save(entry)
        notes: dict[str, Any] = {}
        try:
            yield notes
        except HostCraftError as exc:
            self._finish(entry, started, "failed", exc.message, notes)
            raise
        except Exception as exc:
            self._finish(entry, started, "failed", f"unexpected error: {type(exc).__name__}: {exc}", notes)
            raise
        self._finish(entry, started, notes.pop("status", "succeeded"), notes.pop("message", None), notes)

    def skip(self, name: str, message: str) -> None:
        now = stamp(utcnow())
        entry = {
            "name": name,
            "status": "skipped",
            "startedAt": now,
            "finishedAt": now,
            "durationSeconds": 0.0,
            "message": message,
        }
        self._save(entry)

    def _finish(
        self,
        entry: dict[str, Any],
        started: dt.datetime,
        status: str,
        message: str | None,
        notes: dict[str, Any],
    ) -> None:
        finished = utcnow()
        entry.update(
            status=status,
            finishedAt=stamp(finished),
            durationSeconds=round((finished - started).total_seconds(), 3),
            message=message,
            details=notes,
        )
        self._save(entry)

    def _save(self, entry: dict[str, Any]) -> None:
        with self.runtime.store.session() as session:
            run = session.get(DrRun, self.run_id)
            assert run is not None
            steps = [item for item in run.steps if not _same_step(item, entry)]
            run.steps = [*steps, dict(entry)]
            session.commit()
        if self.on_step is not None:
            self.on_step(dict(entry))


def _same_step(item: dict[str, Any], entry: dict[str, Any]) -> bool:
    return bool(item.get("name") == entry["name"] and item.get("startedAt") == entry["startedAt"])


def get_run(session: Session, run_id: int) -> DrRun:
    run = session.get(DrRun, run_id)
    if run is None:
        raise NotFound(f"DR run {run_id} not found")
    return run


def list_runs(
    session: Session,
    *,
    application_id: int | None = None,
    kind: str | None = None,
    parent_id: int | None = None,
    limit: int = 50,
) -> list[DrRun]:
    query = select(DrRun).order_by(DrRun.id.desc()).limit(limit)
    if application_id is not None:
        query = query.where(DrRun.application_id == application_id)
    if kind is not None:
        query = query.where(DrRun.kind == kind)
    if parent_id is not None:
        query = query.where(DrRun.parent_id == parent_id)
    return list(session.scalars(query))


def active_run(session: Session, application_id: int) -> DrRun | None:
    return session.scalar(
        select(DrRun).where(DrRun.application_id == application_id, DrRun.status == "running").limit(1)
    )


def run_out(session: Session, run: DrRun) -> dict[str, Any]:
    def region_code(region_id: int | None) -> str | None:
        region = session.get(Region, region_id) if region_id is not None else None
        return region.code if region else None

    out: dict[str, Any] = {
        "id": run.id,
        "applicationId": run.application_id,
        "application": run.application_name,
        "kind": run.kind,
        "mode": run.mode,
        "trigger": run.trigger,
        "parentId": run.parent_id,
        "sourceRegion": region_code(run.source_region_id),
        "targetRegion": region_code(run.target_region_id),
        "status": run.status,
        "steps": list(run.steps),
        "backupId": run.backup_id,
        "dataAt": stamp(run.data_at),
        "rtoSeconds": run.rto_seconds,
        "rpoSeconds": run.rpo_seconds,
        "message": run.message,
        "actor": run.actor,
        "startedAt": stamp(run.started_at),
        "finishedAt": stamp(run.finished_at),
    }
    if run.kind == "region_failover":
        out["children"] = [child.id for child in list_runs(session, parent_id=run.id, limit=1000)]
    return out


def finish_run(
    session: Session,
    runtime: Runtime,
    run_id: int,
    *,
    status: Outcome,
    message: str | None,
    notice: tuple[Trigger, str, str, Severity] | None,
) -> DrRun:
    """Record a run's end, send ``notice`` (trigger, title, text, severity) once, and audit it."""
    from hostcraft.services.alerts import notify_once

    run = get_run(session, run_id)
    run.status = status
    run.message = message
    run.finished_at = utcnow()
    session.commit()
    if notice is not None:
        trigger, title, text, severity = notice
        notify_once(
            session,
            trigger=trigger,
            cause=f"dr-run:{run.id}",
            title=title,
            message=text,
            severity=severity,
            application_id=run.application_id,
            region_id=run.target_region_id,
            details={"runId": run.id},
        )
        session.commit()
    audit(
        runtime,
        actor=run.actor,
        action=f"dr.{run.kind}",
        target_type="application",
        target_id=run.application_id,
        target_name=run.application_name,
        outcome=status,
        reason=message,
        details={"runId": run.id, "rtoSeconds": run.rto_seconds, "rpoSeconds": run.rpo_seconds},
    )
    logger.info("DR run finished", extra={"run_id": run.id, "status": status, "app": run.application_name})
    return run
