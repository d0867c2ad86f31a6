"""Application health, incidents, probe history and uptime."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select

from hostcraft.api.auth import current_principal, get_runtime
from hostcraft.domain.uptime import WINDOWS, parse_window
from hostcraft.errors import ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services import applications, monitoring
from hostcraft.store.models import AppHealth, Incident, ProbeResult, RecoveryAction, utcnow

router = APIRouter(tags=["monitoring"], dependencies=[Depends(current_principal)])

REPORT_COLUMNS = (
    "applicationId",
    "application",
    "window",
    "availabilityPercent",
    "slaTargetPercent",
    "meetsTarget",
    "downtimeSeconds",
    "maintenanceSeconds",
    "measuredSeconds",
    "errorBudgetRemainingSeconds",
)


def _stamp(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _window(value: str) -> tuple[str, Any]:
    try:
        return value, parse_window(value)
    except ValueError as exc:
        raise ValidationError(str(exc), field="window") from exc


def incident_out(incident: Incident, actions: list[RecoveryAction]) -> dict[str, Any]:
    return {
        "id": incident.id,
        "applicationId": incident.application_id,
        "status": incident.status,
        "source": incident.source,
        "beganAt": _stamp(incident.began_at),
        "openedAt": _stamp(incident.opened_at),
        "endedAt": _stamp(incident.ended_at),
        "resolvedAt": _stamp(incident.resolved_at),
        "downtimeSeconds": (
            round((incident.ended_at - incident.began_at).total_seconds(), 3) if incident.ended_at else None
        ),
        "lastError": incident.last_error,
        "deploymentId": incident.deployment_id,
        "beganAfterDeployment": incident.began_after_deployment,
        "recoveryStatus": incident.recovery_status,
        "recoveryMessage": incident.recovery_message,
        "recoveryActions": [
            {
                "id": action.id,
                "rung": action.rung,
                "reason": action.reason,
                "at": _stamp(action.at),
                "deploymentId": action.deployment_id,
            }
            for action in actions
        ],
    }


@router.get("/api/applications/{app_id}/health")
def get_health(app_id: int, runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """Return the app's probe state and its open incident, if any."""
    with runtime.store.session() as session:
        app = applications.get_application(session, app_id)
        health = session.get(AppHealth, app.id)
        incident = monitoring.open_incident_of(session, app.id)
        actions = _actions(session, incident.id) if incident else []
        return {
            "applicationId": app.id,
            "monitored": monitoring.monitored(app, session),
            "status": health.status if health else "unknown",
            "source": health.source if health else None,
            "monitoredSince": _stamp(health.monitored_since) if health else None,
            "lastProbeAt": _stamp(health.last_probe_at) if health else None,
            "lastOk": health.last_ok if health else None,
            "lastError": health.last_error if health else None,
            "lastLatencyMs": health.last_latency_ms if health else None,
            "consecutiveFailures": health.consecutive_failures if health else 0,
            "consecutiveSuccesses": health.consecutive_successes if health else 0,
            "openIncident": incident_out(incident, actions) if incident else None,
        }


def _actions(session: Any, incident_id: int) -> list[RecoveryAction]:
    return list(
        session.scalars(
            select(RecoveryAction)
            .where(RecoveryAction.incident_id == incident_id)
            .order_by(RecoveryAction.id)
        )
    )


@router.get("/api/applications/{app_id}/incidents")
def list_incidents(
    app_id: int, limit: int = Query(50, ge=1, le=1000), runtime: Runtime = Depends(get_runtime)
) -> list[dict[str, Any]]:
    """Return the app's incidents, newest first, with the recovery actions taken for each."""
    with runtime.store.session() as session:
        app = applications.get_application(session, app_id)
        incidents = session.scalars(
            select(Incident)
            .where(Incident.application_id == app.id)
            .order_by(Incident.id.desc())
            .limit(limit)
        )
        return [incident_out(incident, _actions(session, incident.id)) for incident in incidents]


@router.get("/api/applications/{app_id}/probes")
def list_probe_results(
    app_id: int, limit: int = Query(100, ge=1, le=10_000), runtime: Runtime = Depends(get_runtime)
) -> list[dict[str, Any]]:
    """Return the newest raw probe results (kept for the raw retention period, 7 days by default)."""
    with runtime.store.session() as session:
        app = applications.get_application(session, app_id)
        results = session.scalars(
            select(ProbeResult)
            .where(ProbeResult.application_id == app.id)
            .order_by(ProbeResult.id.desc())
            .limit(limit)
        )
        return [
            {
                "at": _stamp(result.at),
                "ok": result.ok,
                "latencyMs": result.latency_ms,
                "statusCode": result.status_code,
                "error": result.error,
                "node": result.node,
            }
            for result in results
        ]


@router.get("/api/applications/{app_id}/uptime")
def get_uptime(
    app_id: int,
    window: str = Query("30d", description="24h, 7d, 30d, 90d, or any <n>h / <n>d up to 366 days"),
    runtime: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    """Return time-weighted availability from incidents, maintenance excluded, and the error budget."""
    label, span = _window(window)
    with runtime.store.session() as session:
        app = applications.get_application(session, app_id)
        figures = monitoring.app_availability(
            session, app, window=span, now=utcnow(), maintenance=monitoring.maintenance_intervals_of
        )
        return monitoring.availability_document(app, figures, label)


@router.get("/api/reports/uptime", response_model=None)
def uptime_report(
    window: str | None = Query(None, description="one window; all of 24h, 7d, 30d and 90d when omitted"),
    format: str = Query("json", pattern="^(json|csv)$"),
    runtime: Runtime = Depends(get_runtime),
) -> Any:
    """Return the availability of every app as JSON or CSV."""
    windows = [_window(window)] if window else list(WINDOWS.items())
    now = utcnow()
    rows = []
    with runtime.store.session() as session:
        for app in applications.list_applications(session):
            for label, span in windows:
                figures = monitoring.app_availability(
                    session, app, window=span, now=now, maintenance=monitoring.maintenance_intervals_of
                )
                rows.append(monitoring.availability_document(app, figures, label))
    if format == "json":
        return {"generatedAt": _stamp(now), "applications": rows}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return Response(buffer.getvalue(), media_type="text/csv")
