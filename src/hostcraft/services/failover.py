"""Failover and failback of an application between regions, step by step.

A run goes ``preflight → restore → deploy → switch-traffic → fence``. Pre-flight changes
nothing but the target registry (a missing image is copied there). Until the app is healthy in
the target, a failure puts the app's record back on the source region, so a retry starts from
where the operator was. Once the target serves, the old region's service is scaled to 0. When
that region is unreachable, the fence stays ``pending`` and the engine applies it as soon as
the region's managers respond, so two copies serve only until then.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hostcraft.backup.jobs import TERMINAL_TASK_STATES
from hostcraft.docker import swarm as swarm_api
from hostcraft.docker.specs import service_name
from hostcraft.domain.dr import DrPolicy, dr_targets, policy_of, recovery_point_seconds
from hostcraft.domain.placement import PlacementNode, eligible_nodes
from hostcraft.errors import ConflictError, HostCraftError, NotFound, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services import dr_health
from hostcraft.services.alerts import Severity, Trigger
from hostcraft.services.applications import get_application
from hostcraft.services.backup_replication import RestoreSource, available_backups
from hostcraft.services.dr_images import ensure_images
from hostcraft.services.dr_runs import StepCallback, StepLog, active_run, finish_run, get_run
from hostcraft.services.drain import placement_node
from hostcraft.services.events import Outcome
from hostcraft.services.managers import any_manager
from hostcraft.services.regions import find_region, get_region, list_regions
from hostcraft.store.models import Application, AppVolume, Backup, DrFence, DrRun, DrStandby, Region, utcnow

logger = logging.getLogger(__name__)

_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="failover")
# How long a restore waits for an old copy to stop: Swarm kills a task 10 s (its default stop grace
# period) after stopping it, and a loaded node takes longer to report it.
STOP_TIMEOUT_SECONDS = 60.0
_start_lock = threading.Lock()


class FailoverRefused(ConflictError):
    """The failover was not started because a pre-condition failed; the message names it."""


@dataclass
class AppState:
    """The parts of an app's record a failover changes, kept to put them back on failure."""

    region_id: int
    service_id: str | None
    spec: dict[str, Any]
    volumes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


# Starting


def start_failover(
    session: Session,
    runtime: Runtime,
    app_id: int,
    *,
    actor: str,
    target_region: int | str | None = None,
    force: bool = False,
    kind: str = "failover",
    trigger: str = "manual",
    parent_id: int | None = None,
    wait: bool = False,
    defer: bool = False,
    on_step: StepCallback | None = None,
) -> DrRun:
    """Record a failover (or failback) run of one app and run it in the background, or now with ``wait``.

    With ``defer`` the run is only recorded, for a caller that runs it (a region-wide failover).
    Raises FailoverRefused (409, with the refused run stored) when a pre-condition fails.
    """
    app = get_application(session, app_id)
    policy = _policy(app)
    with _start_lock:
        running = active_run(session, app.id)
        if running is not None:
            raise ConflictError(
                f"DR run {running.id} of {app.name} is running: runs of one application never overlap",
                details={"runId": running.id},
            )
        source = get_region(session, app.region_id)
        target = _choose_target(session, runtime, app, policy, target_region=target_region, kind=kind)
        run = DrRun(
            application_id=app.id,
            application_name=f"{app.project}/{app.name}",
            kind=kind,
            mode="automatic" if trigger == "automatic" else "manual",
            trigger=trigger,
            parent_id=parent_id,
            source_region_id=source.id,
            target_region_id=target.id,
            actor=actor,
        )
        session.add(run)
        session.commit()
    # A failback backs the app up where it runs first, so leaving a healthy region loses only the
    # writes made during the move. A failover restores an older backup, so it needs a region in trouble.
    reason = None if force or kind == "failback" else refusal_reason(session, runtime, app, source)
    if reason is not None:
        _refuse(session, runtime, run, reason)
    if defer:
        return run
    if wait:
        run_failover(runtime, run.id, on_step=on_step)
        session.expire_all()
        return session.get(DrRun, run.id) or run
    _executor.submit(run_failover, runtime, run.id, on_step=on_step)
    return run


def _policy(app: Application) -> DrPolicy:
    policy = policy_of(app.spec)
    if policy is None:
        raise ValidationError(
            f"{app.project}/{app.name} has no DR policy: add a 'dr' object naming its DR regions",
            field="dr",
        )
    return policy


def _choose_target(
    session: Session,
    runtime: Runtime,
    app: Application,
    policy: DrPolicy,
    *,
    target_region: int | str | None,
    kind: str,
) -> Region:
    source = get_region(session, app.region_id)
    if kind == "failback":
        if policy.home_region in (None, source.code):
            raise ConflictError(
                f"{app.name} already runs in its home region {source.code}: nothing to fail back"
            )
        return find_region(session, str(policy.home_region))
    if target_region is not None:
        try:
            target = find_region(session, target_region)
        except NotFound as exc:
            raise ValidationError(exc.message, field="targetRegionId") from exc
        if target.id == app.region_id:
            raise ValidationError(f"{app.name} already runs in region {target.code}", field="targetRegionId")
        allowed = {*policy.regions, policy.home_region}
        if target.code not in allowed:
            raise ValidationError(
                f"region {target.code} is not in the DR policy of {app.name} (home {policy.home_region}, "
                f"DR regions {', '.join(policy.regions) or 'none'})",
                field="targetRegionId",
            )
        return target
    priorities = {region.code: region.priority for region in list_regions(session)}
    candidates = dr_targets(policy, active=source.code, priorities=priorities)
    problems = []
    for code in candidates:
        region = find_region(session, code)
        try:
            with any_manager(session, runtime, region.id, require_quorum=True):
                return region
        except HostCraftError as exc:
            problems.append(f"{code}: {exc.message}")
    raise FailoverRefused(
        f"no DR region of {app.name} can take it: {'; '.join(problems) or 'the policy names none'}",
        details={"field": "targetRegionId"},
    )


def refusal_reason(session: Session, runtime: Runtime, app: Application, source: Region) -> str | None:
    """Return why failing over away from ``source`` is refused, or None when the region is in trouble.

    A region with quorum whose app has no open incident is healthy: moving away from it would
    lose data written since the last backup for nothing, so it needs ``force``.
    """
    from hostcraft.services.monitoring import open_incident_of

    try:
        with any_manager(session, runtime, source.id, require_quorum=True):
            pass
    except HostCraftError:
        return None
    if open_incident_of(session, app.id) is not None:
        return None
    return (
        f"region {source.code} has quorum and {app.name} has no open incident there: a failover would "
        "lose the writes since the last backup; pass force to fail over anyway (e.g. before planned work)"
    )


def _refuse(session: Session, runtime: Runtime, run: DrRun, reason: str) -> None:
    finish_run(session, runtime, run.id, status="refused", message=reason, notice=None)
    raise FailoverRefused(reason, details={"runId": run.id})


# Running


def run_failover(runtime: Runtime, run_id: int, *, on_step: StepCallback | None = None) -> None:
    """Run one recorded failover or failback to its end; every failure is recorded on the run."""
    steps = StepLog(runtime, run_id, on_step=on_step)
    with runtime.store.session() as session:
        run = session.get(DrRun, run_id)
        if run is None or run.status != "running" or run.application_id is None:
            return
        app = get_application(session, run.application_id)
        policy = _policy(app)
        source = get_region(session, int(run.source_region_id or app.region_id))
        target = get_region(session, int(run.target_region_id or 0))
        saved = _save_state(session, app)
        switched = False
        try:
            if run.kind == "failback":
                _fresh_backup(session, runtime, app, steps)
            backup, restore_from = preflight(session, runtime, app, policy, target, steps)
            _record_data(session, run, backup)
            volumes = _restore_volumes(session, runtime, app, target, backup, restore_from, steps)
            healthy_at = _deploy(
                session, runtime, app, policy, source, target, volumes, backup, restore_from, steps
            )
            switched = True
            _record_rto(session, run_id, healthy_at)
            _close_incident(session, app.id, healthy_at)
            _switch_traffic(session, runtime, app, policy, source, target, run_id, steps)
            _fence(session, runtime, app, source, steps)
        except Exception as exc:
            if not isinstance(exc, HostCraftError):
                logger.exception("failover failed unexpectedly", extra={"run_id": run_id})
            message = exc.message if isinstance(exc, HostCraftError) else f"unexpected error: {exc}"
            session.rollback()
            if not switched:
                _undo(session, runtime, app.id, saved, target)
            _finish(session, runtime, run_id, status="failed", message=message)
            return
        _finish(session, runtime, run_id, status="succeeded", message=None)


def _save_state(session: Session, app: Application) -> AppState:
    rows = session.scalars(select(AppVolume).where(AppVolume.application_id == app.id))
    return AppState(
        region_id=app.region_id,
        service_id=app.service_id,
        spec=copy.deepcopy(app.spec),
        volumes={row.name: (row.node_id, row.node_hostname) for row in rows},
    )


def _undo(session: Session, runtime: Runtime, app_id: int, saved: AppState, target: Region) -> None:
    """Put the app's record back on the source region and stop whatever started in the target.

    The source copy is left as it was, so two copies never serve after a failed run.
    """
    app = get_application(session, app_id)
    moved = app.region_id == target.id
    _restore_state(session, app_id, saved)
    if moved:
        _stop_target_service(session, runtime, app, target)


def _restore_state(session: Session, app_id: int, saved: AppState) -> None:
    app = get_application(session, app_id)
    app.region_id = saved.region_id
    app.service_id = saved.service_id
    app.spec = saved.spec
    for row in session.scalars(select(AppVolume).where(AppVolume.application_id == app_id)):
        if row.name in saved.volumes:
            row.node_id, row.node_hostname = saved.volumes[row.name]
    session.commit()


def _record_data(session: Session, run: DrRun, backup: Backup | None) -> None:
    fresh = session.get(DrRun, run.id)
    assert fresh is not None
    fresh.backup_id = backup.id if backup else None
    fresh.data_at = data_time(backup) if backup else None
    session.commit()


def _record_rto(session: Session, run_id: int, healthy_at: dt.datetime) -> None:
    run = session.get(DrRun, run_id)
    assert run is not None
    run.rto_seconds = round((healthy_at - run.started_at).total_seconds(), 3)
    run.rpo_seconds = (
        round(recovery_point_seconds(failure_at=run.started_at, data_at=run.data_at), 3)
        if run.data_at is not None
        else 0.0
    )
    session.commit()


def _close_incident(session: Session, app_id: int, healthy_at: dt.datetime) -> None:
    """End the outage the failover fixed, so the recovery ladder does not act on the new copy."""
    from hostcraft.services.monitoring import resolve_incident

    resolve_incident(session, get_application(session, app_id), ended_at=healthy_at, now=utcnow())
    session.commit()


def _finish(session: Session, runtime: Runtime, run_id: int, *, status: Outcome, message: str | None) -> None:
    run = get_run(session, run_id)
    target = session.get(Region, run.target_region_id) if run.target_region_id else None
    verb = "failed back" if run.kind == "failback" else "failed over"
    if status == "succeeded":
        text = (
            f"{run.application_name} {verb} to {target.code if target else '?'} in {run.rto_seconds} s "
            f"(RPO {run.rpo_seconds} s)"
        )
    else:
        text = f"{run.kind} of {run.application_name} failed: {message}"
    severity: Severity = "warning" if status == "succeeded" else "critical"
    notice: tuple[Trigger, str, str, Severity] = (
        "region_failover",
        f"{run.kind} {status}: {run.application_name}",
        text,
        severity,
    )
    finish_run(session, runtime, run_id, status=status, message=message, notice=notice)


# Steps


def _fresh_backup(session: Session, runtime: Runtime, app: Application, steps: StepLog) -> None:
    """Back the app up in the region it runs in before failing back, so the way home loses nothing."""
    from hostcraft.services.backups import start_backup

    kind = "full" if app.spec.get("volumes") or app.spec.get("backupDatabases") else "config"
    with steps.step("backup") as notes:
        backup = start_backup(
            session, runtime, app.id, kind=kind, actor="hostcraft-dr", trigger="manual", wait=True
        )
        notes["backupId"] = backup.id
        if backup.status != "succeeded":
            raise ConflictError(f"the backup before failing back failed: {backup.message}")
        notes["message"] = f"backup {backup.id} ({kind}) taken in the active region"


def data_time(backup: Backup) -> dt.datetime:
    """Return the time of a backup's data: when it started reading (restic's snapshot time)."""
    return backup.started_at or backup.created_at


def stateful(app: Application) -> bool:
    """Return True when the app has data a failover must restore: local volumes or databases."""
    local = [v for v in app.spec.get("volumes") or [] if (v.get("driver") or "local") == "local"]
    return bool(local or app.spec.get("backupDatabases"))


def preflight(
    session: Session, runtime: Runtime, app: Application, policy: DrPolicy, target: Region, steps: StepLog
) -> tuple[Backup | None, RestoreSource | None]:
    with steps.step("preflight") as notes:
        problems: list[str] = []
        nodes = target_nodes(session, runtime, target, problems)
        check_capacity(app, nodes, problems)
        images = [pinned_image(session, app)]
        if stateful(app):
            images.append(runtime.settings.backup_image)
        found = ensure_images(session, target.id, images)
        notes["images"] = {"present": found.present, "copied": found.copied, "unchecked": found.unchecked}
        if found.missing:
            notes["missingImages"] = found.missing
            problems.append(
                "images missing in region "
                + target.code
                + ": "
                + "; ".join(f"{image} ({why})" for image, why in found.missing.items())
            )
        backup, source = _newest_backup(session, app, policy, target, problems, notes)
        if problems:
            raise ConflictError(f"pre-flight failed: {' | '.join(problems)}", details={"problems": problems})
        notes["message"] = f"region {target.code} has quorum and room; images ready" + (
            f"; backup {backup.id} from {data_time(backup).isoformat()}" if backup else ""
        )
        return backup, source


def target_nodes(
    session: Session, runtime: Runtime, target: Region, problems: list[str]
) -> list[PlacementNode]:
    try:
        with any_manager(session, runtime, target.id, require_quorum=True) as (_, client):
            return [placement_node(node) for node in swarm_api.list_nodes(client)]
    except HostCraftError as exc:
        problems.append(f"region {target.code} cannot take writes: {exc.message}")
        return []


def check_capacity(app: Application, nodes: list[PlacementNode], problems: list[str]) -> None:
    if not nodes:
        return
    placement = app.spec.get("placement") or {}
    candidates = eligible_nodes(nodes, list(placement.get("constraints") or []), exclude="")
    replicas = int(app.spec.get("replicas", 1))
    per_node = placement.get("maxReplicasPerNode")
    # Nodes needed: one per maxReplicasPerNode replicas, or any one node when there is no limit.
    needed = min(1, replicas)
    if per_node:
        needed = math.ceil(replicas / per_node)
    if len(candidates) < needed:
        problems.append(
            f"capacity: {replicas} replicas need {needed} ready, active nodes meeting the app's constraints, "
            f"the region has {len(candidates)}"
        )


def pinned_image(session: Session, app: Application) -> str:
    """Return the image digest reference of the app's newest succeeded deployment, else its spec image."""
    from hostcraft.store.models import Deployment

    pinned = session.scalar(
        select(Deployment.image_digest_reference)
        .where(Deployment.application_id == app.id, Deployment.status == "succeeded")
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    return str(pinned or app.spec["image"])


def _newest_backup(
    session: Session,
    app: Application,
    policy: DrPolicy,
    target: Region,
    problems: list[str],
    notes: dict[str, Any],
) -> tuple[Backup | None, RestoreSource | None]:
    if not stateful(app):
        notes["backup"] = "none needed: the app keeps no local volume or database"
        return None, None
    needed = data_parts(app)
    found = newest_complete_backup(session, app, target.id, needed)
    if found is None:
        problems.append(
            f"no succeeded backup of {app.name} holding {', '.join(sorted(needed))} is readable in region "
            f"{target.code}: replicate full backups there (backupReplicateTo) before a failover can "
            "restore its data"
        )
        return None, None
    backup, source = found
    age = (utcnow() - data_time(backup)).total_seconds()
    notes["backupAgeSeconds"] = round(age, 1)
    if age > policy.rpo_seconds:
        notes["warning"] = (
            f"the newest backup readable in {target.code} is {age:.0f} s old, above the RPO objective "
            f"of {policy.rpo_seconds} s"
        )
    return backup, source


def data_parts(app: Application) -> set[str]:
    """Return the backup parts a failover must restore: each local volume and each database."""
    volumes = {
        f"volume:{volume['name']}"
        for volume in app.spec.get("volumes") or []
        if (volume.get("driver") or "local") == "local"
    }
    return volumes | {f"database:{entry['name']}" for entry in app.spec.get("backupDatabases") or []}


def newest_complete_backup(
    session: Session, app: Application, region_id: int, needed: set[str]
) -> tuple[Backup, RestoreSource] | None:
    """Return the newest succeeded backup readable in the region that contains every needed part.

    A newer backup of fewer parts (a config-only or database-only run) is passed over, so a
    failover never starts the app on empty volumes.
    """
    for backup, source in available_backups(session, region_id=region_id, app_id=app.id, limit=50):
        if needed <= {part["part"] for part in source.parts}:
            return backup, source
    return None


def _restore_volumes(
    session: Session,
    runtime: Runtime,
    app: Application,
    target: Region,
    backup: Backup | None,
    source: RestoreSource | None,
    steps: StepLog,
) -> dict[str, PlacementNode]:
    """Restore each volume part into the volume's own name on one node of the target region."""
    from hostcraft.services.backup_restore import run_restore_job

    parts = [part for part in (source.parts if source else []) if part["part"].startswith("volume:")]
    if backup is None or source is None or not parts:
        steps.skip("restore", "no volume to restore")
        return {}
    with steps.step("restore") as notes:
        _stop_target_copy(session, runtime, app, target)
        standby = _warm_standby(session, app, target)
        node = _standby_node(session, runtime, standby, target) or data_node(session, runtime, app, target)
        restored = {}
        if standby is not None and standby.seeded_backup_id == backup.id:
            notes["message"] = f"warm standby on {node.hostname} already holds backup {backup.id}"
            return {part["part"].removeprefix("volume:"): node for part in parts}
        for part in parts:
            name = part["part"].removeprefix("volume:")
            row = session.scalar(
                select(AppVolume).where(AppVolume.application_id == app.id, AppVolume.name == name)
            )
            volume = row.swarm_name if row else f"{app.project}_{name}"
            run_restore_job(
                session, runtime, target.id, source.destination, part, node_id=node.node_id, volume=volume
            )
            restored[name] = node
        notes["volumes"] = sorted(restored)
        notes["node"] = node.hostname
        notes["message"] = f"{len(restored)} volume(s) of backup {backup.id} restored on {node.hostname}"
        return restored


def _stop_target_copy(session: Session, runtime: Runtime, app: Application, target: Region) -> None:
    """Scale the app's service in the target region to 0 and wait until none of its tasks runs.

    An earlier failover away from the target leaves a fenced copy there that may still be
    stopping. A copy that writes to the volume after the restore replaced its files (PostgreSQL's
    shutdown checkpoint does) leaves data that no longer matches the backup, or does not start.
    """
    name = service_name(app.project, app.name)
    with any_manager(session, runtime, target.id, require_quorum=True) as (_, client):
        services = [
            item for item in client.api.services(filters={"name": name}) if item["Spec"]["Name"] == name
        ]
        if not services:
            return
        _scale_to_zero(client, name)

        def stopped() -> bool:
            tasks = swarm_api.list_tasks(client, service=services[0]["ID"])
            return all((task.get("Status") or {}).get("State") in TERMINAL_TASK_STATES for task in tasks)

        if not swarm_api.wait_until(stopped, timeout=STOP_TIMEOUT_SECONDS):
            raise ConflictError(
                f"the copy of {app.name} in {target.code} did not stop within {STOP_TIMEOUT_SECONDS:.0f} s, "
                f"so its volumes cannot be restored safely: check the tasks of {name} there and retry"
            )


def _warm_standby(session: Session, app: Application, target: Region) -> DrStandby | None:
    policy = policy_of(app.spec)
    if policy is None or policy.mode != "warm":
        return None
    return session.scalar(
        select(DrStandby).where(
            DrStandby.application_id == app.id, DrStandby.region_id == target.id, DrStandby.status == "ready"
        )
    )


def _standby_node(
    session: Session, runtime: Runtime, standby: DrStandby | None, target: Region
) -> PlacementNode | None:
    node_id = (standby.volumes or {}).get("nodeId") if standby else None
    if node_id is None:
        return None
    with any_manager(session, runtime, target.id, require_quorum=True) as (_, client):
        nodes = [placement_node(node) for node in swarm_api.list_nodes(client)]
    return next((node for node in nodes if node.node_id == node_id and node.state == "ready"), None)


def data_node(session: Session, runtime: Runtime, app: Application, target: Region) -> PlacementNode:
    placement = app.spec.get("placement") or {}
    with any_manager(session, runtime, target.id, require_quorum=True) as (_, client):
        nodes = [placement_node(node) for node in swarm_api.list_nodes(client)]
    candidates = eligible_nodes(nodes, list(placement.get("constraints") or []), exclude="")
    if not candidates:
        raise ConflictError(f"no ready, active node of region {target.code} meets the app's constraints")
    # Prefer workers, as the first deploy does, so managers keep their resources for Raft.
    return sorted(candidates, key=lambda node: (node.role != "worker", node.hostname))[0]


def _deploy(
    session: Session,
    runtime: Runtime,
    app: Application,
    policy: DrPolicy,
    source: Region,
    target: Region,
    volumes: dict[str, PlacementNode],
    backup: Backup | None,
    restore_from: RestoreSource | None,
    steps: StepLog,
) -> dt.datetime:
    """Move the app's record to the target, deploy it there, load its databases, wait until healthy."""
    from hostcraft.services.deployments import start_deployment

    with steps.step("deploy") as notes:
        _move_record(session, app, policy, source, target, volumes)
        deployment = start_deployment(
            session,
            runtime,
            app.id,
            actor="hostcraft-dr",
            kind="failover",
            image_reference=pinned_image(session, app),
            wait=True,
        )
        notes["deploymentId"] = deployment.id
        if deployment.status != "succeeded":
            _stop_target_service(session, runtime, app, target)
            raise ConflictError(
                f"deployment {deployment.id} in {target.code} {deployment.status}: {deployment.message}"
            )
        # The deployment ran in its own session and recorded the new service there; the database
        # restore finds the running container through it.
        session.refresh(app)
        databases = _restore_databases(session, runtime, app, backup, restore_from)
        if databases:
            notes["databases"] = databases
        url = app.spec.get("healthCheckUrl")
        healthy_at = dr_health.wait_until_healthy(app.spec, timeout=max(120.0, float(policy.rto_seconds)))
        notes["healthCheckUrl"] = url
        notes["message"] = f"serving in {target.code}" + (f", {url} healthy" if url else "")
        return healthy_at


def _move_record(
    session: Session,
    app: Application,
    policy: DrPolicy,
    source: Region,
    target: Region,
    volumes: dict[str, PlacementNode],
) -> None:
    spec = copy.deepcopy(app.spec)
    dr = spec.get("dr") or {}
    urls = dict(dr.get("healthCheckUrls") or {})
    if spec.get("healthCheckUrl") and source.code not in urls:
        urls[source.code] = spec["healthCheckUrl"]  # kept so a failback probes the old URL again
    dr["healthCheckUrls"] = urls
    spec["dr"] = dr
    spec["healthCheckUrl"] = policy.health_check_url(target.code, spec.get("healthCheckUrl"))
    app.spec = spec
    app.region_id = target.id
    app.service_id = None
    for row in session.scalars(select(AppVolume).where(AppVolume.application_id == app.id)):
        node = volumes.get(row.name)
        row.node_id = node.node_id if node else None
        row.node_hostname = node.hostname if node else None
    session.commit()


def _restore_databases(
    session: Session,
    runtime: Runtime,
    app: Application,
    backup: Backup | None,
    source: RestoreSource | None,
) -> list[str]:
    from hostcraft.services.backup_restore import restore_database_part

    if backup is None or source is None:
        return []
    loaded = []
    for part in source.parts:
        if part["part"].startswith("database:"):
            restore_database_part(session, runtime, app, backup, source.destination, part, mode="replace")
            loaded.append(part["part"].removeprefix("database:"))
    return loaded


def _stop_target_service(session: Session, runtime: Runtime, app: Application, target: Region) -> None:
    """Scale a failed deployment's service in the target to 0, so it does not keep restarting there."""
    try:
        with any_manager(session, runtime, target.id, require_quorum=True) as (_, client):
            _scale_to_zero(client, service_name(app.project, app.name))
    except HostCraftError as exc:
        logger.warning("failed to stop the target service", extra={"app": app.name, "error": exc.message})


def _switch_traffic(
    session: Session,
    runtime: Runtime,
    app: Application,
    policy: DrPolicy,
    source: Region,
    target: Region,
    run_id: int,
    steps: StepLog,
) -> None:
    from hostcraft.services.traffic_switch import switch_for_policy

    if policy.traffic_switch is None:
        steps.skip("switch-traffic", "no traffic switch configured: point clients at the new region yourself")
        return
    run = session.get(DrRun, run_id)
    assert run is not None
    with steps.step("switch-traffic") as notes:
        result = switch_for_policy(
            runtime,
            app,
            policy.traffic_switch,
            event="failback" if run.kind == "failback" else "failover",
            from_region=source.code,
            to_region=target.code,
            run_id=run_id,
        )
        notes["message"] = result


def _fence(session: Session, runtime: Runtime, app: Application, source: Region, steps: StepLog) -> None:
    with steps.step("fence") as notes:
        fence = session.scalar(
            select(DrFence).where(DrFence.application_id == app.id, DrFence.region_id == source.id)
        )
        if fence is None:
            fence = DrFence(
                application_id=app.id, region_id=source.id, service_name=service_name(app.project, app.name)
            )
            session.add(fence)
        fence.status = "pending"
        fence.fenced_at = None
        session.commit()
        # The app is serving in the target now: the old copy must not, so only its fence is left.
        session.execute(
            delete(DrFence).where(DrFence.application_id == app.id, DrFence.region_id == app.region_id)
        )
        session.commit()
        if fence_now(session, runtime, fence):
            notes["message"] = f"service scaled to 0 in {source.code}"
        else:
            notes["status"] = "pending"
            notes["message"] = (
                f"region {source.code} does not answer ({fence.error}): the engine scales the service to 0 "
                "there as soon as it does"
            )


def fence_now(session: Session, runtime: Runtime, fence: DrFence) -> bool:
    """Scale the fenced service to 0 in its region; return False (error recorded) when it cannot."""
    fence.attempts += 1
    try:
        with any_manager(session, runtime, fence.region_id, require_quorum=True) as (_, client):
            _scale_to_zero(client, fence.service_name)
    except HostCraftError as exc:
        fence.error = exc.message
        session.commit()
        return False
    fence.status = "fenced"
    fence.error = None
    fence.fenced_at = utcnow()
    session.commit()
    logger.info("service fenced", extra={"service": fence.service_name, "region_id": fence.region_id})
    return True


def _scale_to_zero(client: docker.DockerClient, name: str) -> None:
    for service in client.api.services(filters={"name": name}):
        if service["Spec"]["Name"] == name:
            replicated = (service["Spec"].get("Mode") or {}).get("Replicated")
            if replicated is not None and replicated.get("Replicas", 0) != 0:
                swarm_api.scale_service(client, service["ID"], 0)
