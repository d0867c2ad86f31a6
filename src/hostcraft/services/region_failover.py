"""Fail over every application of a region: by DR priority, a bounded number at a time.

The region-wide run is a parent ``DrRun`` (kind ``region_failover``); each app gets its own run
with ``parent_id`` set. An app whose failover is refused or fails does not stop the others.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.domain.dr import policy_of
from hostcraft.errors import HostCraftError, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services.dr_runs import StepLog
from hostcraft.services.events import Outcome, audit
from hostcraft.services.failover import run_failover, start_failover
from hostcraft.services.managers import any_manager
from hostcraft.services.regions import find_region, get_region
from hostcraft.store.models import Application, DrRun, utcnow

logger = logging.getLogger(__name__)

_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="region-failover")


def start_region_failover(
    session: Session,
    runtime: Runtime,
    region_id: int,
    *,
    actor: str,
    target_region: int | str | None = None,
    force: bool = False,
    concurrency: int = 2,
    trigger: str = "manual",
    wait: bool = False,
) -> DrRun:
    """Record a region-wide failover and run it in the background (or now, with ``wait``)."""
    region = get_region(session, region_id)
    if concurrency < 1:
        raise ValidationError("concurrency must be at least 1", field="concurrency")
    if target_region is not None:
        target = find_region(session, target_region)
        if target.id == region.id:
            raise ValidationError(f"region {region.code} cannot fail over to itself", field="targetRegionId")
    parent = DrRun(
        kind="region_failover",
        mode="automatic" if trigger == "automatic" else "manual",
        trigger=trigger,
        source_region_id=region.id,
        target_region_id=find_region(session, target_region).id if target_region is not None else None,
        actor=actor,
    )
    session.add(parent)
    session.commit()
    if wait:
        run_region_failover(
            runtime, parent.id, target_region=target_region, force=force, concurrency=concurrency
        )
        session.expire_all()
        return session.get(DrRun, parent.id) or parent
    _executor.submit(
        run_region_failover,
        runtime,
        parent.id,
        target_region=target_region,
        force=force,
        concurrency=concurrency,
    )
    return parent


def region_answers(session: Session, runtime: Runtime, region_id: int) -> bool:
    """Return True when a manager of the region responds and the swarm has quorum."""
    try:
        with any_manager(session, runtime, region_id, require_quorum=True):
            return True
    except HostCraftError:
        return False


def apps_by_priority(session: Session, region_id: int) -> tuple[list[Application], list[Application]]:
    """Return the region's apps with a DR policy (lowest priority value first) and those without."""
    apps = list(session.scalars(select(Application).where(Application.region_id == region_id)))
    covered = [app for app in apps if policy_of(app.spec) is not None]
    covered.sort(key=lambda app: (policy_of(app.spec).priority, app.project, app.name))  # type: ignore[union-attr]
    return covered, [app for app in apps if policy_of(app.spec) is None]


def run_region_failover(
    runtime: Runtime, parent_id: int, *, target_region: int | str | None, force: bool, concurrency: int
) -> None:
    steps = StepLog(runtime, parent_id)
    with runtime.store.session() as session:
        parent = session.get(DrRun, parent_id)
        assert parent is not None
        region = get_region(session, int(parent.source_region_id or 0))
        covered, uncovered = apps_by_priority(session, region.id)
        if uncovered:
            steps.skip(
                "uncovered",
                "no DR policy, left in place: " + ", ".join(f"{app.project}/{app.name}" for app in uncovered),
            )
        if not force and covered and region_answers(session, runtime, region.id):
            _finish(
                session,
                runtime,
                parent_id,
                "refused",
                f"region {region.code} has quorum: failing all its applications over would lose the writes "
                "since their last backups; fail single apps over, or pass force (e.g. before planned work)",
            )
            return
        # The parent decided for the region as a whole, so the apps' own runs do not ask again.
        children = _start_children(session, runtime, parent_id, covered, target_region, force=True)
    results = _run_children(runtime, children, concurrency)
    with runtime.store.session() as session:
        failed = [name for name, status in results if status != "succeeded"]
        status: Outcome = "succeeded" if not failed else "failed"
        message = f"{len(results) - len(failed)} of {len(results)} applications failed over" + (
            f"; not moved: {', '.join(failed)}" if failed else ""
        )
        _finish(session, runtime, parent_id, status, message)


def _start_children(
    session: Session,
    runtime: Runtime,
    parent_id: int,
    apps: list[Application],
    target_region: int | str | None,
    *,
    force: bool,
) -> list[tuple[str, int | None]]:
    """Record one run per app without starting it; a refused app is recorded and skipped."""
    children: list[tuple[str, int | None]] = []
    for app in apps:
        name = f"{app.project}/{app.name}"
        try:
            run = start_failover(
                session,
                runtime,
                app.id,
                actor="hostcraft-dr",
                target_region=target_region,
                force=force,
                parent_id=parent_id,
                defer=True,
            )
        except HostCraftError as exc:
            logger.warning("failover not started", extra={"app": name, "error": exc.message})
            children.append((name, None))
            continue
        children.append((name, run.id))
    return children


def _run_children(
    runtime: Runtime, children: list[tuple[str, int | None]], concurrency: int
) -> list[tuple[str, str]]:
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="failover-app") as pool:
        futures = {name: pool.submit(run_failover, runtime, run_id) for name, run_id in children if run_id}
        for future in futures.values():
            future.result()
    results = []
    with runtime.store.session() as session:
        for name, run_id in children:
            run = session.get(DrRun, run_id) if run_id else None
            results.append((name, run.status if run else "refused"))
    return results


def _finish(session: Session, runtime: Runtime, parent_id: int, status: Outcome, message: str) -> None:
    parent = session.get(DrRun, parent_id)
    assert parent is not None
    parent.status = status
    parent.message = message
    parent.finished_at = utcnow()
    session.commit()
    details: dict[str, Any] = {"runId": parent_id}
    audit(
        runtime,
        actor=parent.actor,
        action="dr.region_failover",
        target_type="region",
        target_id=parent.source_region_id,
        outcome=status,
        reason=message,
        details=details,
    )
