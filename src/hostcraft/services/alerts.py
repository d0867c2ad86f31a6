"""Alerts: one open alert per cause, opened by the engine's checks and resolved when they pass.

Callers (health, recovery, backups, DR) only open and resolve alerts inside their own
transaction. Delivery to channels happens later, outside that transaction, so a slow or
failing channel never holds up or rolls back the work that raised the alert.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.store.models import Alert, utcnow

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
]
Severity = Literal["info", "warning", "critical"]


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
    alert = find_open_alert(session, cause)
    if alert is not None:
        alert.occurrences += 1
        alert.last_seen_at = now
        alert.message = message
        session.flush()
        return alert
    alert = Alert(
        trigger=trigger,
        cause=cause,
        title=title,
        message=message,
        severity=severity,
        status="open",
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
    logger.warning("alert opened", extra={"alert_id": alert.id, "trigger": trigger, "cause": cause})
    return alert


def resolve_alert(
    session: Session, *, cause: str, message: str, now: dt.datetime | None = None
) -> Alert | None:
    """Resolve the open alert for ``cause``; return None when none is open."""
    alert = find_open_alert(session, cause)
    if alert is None:
        return None
    alert.status = "resolved"
    alert.resolved_at = now or utcnow()
    alert.resolve_message = message
    session.flush()
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
    """Record a one-off notification (a recovery action taken): sent once, nothing to resolve."""
    alert = open_alert(
        session,
        trigger=trigger,
        cause=cause,
        title=title,
        message=message,
        severity=severity,
        application_id=application_id,
        region_id=region_id,
        server_id=server_id,
        details=details,
        now=now,
    )
    alert.status = "resolved"
    alert.resolved_at = alert.last_seen_at
    session.flush()
    return alert


def find_open_alert(session: Session, cause: str) -> Alert | None:
    return session.scalars(
        select(Alert).where(Alert.cause == cause, Alert.status == "open").order_by(Alert.id.desc()).limit(1)
    ).first()
