"""The engine lease: one row in the store names the HostCraft process that runs the engine loops."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hostcraft.store.models import EngineLease, utcnow

ENGINE_LEASE = "engine"


def acquire_lease(
    session: Session, *, holder: str, ttl: dt.timedelta, now: dt.datetime | None = None
) -> bool:
    """Take or renew the lease; False while another live holder has it."""
    now = now or utcnow()
    lease = session.scalar(select(EngineLease).where(EngineLease.name == ENGINE_LEASE).with_for_update())
    if lease is None:
        session.add(EngineLease(name=ENGINE_LEASE, holder=holder, expires_at=now + ttl))
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            return False
        return True
    if lease.holder != holder and lease.expires_at > now:
        return False
    lease.holder = holder
    lease.expires_at = now + ttl
    return True


def release_lease(session: Session, *, holder: str) -> None:
    lease = session.scalar(select(EngineLease).where(EngineLease.name == ENGINE_LEASE))
    if lease is not None and lease.holder == holder:
        session.delete(lease)
