"""Cluster and server alerts: each engine tick turns the newest measurements into alerts.

Quorum and manager alerts come from ``cluster_report`` per region, whose assessment is also
stored as ``ClusterState`` for /metrics. Node and disk alerts come from the health loop's
newest checks.
A failure in one region or server is logged and does not stop the others.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.domain.alert_rules import CheckSummary, Evaluation, evaluate_cluster, evaluate_server
from hostcraft.domain.quorum import ClusterAssessment
from hostcraft.errors import NotFound
from hostcraft.runtime import Runtime
from hostcraft.services.alerts import Trigger, open_alert, resolve_alert
from hostcraft.services.cluster import cluster_report
from hostcraft.services.health import check_history
from hostcraft.store.models import ClusterState, Region, Server, utcnow

logger = logging.getLogger(__name__)


def check_cluster_alerts(runtime: Runtime) -> None:
    """Open or resolve quorum and manager alerts for every region, and node alerts for every server."""
    with runtime.store.session() as session:
        region_ids = list(session.scalars(select(Region.id)))
        server_ids = list(session.scalars(select(Server.id)))
    for region_id in region_ids:
        try:
            _check_region(runtime, region_id)
        except Exception:
            logger.exception("failed to evaluate cluster alerts", extra={"region_id": region_id})
    for server_id in server_ids:
        try:
            _check_server(runtime, server_id)
        except Exception:
            logger.exception("failed to evaluate server alerts", extra={"server_id": server_id})


def _check_region(runtime: Runtime, region_id: int) -> None:
    with runtime.store.session() as session:
        region = session.get(Region, region_id)
        if region is None:
            return
        assessment: ClusterAssessment | None
        try:
            assessment = cluster_report(session, runtime, region_id).assessment
        except NotFound:
            assessment = None
        if assessment is not None:
            record_cluster_state(session, region_id, assessment)
        apply_evaluations(session, evaluate_cluster(region_id, region.code, assessment), region_id=region_id)


def record_cluster_state(session: Session, region_id: int, assessment: ClusterAssessment) -> None:
    state = session.get(ClusterState, region_id) or ClusterState(region_id=region_id)
    state.status = assessment.status.value
    state.managers = assessment.managers
    state.reachable_managers = assessment.reachable_managers
    state.quorum = assessment.quorum
    state.fault_tolerance = assessment.fault_tolerance
    state.checked_at = utcnow()
    session.add(state)
    session.flush()


def _check_server(runtime: Runtime, server_id: int) -> None:
    settings = runtime.settings
    with runtime.store.session() as session:
        server = session.get(Server, server_id)
        if server is None:
            return
        checks = [
            CheckSummary(reachable=row.reachable, error=row.error, resources=row.resources)
            for row in check_history(session, server_id, limit=settings.alert_unreachable_checks)
        ]
        evaluations = evaluate_server(
            server.id,
            server.name,
            checks,
            unreachable_checks=settings.alert_unreachable_checks,
            min_disk_free_ratio=settings.alert_disk_free_ratio,
        )
        apply_evaluations(session, evaluations, region_id=server.region_id, server_id=server.id)


def apply_evaluations(
    session: Session, evaluations: list[Evaluation], *, region_id: int, server_id: int | None = None
) -> None:
    """Open the alerts of firing rules and resolve those of rules that cleared."""
    for evaluation in evaluations:
        if evaluation.firing is True:
            trigger: Trigger = evaluation.trigger  # type: ignore[assignment]
            open_alert(
                session,
                trigger=trigger,
                cause=evaluation.cause,
                title=evaluation.title,
                message=evaluation.message,
                severity=evaluation.severity,
                region_id=region_id,
                server_id=server_id,
            )
        elif evaluation.firing is False:
            resolve_alert(
                session, cause=evaluation.cause, message=evaluation.message or "The condition cleared."
            )
