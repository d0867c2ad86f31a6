"""The engine's DR loop: fence old copies, keep DR regions ready, fail over by itself, run drills.

Automatic failover is opt-in per app (``dr.automatic``). A region counts as down when none of its
managers responds to the control plane. The app must also be failing its probes (an open
incident), and both must last the grace period. When no region responds at all, the control
plane is the one cut off, so it does nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.domain.backup_policy import next_run
from hostcraft.domain.dr import (
    DrPolicy,
    RegionObservation,
    automatic_failover_due,
    control_plane_isolated,
    policy_of,
    region_down,
)
from hostcraft.errors import ConflictError, HostCraftError
from hostcraft.runtime import Runtime
from hostcraft.services.dr_images import ensure_images
from hostcraft.services.dr_runs import active_run
from hostcraft.services.events import record_event
from hostcraft.services.failover import (
    data_node,
    data_parts,
    data_time,
    fence_now,
    newest_complete_backup,
    pinned_image,
    start_failover,
    stateful,
)
from hostcraft.services.regions import find_region, list_regions
from hostcraft.services.servers import engine_client, list_servers
from hostcraft.store.models import (
    Application,
    AppVolume,
    BackupSchedule,
    DrFence,
    DrStandby,
    Incident,
    Region,
    utcnow,
)

logger = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 3.0
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dr-ping")


@dataclass
class DrWatch:
    """State the DR loop keeps between ticks, per process: it starts empty with the engine."""

    region_down_since: dict[int, dt.datetime] = field(default_factory=dict)
    attempted: dict[int, dt.datetime] = field(default_factory=dict)
    standbys_due_at: float = 0.0
    # Logged once per isolation, not on every tick.
    isolated: bool = False


def dr_tick(runtime: Runtime, watch: DrWatch, *, now: dt.datetime | None = None) -> None:
    """Run each DR duty once; one failing duty is logged and the others still run."""
    now = now or utcnow()
    duties: list[tuple[str, Callable[[], object]]] = [
        ("retry pending fences", lambda: retry_fences(runtime)),
        ("check for automatic failovers", lambda: automatic_failovers(runtime, watch, now=now)),
        ("start due drills", lambda: run_due_drills(runtime, now=now)),
    ]
    if time.monotonic() >= watch.standbys_due_at:
        watch.standbys_due_at = time.monotonic() + runtime.settings.dr_standby_interval_seconds
        duties.append(("prepare standbys", lambda: prepare_standbys(runtime)))
    for name, duty in duties:
        try:
            duty()
        except Exception:
            logger.exception("failed to %s", name)


# Fences


def retry_fences(runtime: Runtime) -> list[int]:
    """Scale each pending fence's service to 0 once its region responds; return the fenced ids."""
    fenced = []
    with runtime.store.session() as session:
        for fence in list(session.scalars(select(DrFence).where(DrFence.status == "pending"))):
            if fence_now(session, runtime, fence):
                fenced.append(fence.id)
                _record_fence(session, fence)
    return fenced


def _record_fence(session: Session, fence: DrFence) -> None:
    app = session.get(Application, fence.application_id)
    region = session.get(Region, fence.region_id)
    record_event(
        session,
        actor="hostcraft-engine",
        action="dr.fence",
        target_type="application",
        target_id=fence.application_id,
        target_name=f"{app.project}/{app.name}" if app else None,
        outcome="succeeded",
        reason=f"region {region.code if region else fence.region_id} responds again: its copy of the "
        f"service {fence.service_name} was scaled to 0",
        details={"fenceId": fence.id, "regionId": fence.region_id, "attempts": fence.attempts},
    )
    session.commit()


# Automatic failover


def observe_regions(runtime: Runtime) -> list[RegionObservation]:
    """Ping every manager of every region at once; a region with no manager recorded is left out."""
    with runtime.store.session() as session:
        managers: dict[str, list[int]] = {}
        for server in list_servers(session):
            if server.swarm_role == "manager":
                managers.setdefault(server.region.code, []).append(server.id)
    futures = {
        code: [_pool.submit(_answers, runtime, server_id) for server_id in ids]
        for code, ids in managers.items()
    }
    return [
        RegionObservation(code, sum(future.result() for future in items), len(items))
        for code, items in futures.items()
    ]


def _answers(runtime: Runtime, server_id: int) -> bool:
    with runtime.store.session() as session:
        server = next(item for item in list_servers(session) if item.id == server_id)
        try:
            with engine_client(server, runtime, timeout=PING_TIMEOUT_SECONDS) as client:
                return bool(client.ping())
        except Exception:  # any failure to reach the engine means it does not respond
            return False


def automatic_failovers(runtime: Runtime, watch: DrWatch, *, now: dt.datetime) -> list[int]:
    """Start the failovers that are due; return their run ids."""
    with runtime.store.session() as session:
        apps = [app for app in session.scalars(select(Application)) if _automatic(app)]
    if not apps:
        watch.region_down_since.clear()
        return []
    observations = observe_regions(runtime)
    if control_plane_isolated(observations):
        if not watch.isolated:
            logger.warning("no region responded: the control plane is isolated, so it fails nothing over")
        watch.isolated = True
        return []
    if watch.isolated:
        logger.info("regions respond again: automatic failover resumes")
    watch.isolated = False
    with runtime.store.session() as session:
        down = _track_down(session, watch, observations, now)
        started = []
        for app in apps:
            run_id = _maybe_fail_over(session, runtime, watch, app.id, down, now)
            if run_id is not None:
                started.append(run_id)
        return started


def _automatic(app: Application) -> bool:
    policy = policy_of(app.spec)
    return policy is not None and policy.automatic


def _track_down(
    session: Session, watch: DrWatch, observations: list[RegionObservation], now: dt.datetime
) -> dict[int, dt.datetime]:
    for observation in observations:
        region = find_region(session, observation.code)
        if region_down(observation):
            watch.region_down_since.setdefault(region.id, now)
        else:
            watch.region_down_since.pop(region.id, None)
    return watch.region_down_since


def _maybe_fail_over(
    session: Session,
    runtime: Runtime,
    watch: DrWatch,
    app_id: int,
    down: dict[int, dt.datetime],
    now: dt.datetime,
) -> int | None:
    app = session.get(Application, app_id)
    if app is None or app.region_id not in down or active_run(session, app.id) is not None:
        return None
    policy = policy_of(app.spec)
    assert policy is not None
    incident = session.scalar(
        select(Incident).where(Incident.application_id == app.id, Incident.status == "open").limit(1)
    )
    since = down[app.region_id]
    if watch.attempted.get(app.id) == since:
        return None  # one automatic attempt per outage; a failed one is for the operator to look at
    if not automatic_failover_due(
        region_down_since=since,
        app_failing_since=incident.began_at if incident else None,
        now=now,
        grace_period_seconds=policy.grace_period_seconds,
    ):
        return None
    watch.attempted[app.id] = since
    logger.warning(
        "region down: failing over automatically", extra={"app": app.name, "region_id": app.region_id}
    )
    try:
        run = start_failover(session, runtime, app.id, actor="hostcraft-engine", trigger="automatic")
    except HostCraftError as exc:
        logger.warning("automatic failover not started", extra={"app": app.name, "error": exc.message})
        return None
    return run.id


# Standbys


def prepare_standbys(runtime: Runtime) -> None:
    """Copy each DR app's images to its DR regions; in warm mode also seed volumes and a 0-replica service."""
    with runtime.store.session() as session:
        app_ids = [app.id for app in session.scalars(select(Application)) if policy_of(app.spec) is not None]
    for app_id in app_ids:
        with runtime.store.session() as session:
            app = session.get(Application, app_id)
            if app is None or active_run(session, app_id) is not None:
                continue
            policy = policy_of(app.spec)
            assert policy is not None
            for code in _standby_regions(session, app, policy):
                _prepare_one(session, runtime, app, policy, code)


def _standby_regions(session: Session, app: Application, policy: DrPolicy) -> list[str]:
    codes = {region.code: region.id for region in list_regions(session)}
    wanted = [*policy.regions, policy.home_region]
    return [code for code in dict.fromkeys(wanted) if code in codes and codes[code] != app.region_id]


def _prepare_one(session: Session, runtime: Runtime, app: Application, policy: DrPolicy, code: str) -> None:
    region = find_region(session, code)
    row = session.scalar(
        select(DrStandby).where(DrStandby.application_id == app.id, DrStandby.region_id == region.id)
    )
    if row is None:
        row = DrStandby(application_id=app.id, region_id=region.id, volumes={})
        session.add(row)
    image = pinned_image(session, app)
    images = [image, runtime.settings.backup_image] if stateful(app) else [image]
    try:
        found = ensure_images(session, region.id, images)
        if found.missing:
            raise HostCraftError(
                "images missing: " + "; ".join(f"{k} ({v})" for k, v in found.missing.items())
            )
        row.image_reference = (found.present + found.copied + found.unchecked)[0] if images else None
        if policy.mode == "warm":
            _seed_warm(session, runtime, app, row)
        row.status = "ready"
        row.message = None
    except HostCraftError as exc:
        row.status = "failed"
        row.message = exc.message
        logger.warning(
            "failed to prepare standby", extra={"app": app.name, "region": code, "error": exc.message}
        )
    row.prepared_at = utcnow()
    session.commit()


def _seed_warm(session: Session, runtime: Runtime, app: Application, row: DrStandby) -> None:
    """Restore the newest backup readable there into the standby's volumes, and create the service at 0."""
    from hostcraft.services.backup_restore import run_restore_job
    from hostcraft.services.deployments import create_standby_service

    region = find_region(session, str(row.region_id))
    # The standby keeps the node it chose first, so later seeds refresh the same volumes.
    node_id = (row.volumes or {}).get("nodeId") or data_node(session, runtime, app, region).node_id
    if stateful(app):
        found = newest_complete_backup(session, app, region.id, data_parts(app))
        if found is None:
            raise ConflictError(f"no backup of {app.name} with all its data is readable in {region.code} yet")
        backup, source = found
        if row.seeded_backup_id != backup.id:
            for part in source.parts:
                if part["part"].startswith("volume:"):
                    name = part["part"].removeprefix("volume:")
                    volume = (
                        session.scalar(
                            select(AppVolume.swarm_name).where(
                                AppVolume.application_id == app.id, AppVolume.name == name
                            )
                        )
                        or f"{app.project}_{name}"
                    )
                    run_restore_job(
                        session, runtime, region.id, source.destination, part, node_id=node_id, volume=volume
                    )
            row.seeded_backup_id = backup.id
            logger.info(
                "standby seeded", extra={"app": app.name, "region": region.code, "backup_id": backup.id}
            )
        row.volumes = {"nodeId": node_id, "dataAt": data_time(backup).isoformat()}
    else:
        row.volumes = {"nodeId": node_id}
    row.service_name = create_standby_service(
        session, runtime, app, region_id=region.id, image=pinned_image(session, app), node_id=node_id
    )


# Scheduled drills


def run_due_drills(runtime: Runtime, *, now: dt.datetime) -> list[int]:
    """Start the live drills whose schedule is due; a missed run is not made up more than once."""
    from hostcraft.services.drills import start_live_drill

    started = []
    with runtime.store.session() as session:
        for app in list(session.scalars(select(Application))):
            policy = policy_of(app.spec)
            if policy is None or policy.drill_schedule is None:
                continue
            key = f"drill:{app.id}"
            schedule = session.get(BackupSchedule, key)
            if schedule is None or schedule.expression != policy.drill_schedule:
                session.merge(
                    BackupSchedule(
                        key=key,
                        expression=policy.drill_schedule,
                        timezone=policy.drill_timezone,
                        next_run_at=next_run(policy.drill_schedule, policy.drill_timezone, after=now),
                    )
                )
                session.commit()
                continue
            if schedule.next_run_at > now or active_run(session, app.id) is not None:
                continue
            schedule.last_run_at = now
            schedule.next_run_at = next_run(policy.drill_schedule, policy.drill_timezone, after=now)
            session.commit()
            try:
                run = start_live_drill(session, runtime, app.id, actor="hostcraft-engine", trigger="schedule")
            except HostCraftError as exc:
                logger.warning("scheduled drill not started", extra={"app": app.name, "error": exc.message})
                continue
            started.append(run.id)
    return started
