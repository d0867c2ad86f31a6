"""The audit trail: one append-only event for every action, by a person or by the engine."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.store.models import Event

if TYPE_CHECKING:
    from hostcraft.runtime import Runtime

logger = logging.getLogger(__name__)

Outcome = Literal["succeeded", "failed", "refused", "started"]


def record_event(
    session: Session,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: int | str | None,
    target_name: str | None = None,
    outcome: Outcome,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> Event:
    event = Event(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        target_name=target_name,
        outcome=outcome,
        reason=reason,
        details=details or {},
    )
    session.add(event)
    session.flush()
    logger.log(
        logging.WARNING if outcome in ("failed", "refused") else logging.INFO,
        "%s %s %s: %s%s",
        action,
        target_type,
        target_name or target_id,
        outcome,
        f" ({reason})" if reason else "",
        extra={"actor": actor, "target_type": target_type, "target_id": target_id, "reason": reason},
    )
    return event


def list_events(
    session: Session,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    limit: int = 100,
) -> list[Event]:
    query = select(Event).order_by(Event.id.desc()).limit(limit)
    if target_type:
        query = query.where(Event.target_type == target_type)
    if target_id:
        query = query.where(Event.target_id == target_id)
    if action:
        query = query.where(Event.action == action)
    return list(session.scalars(query))


def audit(
    runtime: Runtime,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: int | str | None,
    target_name: str | None = None,
    outcome: Outcome,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record an event in its own transaction, so it survives the rollback of a failed action."""
    with runtime.store.session() as session:
        record_event(
            session,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            target_name=target_name,
            outcome=outcome,
            reason=reason,
            details=details,
        )
