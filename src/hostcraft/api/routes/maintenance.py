"""Maintenance windows of applications and regions: no alerts, no recovery, left out of SLA figures."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import Field, StrictInt

from hostcraft.api.auth import Principal, current_principal, get_runtime
from hostcraft.api.schemas import Body, Out
from hostcraft.runtime import Runtime
from hostcraft.services import maintenance
from hostcraft.store.models import MaintenanceWindow, utcnow

router = APIRouter(
    prefix="/api/maintenance-windows", tags=["maintenance"], dependencies=[Depends(current_principal)]
)


class WindowIn(Body):
    application_id: StrictInt | None = None
    region_id: StrictInt | None = None
    reason: str = Field(default="", max_length=300)
    timezone: str = Field(default="UTC", min_length=1, max_length=64)
    cron: str | None = Field(default=None, max_length=120)
    duration_minutes: StrictInt | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None


class WindowOut(Out):
    id: int
    application_id: int | None
    region_id: int | None
    reason: str
    timezone: str
    cron: str | None
    duration_minutes: int | None
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    created_by: str
    created_at: dt.datetime
    active_now: bool
    next_start: dt.datetime | None


def window_out(window: MaintenanceWindow, now: dt.datetime) -> WindowOut:
    active = bool(maintenance.window_intervals(window, start=now, end=now + dt.timedelta(microseconds=1)))
    return WindowOut.model_validate(
        {
            **{
                column: getattr(window, column)
                for column in WindowOut.model_fields
                if hasattr(window, column)
            },
            "active_now": active,
            "next_start": maintenance.next_start(window, now=now),
        }
    )


@router.post("", response_model=WindowOut, status_code=status.HTTP_201_CREATED)
def create_window(
    body: WindowIn, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(current_principal)
) -> WindowOut:
    """Create a recurring (cron + durationMinutes) or one-off (startsAt + endsAt) window."""
    window = maintenance.WindowInput(
        application_id=body.application_id,
        region_id=body.region_id,
        reason=body.reason,
        timezone=body.timezone,
        cron=body.cron,
        duration_minutes=body.duration_minutes,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
    )
    with runtime.store.session() as session:
        return window_out(maintenance.create_window(session, window, actor=principal.actor), utcnow())


@router.get("", response_model=list[WindowOut])
def list_windows(
    application_id: int | None = Query(default=None, alias="applicationId"),
    region_id: int | None = Query(default=None, alias="regionId"),
    runtime: Runtime = Depends(get_runtime),
) -> list[WindowOut]:
    now = utcnow()
    with runtime.store.session() as session:
        windows = maintenance.list_windows(session, application_id=application_id, region_id=region_id)
        return [window_out(window, now) for window in windows]


@router.get("/{window_id}", response_model=WindowOut)
def get_window(window_id: int, runtime: Runtime = Depends(get_runtime)) -> WindowOut:
    with runtime.store.session() as session:
        return window_out(maintenance.get_window(session, window_id), utcnow())


@router.delete("/{window_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_window(
    window_id: int, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(current_principal)
) -> Response:
    with runtime.store.session() as session:
        maintenance.delete_window(session, window_id, actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
