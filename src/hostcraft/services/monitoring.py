"""Application monitoring: which apps are probed, their results, incidents and uptime.

The probe engine (engine/probes.py) measures. This module stores the results and opens and
resolves incidents at the thresholds, with their alerts. It also compacts the probe history
and computes uptime from incidents.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from hostcraft.domain.appspec import AppSpec, validate_application
from hostcraft.domain.incidents import HealthTracker, observe
from hostcraft.domain.probes import ProbeOptions, probe_kind
from hostcraft.domain.uptime import Availability, Interval, availability
from hostcraft.errors import HostCraftError
from hostcraft.metrics import register_store_collector
from hostcraft.services.alerts import open_alert, resolve_alert
from hostcraft.services.events import record_event
from hostcraft.services.maintenance import maintenance_intervals
from hostcraft.store.models import (
    AppHealth,
    Application,
    Deployment,
    Incident,
    ProbeHourly,
    ProbeResult,
    utcnow,
)

logger = logging.getLogger(__name__)

# Returns the maintenance intervals of an app (its own and its region's) between two instants.
MaintenanceLookup = Callable[[Session, Application, dt.datetime, dt.datetime], list[Interval]]
ACTOR = "hostcraft-monitor"
DEPLOY_KINDS = ("deploy", "rollback")


def no_maintenance(
    session: Session, app: Application, start: dt.datetime, end: dt.datetime
) -> list[Interval]:
    return []


def maintenance_intervals_of(
    session: Session, app: Application, start: dt.datetime, end: dt.datetime
) -> list[Interval]:
    """Return the maintenance windows of the app and of its region between two instants."""
    return maintenance_intervals(
        session, application_id=app.id, region_id=app.region_id, start=start, end=end
    )


@register_store_collector
def application_metrics(session: Session) -> Iterator[Metric]:
    """App up/down (1, 0; absent while unknown) and open incidents, read from the store at scrape time."""
    up = GaugeMetricFamily(
        "hostcraft_application_up", "1 when the app passes its health checks.", labels=["application"]
    )
    incidents = GaugeMetricFamily(
        "hostcraft_open_incidents", "Open incidents per application.", labels=["application"]
    )
    open_counts = dict(
        session.execute(
            select(Incident.application_id, func.count())
            .where(Incident.status == "open")
            .group_by(Incident.application_id)
        ).all()
    )
    for app, health in session.execute(select(Application, AppHealth).join(AppHealth)).all():
        name = f"{app.project}/{app.name}"
        if health.status in ("up", "down"):
            up.add_metric([name], 1.0 if health.status == "up" else 0.0)
        incidents.add_metric([name], float(open_counts.get(app.id, 0)))
    yield up
    yield incidents


@dataclass(frozen=True)
class ProbeTarget:
    """The probe settings of one application: target, interval and thresholds."""

    application_id: int
    name: str
    source: str  # "probe" (healthCheckUrl) or "swarm" (tasks vs desired replicas)
    url: str | None
    kind: str
    interval_seconds: float
    timeout_seconds: float
    failures_to_open: int
    options: ProbeOptions


@dataclass(frozen=True)
class ProbeOutcome:
    """One measured result, as the probe engine hands it over."""

    application_id: int
    at: dt.datetime
    ok: bool
    latency_ms: float | None = None
    status_code: int | None = None
    error: str | None = None
    node: str | None = None


def app_spec(app: Application) -> AppSpec:
    return validate_application(app.spec, require_secret_values=False)


def monitored(app: Application, session: Session) -> bool:
    """Tell whether an app is watched: its first deployment finished and it should run tasks.

    Watching starts after the first deployment, whatever its outcome, so the minutes before an
    app ever served are not counted as downtime.
    """
    if app.service_id is None or int(app.spec.get("replicas", 1)) == 0:
        return False
    finished = session.scalar(
        select(func.count())
        .select_from(Deployment)
        .where(Deployment.application_id == app.id, Deployment.finished_at.is_not(None))
    )
    return bool(finished)


# Probe settings parsed from a document, by app id, with the ``updated_at`` they were parsed at.
TargetCache = dict[int, tuple[dt.datetime, "ProbeTarget | None"]]


def probe_targets(session: Session, cache: TargetCache | None = None) -> list[ProbeTarget]:
    """List the probe targets of every watched app; ``cache`` spares re-parsing unchanged documents."""
    cache = {} if cache is None else cache
    deployed = set(
        session.scalars(
            select(Deployment.application_id).where(Deployment.finished_at.is_not(None)).distinct()
        )
    )
    targets = []
    for app in session.scalars(select(Application).order_by(Application.id)):
        if app.id not in deployed or app.service_id is None or int(app.spec.get("replicas", 1)) == 0:
            continue
        cached = cache.get(app.id)
        if cached is None or cached[0] != app.updated_at:
            cached = (app.updated_at, _target(app))
            cache[app.id] = cached
        if cached[1] is not None:
            targets.append(cached[1])
    return targets


def _target(app: Application) -> ProbeTarget | None:
    try:
        spec = app_spec(app)
    except HostCraftError:
        logger.warning("failed to read the probe settings of an app", extra={"app": app.id})
        return None
    url = spec.health_check_url
    return ProbeTarget(
        application_id=app.id,
        name=f"{app.project}/{app.name}",
        source="probe" if url else "swarm",
        url=url,
        kind=probe_kind(url) if url else "swarm",
        interval_seconds=spec.health_check_interval_seconds,
        timeout_seconds=spec.health_check_timeout_seconds,
        failures_to_open=spec.max_consecutive_failures,
        options=spec.health_probe,
    )


def record_outcomes(
    session: Session,
    outcomes: Iterable[ProbeOutcome],
    *,
    targets: dict[int, ProbeTarget],
    deployment_window: dt.timedelta,
) -> None:
    """Store results in order and apply each to its app's health state, in one transaction."""
    ordered = sorted(outcomes, key=lambda item: item.at)
    app_ids = {outcome.application_id for outcome in ordered}
    # Load the batch's apps and health rows in two queries instead of two per result.
    apps = {app.id: app for app in session.scalars(select(Application).where(Application.id.in_(app_ids)))}
    healths = {
        health.application_id: health
        for health in session.scalars(select(AppHealth).where(AppHealth.application_id.in_(app_ids)))
    }
    for outcome in ordered:
        target = targets.get(outcome.application_id)
        app = apps.get(outcome.application_id)
        if target is None or app is None:
            continue
        session.add(
            ProbeResult(
                application_id=app.id,
                at=outcome.at,
                ok=outcome.ok,
                latency_ms=outcome.latency_ms,
                status_code=outcome.status_code,
                error=(outcome.error or "")[:500] or None,
                node=outcome.node,
            )
        )
        health = healths.get(app.id)
        if health is None:
            health = AppHealth(
                application_id=app.id,
                status="unknown",
                consecutive_failures=0,
                consecutive_successes=0,
                monitored_since=outcome.at,
                source=target.source,
            )
            session.add(health)
            healths[app.id] = health
        _apply(session, app, health, target, outcome, deployment_window)
    session.flush()


def _apply(
    session: Session,
    app: Application,
    health: AppHealth,
    target: ProbeTarget,
    outcome: ProbeOutcome,
    deployment_window: dt.timedelta,
) -> None:
    tracker = HealthTracker(
        status=health.status,  # type: ignore[arg-type]
        consecutive_failures=health.consecutive_failures,
        consecutive_successes=health.consecutive_successes,
        failing_since=health.failing_since,
        recovering_since=health.recovering_since,
    )
    transition = observe(
        tracker,
        ok=outcome.ok,
        at=outcome.at,
        failures_to_open=target.failures_to_open,
        successes_to_resolve=target.options.successes_to_resolve,
    )
    health.status = tracker.status
    health.consecutive_failures = tracker.consecutive_failures
    health.consecutive_successes = tracker.consecutive_successes
    health.failing_since = tracker.failing_since
    health.recovering_since = tracker.recovering_since
    health.last_probe_at = outcome.at
    health.last_ok = outcome.ok
    health.last_latency_ms = outcome.latency_ms
    health.source = target.source
    if not outcome.ok:
        health.last_error = outcome.error
    if transition is None:
        return
    if transition.kind == "open":
        open_incident(
            session,
            app,
            began_at=transition.at,
            error=outcome.error,
            source=target.source,
            deployment_window=deployment_window,
        )
    else:
        resolve_incident(session, app, ended_at=transition.at, now=outcome.at)


def open_incident(
    session: Session,
    app: Application,
    *,
    began_at: dt.datetime,
    error: str | None,
    source: str,
    deployment_window: dt.timedelta,
) -> Incident:
    """Open an incident; it "began after a deployment" when one started within ``deployment_window``.

    A deployment still running when the incident began counts too: its rollout is what the
    incident may be about, and the ladder waits for it to finish before it acts.
    """
    current = _deployment_before(session, app.id, began_at)
    after_deployment = bool(
        current is not None
        and current.started_at is not None
        and current.started_at >= began_at - deployment_window
    )
    incident = Incident(
        application_id=app.id,
        status="open",
        began_at=began_at,
        opened_at=utcnow(),
        source=source,
        last_error=error,
        deployment_id=current.id if current else None,
        began_after_deployment=after_deployment,
    )
    session.add(incident)
    session.flush()
    name = f"{app.project}/{app.name}"
    record_event(
        session,
        actor=ACTOR,
        action="incident.opened",
        target_type="application",
        target_id=app.id,
        target_name=name,
        outcome="failed",
        reason=error,
        details={"incidentId": incident.id, "beganAt": began_at.isoformat()},
    )
    open_alert(
        session,
        trigger="service_health_failure",
        cause=f"app:{app.id}:health",
        title=f"{name} is failing its health checks",
        message=f"{name} has failed its health checks since {began_at.isoformat()}: {error or 'no detail'}",
        application_id=app.id,
        region_id=app.region_id,
        details={"incidentId": incident.id},
    )
    return incident


def resolve_incident(session: Session, app: Application, *, ended_at: dt.datetime, now: dt.datetime) -> None:
    incident = open_incident_of(session, app.id)
    if incident is None:
        return
    incident.status = "resolved"
    incident.ended_at = ended_at
    incident.resolved_at = now
    if incident.recovery_status == "acting":
        incident.recovery_status = "recovered"
    name = f"{app.project}/{app.name}"
    downtime = (ended_at - incident.began_at).total_seconds()
    record_event(
        session,
        actor=ACTOR,
        action="incident.resolved",
        target_type="application",
        target_id=app.id,
        target_name=name,
        outcome="succeeded",
        details={"incidentId": incident.id, "downtimeSeconds": round(downtime, 3)},
    )
    resolve_alert(session, cause=f"app:{app.id}:health", message=f"{name} passes its health checks again")
    resolve_alert(session, cause=f"app:{app.id}:recovery-failed", message=f"{name} recovered")


def open_incident_of(session: Session, app_id: int) -> Incident | None:
    return session.scalars(
        select(Incident)
        .where(Incident.application_id == app_id, Incident.status == "open")
        .order_by(Incident.id.desc())
        .limit(1)
    ).first()


def _deployment_before(session: Session, app_id: int, instant: dt.datetime) -> Deployment | None:
    """Return the last deploy or rollback that started before ``instant`` and is running or succeeded."""
    return session.scalars(
        select(Deployment)
        .where(
            Deployment.application_id == app_id,
            Deployment.kind.in_(DEPLOY_KINDS),
            Deployment.started_at <= instant,
            Deployment.status.in_(("running", "succeeded")),
        )
        .order_by(Deployment.id.desc())
        .limit(1)
    ).first()


def rollback_target(session: Session, app_id: int, current_id: int | None) -> Deployment | None:
    """Return the succeeded deployment before ``current_id`` that pinned an image, the rollback target."""
    query = select(Deployment).where(
        Deployment.application_id == app_id,
        Deployment.status == "succeeded",
        Deployment.kind.in_(DEPLOY_KINDS),
        Deployment.image_digest_reference.is_not(None),
    )
    if current_id is not None:
        query = query.where(Deployment.id < current_id)
    return session.scalars(query.order_by(Deployment.id.desc()).limit(1)).first()


# History compaction: raw results for ``raw_days``, hourly aggregates after that.


def compact_history(session: Session, *, now: dt.datetime, raw_days: int, hourly_days: int) -> int:
    """Fold raw results older than ``raw_days`` into hourly rows; return how many raw rows went."""
    cutoff = (now - dt.timedelta(days=raw_days)).replace(minute=0, second=0, microsecond=0)
    old = list(session.scalars(select(ProbeResult).where(ProbeResult.at < cutoff).order_by(ProbeResult.id)))
    buckets: dict[tuple[int, dt.datetime], list[ProbeResult]] = {}
    for result in old:
        hour = result.at.replace(minute=0, second=0, microsecond=0)
        buckets.setdefault((result.application_id, hour), []).append(result)
    for (app_id, hour), results in buckets.items():
        _add_to_hour(session, app_id, hour, results)
    if old:
        session.execute(delete(ProbeResult).where(ProbeResult.at < cutoff))
    session.execute(delete(ProbeHourly).where(ProbeHourly.hour < now - dt.timedelta(days=hourly_days)))
    session.flush()
    return len(old)


def _add_to_hour(session: Session, app_id: int, hour: dt.datetime, results: list[ProbeResult]) -> None:
    row = session.scalars(
        select(ProbeHourly).where(ProbeHourly.application_id == app_id, ProbeHourly.hour == hour)
    ).first()
    if row is None:
        row = ProbeHourly(application_id=app_id, hour=hour, probes=0, failures=0, latency_sum_ms=0.0)
        session.add(row)
    latencies = [result.latency_ms for result in results if result.latency_ms is not None]
    row.probes += len(results)
    row.failures += sum(1 for result in results if not result.ok)
    row.latency_sum_ms += sum(latencies)
    if latencies:
        row.latency_max_ms = max([*latencies, row.latency_max_ms or 0.0])


# Uptime.


def incident_intervals(session: Session, app_id: int, start: dt.datetime, end: dt.datetime) -> list[Interval]:
    incidents = session.scalars(
        select(Incident).where(
            Incident.application_id == app_id,
            Incident.began_at < end,
            (Incident.ended_at.is_(None)) | (Incident.ended_at > start),
        )
    )
    return [(incident.began_at, incident.ended_at or end) for incident in incidents]


def app_availability(
    session: Session,
    app: Application,
    *,
    window: dt.timedelta,
    now: dt.datetime,
    maintenance: MaintenanceLookup = no_maintenance,
) -> Availability:
    start = now - window
    health = session.get(AppHealth, app.id)
    monitored_since = health.monitored_since if health is not None else now
    spec = app_spec(app)
    return availability(
        incidents=incident_intervals(session, app.id, start, now),
        maintenance=maintenance(session, app, start, now),
        monitored_since=monitored_since,
        window_start=start,
        window_end=now,
        target_percent=spec.sla_target,
    )


def availability_document(app: Application, figures: Availability, window: str) -> dict[str, Any]:
    percent = figures.availability_percent
    return {
        "applicationId": app.id,
        "application": f"{app.project}/{app.name}",
        "window": window,
        "windowStart": figures.window_start.isoformat().replace("+00:00", "Z"),
        "windowEnd": figures.window_end.isoformat().replace("+00:00", "Z"),
        "measuredSeconds": round(figures.measured_seconds, 3),
        "downtimeSeconds": round(figures.downtime_seconds, 3),
        "maintenanceSeconds": round(figures.maintenance_seconds, 3),
        "availabilityPercent": None if percent is None else round(percent, 5),
        "slaTargetPercent": figures.target_percent,
        "meetsTarget": figures.meets_target,
        "allowedDowntimeSeconds": round(figures.allowed_downtime_seconds, 3),
        "errorBudgetRemainingSeconds": round(figures.error_budget_remaining_seconds, 3),
    }
