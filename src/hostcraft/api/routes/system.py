"""Unauthenticated liveness, and the event log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy import text

from hostcraft import __version__
from hostcraft.api.auth import current_principal, get_runtime
from hostcraft.api.schemas import EventOut
from hostcraft.runtime import Runtime
from hostcraft.services.events import list_events

public = APIRouter()
router = APIRouter(dependencies=[Depends(current_principal)])


@public.get("/health", tags=["system"])
def health(runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """Liveness of the control plane and its store; no token needed."""
    with runtime.store.session() as session:
        session.execute(text("SELECT 1"))
    backend = "postgresql" if runtime.store.url.startswith("postgresql") else "sqlite"
    return {"status": "ok", "version": __version__, "store": backend}


@router.get("/api/events", response_model=list[EventOut], tags=["events"])
def get_events(
    target_type: str | None = Query(default=None, alias="targetType"),
    target_id: str | None = Query(default=None, alias="targetId"),
    action: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    runtime: Runtime = Depends(get_runtime),
) -> list[EventOut]:
    with runtime.store.session() as session:
        events = list_events(
            session, target_type=target_type, target_id=target_id, action=action, limit=limit
        )
        return [EventOut.model_validate(event) for event in events]
