"""Alerts: one open alert per cause, opened by the engine's checks and resolved when they pass.

Callers (health, recovery, backups, DR) only open and resolve alerts inside their own
transaction. Opening or resolving writes one outbox row (``AlertDelivery``) per matching
channel. ``services/alert_delivery.deliver_pending`` sends the rows later, outside that
transaction, so a slow or failing channel never holds up or rolls back the work that raised
the alert.

An alert raised for an application or region in a maintenance window is stored with status
``suppressed`` and sends nothing. When the cause is reported again after the window, the alert
becomes ``open`` and its open message goes out then. A resolve message goes only to channels
that received the open message.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.services.maintenance import in_maintenance
from hostcraft.store.models import Alert, AlertChannel, AlertDelivery, Server, utcnow

logger = logging.getLogger(__name__)

Trigger = Literal[
    "manager_failure",
    "quorum_lost",
    "node_unreachable",
    "disk_space_low",
    "service_health_failure",
    "recovery_action",
    "recovery_failed",
    "deployment_failed",
    "backup_failure",
    "objective_breached",
    "region_failover",
    "dr_drill_failed",
]
TRIGGERS: tuple[str, ...] = Trigger.__args__  # type: ignore[attr-defined]
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
DeliveryKind = Literal["open", "resolve", "notice"]
ACTIVE_STATUSES = ("open", "suppressed")


def open_alert(
    session: Session,
    *,
    trigger: Trigger,
    cause: str,
    title: str,
    message: str,
    severity: Severity = "critical",
    application_id: int | None = None,
    region_id: int | None = None,
    server_id: int | None = None,
    details: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Alert:
    """Open the alert for ``cause``, or count one more occurrence of the one already open."""
    now = now or utcnow()
    region_id = region_id if region_id is not None else _server_region(session, server_id)
    suppressed = in_maintenance(session, application_id=application_id, region_id=region_id, at=now)
    alert = find_open_alert(session, cause)
    if alert is not None:
        alert.occurrences += 1
        alert.last_seen_at = now
        alert.message = message
        if alert.status == "suppressed" and not suppressed:
            # The window ended and the problem is still there: tell people now.
            alert.status = "open"
            enqueue(session, alert, "open", now=now)
            logger.warning(
                "alert opened after maintenance",
                extra={"alert_id": alert.id, "trigger": trigger, "cause": cause},
            )
        session.flush()
        return alert
    alert = Alert(
        kind="alert",
        trigger=trigger,
        cause=cause,
        title=title,
        message=message,
        severity=severity,
        status="suppressed" if suppressed else "open",
        application_id=application_id,
        region_id=region_id,
        server_id=server_id,
        details=details or {},
        occurrences=1,
        opened_at=now,
        last_seen_at=now,
    )
    session.add(alert)
    session.flush()
    if suppressed:
        logger.info(
            "alert suppressed by maintenance window",
            extra={"alert_id": alert.id, "trigger": trigger, "cause": cause},
        )
    else:
        enqueue(session, alert, "open", now=now)
        logger.warning("alert opened", extra={"alert_id": alert.id, "trigger": trigger, "cause": cause})
    return alert


def resolve_alert(
    session: Session, *, cause: str, message: str, now: dt.datetime | None = None
) -> Alert | None:
    """Resolve the open alert for ``cause``; return None when none is open."""
    alert = find_open_alert(session, cause)
    if alert is None:
        return None
    now = now or utcnow()
    alert.status = "resolved"
    alert.resolved_at = now
    alert.resolve_message = message
    session.flush()
    enqueue_resolve(session, alert, now=now)
    logger.info("alert resolved", extra={"alert_id": alert.id, "cause": cause})
    return alert


def notify_once(
    session: Session,
    *,
    trigger: Trigger,
    cause: str,
    title: str,
    message: str,
    severity: Severity = "warning",
    application_id: int | None = None,
    region_id: int | None = None,
    server_id: int | None = None,
    details: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Alert:
    """Record a one-off notification (a recovery action taken): sent once, nothing to resolve.

    It never touches an open alert of the same cause. In a maintenance window it is stored as
    ``suppressed`` and not sent.
    """
    now = now or utcnow()
    region_id = region_id if region_id is not None else _server_region(session, server_id)
    suppressed = in_maintenance(session, application_id=application_id, region_id=region_id, at=now)
    alert = Alert(
        kind="notice",
        trigger=trigger,
        cause=cause,
        title=title,
        message=message,
        severity=severity,
        status="suppressed" if suppressed else "resolved",
        application_id=application_id,
        region_id=region_id,
        server_id=server_id,
        details=details or {},
        occurrences=1,
        opened_at=now,
        last_seen_at=now,
        resolved_at=now,
    )
    session.add(alert)
    session.flush()
    if not suppressed:
        enqueue(session, alert, "notice", now=now)
    logger.info("notification recorded", extra={"alert_id": alert.id, "trigger": trigger, "cause": cause})
    return alert


def find_open_alert(session: Session, cause: str) -> Alert | None:
    """Return the active (open or suppressed) alert for ``cause``, if any."""
    return session.scalars(
        select(Alert)
        .where(Alert.cause == cause, Alert.kind == "alert", Alert.status.in_(ACTIVE_STATUSES))
        .order_by(Alert.id.desc())
        .limit(1)
    ).first()


def channel_accepts(channel: AlertChannel, alert: Alert) -> bool:
    """Return whether the channel's filters (triggers, minimum severity) let the alert through."""
    if channel.triggers and alert.trigger not in channel.triggers:
        return False
    return SEVERITIES.index(alert.severity) >= SEVERITIES.index(channel.min_severity)


def enqueue(session: Session, alert: Alert, kind: DeliveryKind, *, now: dt.datetime) -> list[AlertDelivery]:
    """Write one pending delivery of ``alert`` per channel whose filters accept it."""
    rows = [
        AlertDelivery(
            alert_id=alert.id, channel_id=channel.id, kind=kind, status="pending", next_attempt_at=now
        )
        for channel in session.scalars(select(AlertChannel).order_by(AlertChannel.id))
        if channel_accepts(channel, alert)
    ]
    session.add_all(rows)
    session.flush()
    return rows


def enqueue_resolve(session: Session, alert: Alert, *, now: dt.datetime) -> list[AlertDelivery]:
    """Write a resolve delivery for each channel that has the alert's open message."""
    channel_ids = session.scalars(
        select(AlertDelivery.channel_id).where(
            AlertDelivery.alert_id == alert.id, AlertDelivery.kind == "open"
        )
    ).all()
    rows = [
        AlertDelivery(
            alert_id=alert.id, channel_id=channel_id, kind="resolve", status="pending", next_attempt_at=now
        )
        for channel_id in channel_ids
    ]
    session.add_all(rows)
    session.flush()
    return rows


def _server_region(session: Session, server_id: int | None) -> int | None:
    if server_id is None:
        return None
    server = session.get(Server, server_id)
    return server.region_id if server is not None else None
