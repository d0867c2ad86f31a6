"""The recovery ladder in action, and the Swarm-side health check of apps without a URL.

The engine calls ``run_recovery`` every few seconds. For each open incident it reads the
situation, lets domain/recovery.py decide, and acts through the deployment service. A recovery
restart or rollback is therefore a deployment like any other: serialized, monitored, recorded.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import docker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hostcraft.docker import swarm as swarm_api
from hostcraft.domain.placement import eligible_nodes
from hostcraft.domain.recovery import (
    Decision,
    Rung,
    Situation,
    failing_node,
    failures_by_node,
    next_action,
)
from hostcraft.errors import HostCraftError
from hostcraft.metrics import RECOVERY_ACTIONS
from hostcraft.services.alerts import find_open_alert, notify_once, open_alert
from hostcraft.services.applications import active_deployment
from hostcraft.services.deployments import rollback_to, start_deployment
from hostcraft.services.drain import placement_node
from hostcraft.services.events import record_event
from hostcraft.services.managers import any_manager
from hostcraft.services.monitoring import (
    MaintenanceLookup,
    ProbeOutcome,
    app_spec,
    no_maintenance,
    rollback_target,
)
from hostcraft.store.models import Application, Deployment, Incident, RecoveryAction, utcnow

if TYPE_CHECKING:
    from hostcraft.runtime import Runtime
from hostcraft.services.dr_runs import active_run

logger = logging.getLogger(__name__)

ACTOR = "hostcraft-recovery"
RESTART_LOOP_WINDOW = dt.timedelta(minutes=5)
RESTART_LOOP_FAILURES = 3
LADDER_MEMORY = dt.timedelta(hours=1)


def run_recovery(
    runtime: Runtime, *, now: dt.datetime | None = None, maintenance: MaintenanceLookup = no_maintenance
) -> list[tuple[int, Decision]]:
    """Take the next rung for every open incident that needs one; return the decisions made."""
    now = now or utcnow()
    with runtime.store.session() as session:
        incident_ids = list(session.scalars(select(Incident.id).where(Incident.status == "open")))
    decisions = []
    for incident_id in incident_ids:
        try:
            with runtime.store.session() as session:
                decision = _recover(session, runtime, incident_id, now=now, maintenance=maintenance)
                session.commit()
            if decision is not None:
                decisions.append((incident_id, decision))
        except Exception:
            logger.exception("failed to run the recovery ladder", extra={"incident_id": incident_id})
    return decisions


def _recover(
    session: Session,
    runtime: Runtime,
    incident_id: int,
    *,
    now: dt.datetime,
    maintenance: MaintenanceLookup,
) -> Decision | None:
    incident = session.get(Incident, incident_id)
    if incident is None or incident.status != "open":
        return None
    app = session.get(Application, incident.application_id)
    if app is None:
        return None
    if active_run(session, app.id) is not None:
        return None  # a failover or drill of the app is under way: it owns the app until it ends
    spec = app_spec(app)
    situation = _situation(session, runtime, app, incident, now=now, maintenance=maintenance)
    if not situation.in_maintenance:
        _reopen_suppressed_health_alert(session, app, incident, now=now)
    decision = next_action(situation, spec.recovery, now=now)
    if decision.action in ("none", "wait"):
        return decision
    if decision.action == "give_up":
        _give_up(session, app, incident, decision)
        return decision
    _act(session, runtime, app, incident, decision, situation)
    return decision


def _reopen_suppressed_health_alert(
    session: Session, app: Application, incident: Incident, *, now: dt.datetime
) -> None:
    """Send the health alert held back by a maintenance window that ended while the app still fails."""
    alert = find_open_alert(session, f"app:{app.id}:health")
    if alert is None or alert.status != "suppressed":
        return
    name = f"{app.project}/{app.name}"
    open_alert(
        session,
        trigger="service_health_failure",
        cause=f"app:{app.id}:health",
        title=alert.title,
        message=(
            f"{name} still fails its health checks after the maintenance window: "
            f"{incident.last_error or 'no detail'}"
        ),
        application_id=app.id,
        region_id=app.region_id,
        details={"incidentId": incident.id},
        now=now,
    )


def _situation(
    session: Session,
    runtime: Runtime,
    app: Application,
    incident: Incident,
    *,
    now: dt.datetime,
    maintenance: MaintenanceLookup,
) -> Situation:
    spec = app_spec(app)
    # Rungs taken in the last hour count for a new incident too: an app that fails again soon
    # after a restart fixed it is not restarted again, the ladder climbs on.
    actions = list(
        session.scalars(
            select(RecoveryAction)
            .where(RecoveryAction.application_id == app.id, RecoveryAction.at >= now - LADDER_MEMORY)
            .order_by(RecoveryAction.id)
        )
    )
    target = (
        rollback_target(session, app.id, incident.deployment_id) if incident.began_after_deployment else None
    )
    taken: tuple[Rung, ...] = tuple(action.rung for action in actions)  # type: ignore[misc]
    node = None
    if spec.auto_restart and "restart" in taken and "move" not in taken:
        node = _failing_node(session, runtime, app, since=incident.began_at - dt.timedelta(minutes=5))
    return Situation(
        auto_restart=spec.auto_restart,
        auto_rollback=spec.auto_rollback,
        in_maintenance=bool(maintenance(session, app, now, now + dt.timedelta(seconds=1))),
        failing_node=node,
        began_after_deployment=incident.began_after_deployment,
        rollback_target=target.id if target is not None else None,
        rungs_taken=taken,
        last_action_at=actions[-1].at if actions else None,
        actions_in_last_hour=len(actions),
        gave_up=incident.recovery_status == "failed",
        deployment_running=active_deployment(session, app.id) is not None,
    )


def _failing_node(session: Session, runtime: Runtime, app: Application, *, since: dt.datetime) -> str | None:
    """Return the node where the app's failures concentrate, if its tasks can run elsewhere."""
    if app.service_id is None:
        return None
    try:
        with any_manager(session, runtime, app.region_id, require_quorum=True) as (_, client):
            tasks = client.api.tasks(filters={"service": app.service_id})
            node = failing_node(tasks, since=since)
            if node is None:
                return None
            service = client.api.inspect_service(app.service_id)
            nodes = [placement_node(item) for item in swarm_api.list_nodes(client)]
    except (HostCraftError, docker.errors.APIError) as exc:
        logger.warning(
            "failed to list tasks for the recovery ladder", extra={"app": app.id, "reason": str(exc)}
        )
        return None
    placement = service["Spec"]["TaskTemplate"].get("Placement") or {}
    others = eligible_nodes(nodes, list(placement.get("Constraints") or []), exclude=node)
    replicas = int(((service["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
    per_node = int(placement.get("MaxReplicas") or 0)
    # Moving is pointless, and would leave tasks pending forever, without room elsewhere.
    if not others or (per_node and per_node * len(others) < replicas):
        logger.info(
            "no other node can run the app's tasks: not moving it", extra={"app": app.id, "node": node}
        )
        return None
    return node


def _act(
    session: Session,
    runtime: Runtime,
    app: Application,
    incident: Incident,
    decision: Decision,
    situation: Situation,
) -> None:
    rung: Rung = decision.action  # type: ignore[assignment]
    name = f"{app.project}/{app.name}"
    try:
        deployment_id = _start(session, runtime, app, rung, situation)
    except HostCraftError as exc:
        # Nothing changed (no quorum, another deployment started): the next tick decides again.
        logger.warning(
            "failed to start a recovery action", extra={"app": app.id, "rung": rung, "reason": exc.message}
        )
        return
    session.refresh(incident)
    action = RecoveryAction(
        application_id=app.id,
        incident_id=incident.id,
        rung=rung,
        reason=decision.reason,
        at=utcnow(),
        deployment_id=deployment_id,
    )
    session.add(action)
    incident.recovery_status = "acting"
    incident.recovery_message = decision.reason
    session.flush()
    record_event(
        session,
        actor=ACTOR,
        action=f"recovery.{rung}",
        target_type="application",
        target_id=app.id,
        target_name=name,
        outcome="started",
        reason=decision.reason,
        details={"incidentId": incident.id, "deploymentId": deployment_id, "skipped": list(decision.skipped)},
    )
    notify_once(
        session,
        trigger="recovery_action",
        cause=f"app:{app.id}:recovery:{action.id}",
        title=f"{name}: recovery action {rung}",
        message=decision.reason,
        application_id=app.id,
        region_id=app.region_id,
        details={"incidentId": incident.id, "rung": rung, "deploymentId": deployment_id},
    )
    RECOVERY_ACTIONS.labels(name, rung).inc()
    logger.info(
        "recovery action started", extra={"app": app.id, "rung": rung, "deployment_id": deployment_id}
    )


def _start(session: Session, runtime: Runtime, app: Application, rung: Rung, situation: Situation) -> int:
    if rung == "restart":
        return start_deployment(session, runtime, app.id, actor=ACTOR, kind="restart").id
    if rung == "rollback":
        assert situation.rollback_target is not None
        return rollback_to(session, runtime, situation.rollback_target, actor=ACTOR).id
    document = _spec_avoiding(app.spec, situation.failing_node or "")
    return start_deployment(session, runtime, app.id, actor=ACTOR, kind="move", spec=document).id


def _spec_avoiding(spec: dict[str, Any], node_id: str) -> dict[str, Any]:
    """Return the app document with one more placement constraint that keeps tasks off ``node_id``."""
    document = copy.deepcopy(spec)
    placement = dict(document.get("placement") or {})
    constraints = list(placement.get("constraints") or [])
    constraint = f"node.id!={node_id}"
    if constraint not in constraints:
        constraints.append(constraint)
    placement["constraints"] = constraints
    document["placement"] = placement
    return document


def _give_up(session: Session, app: Application, incident: Incident, decision: Decision) -> None:
    name = f"{app.project}/{app.name}"
    incident.recovery_status = "failed"
    incident.recovery_message = decision.reason
    record_event(
        session,
        actor=ACTOR,
        action="recovery.failed",
        target_type="application",
        target_id=app.id,
        target_name=name,
        outcome="failed",
        reason=decision.reason,
        details={"incidentId": incident.id, "skipped": list(decision.skipped)},
    )
    open_alert(
        session,
        trigger="recovery_failed",
        cause=f"app:{app.id}:recovery-failed",
        title=f"{name}: automatic recovery failed",
        message=f"{decision.reason}. The app needs an operator.",
        application_id=app.id,
        region_id=app.region_id,
        details={"incidentId": incident.id},
    )


# The Swarm-side check of apps without a healthCheckUrl.


def watch_service(runtime: Runtime, app_id: int, *, now: dt.datetime | None = None) -> ProbeOutcome:
    """Check an app through Swarm: running tasks vs desired replicas, and no restart loop.

    Swarm reports a task with a container healthcheck ``running`` only once it is healthy (it
    stays ``starting`` before). Swarm also replaces unhealthy containers, which shows up as
    failed tasks. Running tasks and recent failures therefore cover container health too.
    """
    now = now or utcnow()
    with runtime.store.session() as session:
        app = session.get(Application, app_id)
        if app is None or app.service_id is None:
            return ProbeOutcome(app_id, now, ok=False, error="the app has no Swarm service")
        # Failures before the last deployment (a recovery restart or move included) belong to
        # tasks it replaced, so they no longer count as a restart loop.
        last_started = session.scalar(
            select(func.max(Deployment.started_at)).where(Deployment.application_id == app.id)
        )
        since = max(now - RESTART_LOOP_WINDOW, last_started or now - RESTART_LOOP_WINDOW)
        try:
            with any_manager(session, runtime, app.region_id, require_quorum=False) as (_, client):
                return _service_outcome(client, app.id, app.service_id, now, since=since)
        except HostCraftError as exc:
            return ProbeOutcome(
                app_id, now, ok=False, error=f"no manager of the region responded: {exc.message}"
            )


def _service_outcome(
    client: docker.DockerClient, app_id: int, service_id: str, now: dt.datetime, *, since: dt.datetime
) -> ProbeOutcome:
    started = utcnow()
    try:
        service = client.api.inspect_service(service_id)
        tasks = client.api.tasks(filters={"service": service_id})
    except docker.errors.NotFound:
        return ProbeOutcome(app_id, now, ok=False, error=f"service {service_id} not found in the swarm")
    except docker.errors.APIError as exc:
        return ProbeOutcome(
            app_id, now, ok=False, error=f"failed to read the service: {exc.explanation or exc}"
        )
    latency = (utcnow() - started).total_seconds() * 1000
    replicated = (service["Spec"].get("Mode") or {}).get("Replicated")
    desired = int(replicated.get("Replicas", 1)) if replicated else None
    running = [
        task
        for task in tasks
        if (task.get("Status") or {}).get("State") == "running" and task.get("DesiredState") == "running"
    ]
    recent_failures = sum(failures_by_node(tasks, since=since).values())
    problems = []
    if desired is not None and len(running) < desired:
        problems.append(f"{len(running)} of {desired} tasks running")
    if recent_failures >= RESTART_LOOP_FAILURES:
        problems.append(f"{recent_failures} tasks failed since {since.isoformat(timespec='seconds')}")
    node = failing_node(tasks, since=since)
    return ProbeOutcome(
        app_id,
        now,
        ok=not problems,
        latency_ms=latency,
        error="; ".join(problems) or None,
        node=node,
    )
