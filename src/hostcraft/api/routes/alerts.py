"""Alert channels (Apprise URLs, write-only) and the alert history with each alert's deliveries."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import Field
from sqlalchemy import select

from hostcraft.api.auth import Principal, current_principal, get_runtime
from hostcraft.api.schemas import Body, Out
from hostcraft.errors import NotFound
from hostcraft.runtime import Runtime
from hostcraft.services import alert_channels
from hostcraft.services.alerts import Severity
from hostcraft.store.models import Alert, AlertDelivery

router = APIRouter(tags=["alerts"], dependencies=[Depends(current_principal)])


class ChannelIn(Body):
    name: str = Field(min_length=1, max_length=64)
    # The Apprise URL; it is stored encrypted and never returned.
    url: str = Field(min_length=1, max_length=4000, repr=False)
    triggers: list[str] = Field(default_factory=list)
    min_severity: Severity = "info"


class ChannelOut(Out):
    id: int
    name: str
    service: str
    url_masked: str
    triggers: list[str]
    min_severity: str
    created_at: dt.datetime


class ChannelTestOut(Out):
    channel_id: int
    delivered: bool
    error: str | None


class DeliveryOut(Out):
    id: int
    channel_id: int
    kind: str
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    digest_of: int | None
    created_at: dt.datetime
    sent_at: dt.datetime | None


class AlertOut(Out):
    id: int
    kind: str
    trigger: str
    cause: str
    severity: str
    status: str
    title: str
    message: str
    resolve_message: str | None
    application_id: int | None
    region_id: int | None
    server_id: int | None
    details: dict[str, Any]
    occurrences: int
    opened_at: dt.datetime
    last_seen_at: dt.datetime
    resolved_at: dt.datetime | None


class AlertDetailOut(AlertOut):
    deliveries: list[DeliveryOut]


@router.post("/api/alert-channels", response_model=ChannelOut, status_code=status.HTTP_201_CREATED)
def create_channel(
    body: ChannelIn,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> ChannelOut:
    """Add a channel; Apprise must parse ``url`` (422 naming ``url`` otherwise)."""
    channel = alert_channels.ChannelInput(
        name=body.name, url=body.url, triggers=body.triggers, min_severity=body.min_severity
    )
    with runtime.store.session() as session:
        return ChannelOut.model_validate(
            alert_channels.create_channel(session, runtime, channel, actor=principal.actor)
        )


@router.get("/api/alert-channels", response_model=list[ChannelOut])
def list_channels(runtime: Runtime = Depends(get_runtime)) -> list[ChannelOut]:
    with runtime.store.session() as session:
        return [ChannelOut.model_validate(row) for row in alert_channels.list_channels(session)]


@router.get("/api/alert-channels/{channel_id}", response_model=ChannelOut)
def get_channel(channel_id: int, runtime: Runtime = Depends(get_runtime)) -> ChannelOut:
    with runtime.store.session() as session:
        return ChannelOut.model_validate(alert_channels.get_channel(session, channel_id))


@router.delete("/api/alert-channels/{channel_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_channel(
    channel_id: int,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> Response:
    with runtime.store.session() as session:
        alert_channels.delete_channel(session, channel_id, actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/api/alert-channels/{channel_id}/test", response_model=ChannelTestOut)
def test_channel(
    channel_id: int,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> ChannelTestOut:
    """Send a test message now; on failure ``delivered`` is false and ``error`` gives the reason."""
    result = alert_channels.send_test_message(runtime, channel_id, actor=principal.actor)
    return ChannelTestOut(channel_id=channel_id, delivered=result.delivered, error=result.error)


@router.get("/api/alerts", response_model=list[AlertOut])
def list_alerts(
    status_filter: Literal["open", "resolved", "suppressed"] | None = Query(default=None, alias="status"),
    trigger: str | None = None,
    application_id: int | None = Query(default=None, alias="applicationId"),
    region_id: int | None = Query(default=None, alias="regionId"),
    limit: int = Query(default=100, ge=1, le=1000),
    runtime: Runtime = Depends(get_runtime),
) -> list[AlertOut]:
    """List alerts and notices, newest first."""
    query = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if status_filter is not None:
        query = query.where(Alert.status == status_filter)
    if trigger is not None:
        query = query.where(Alert.trigger == trigger)
    if application_id is not None:
        query = query.where(Alert.application_id == application_id)
    if region_id is not None:
        query = query.where(Alert.region_id == region_id)
    with runtime.store.session() as session:
        return [AlertOut.model_validate(alert) for alert in session.scalars(query)]


@router.get("/api/alerts/{alert_id}", response_model=AlertDetailOut)
def get_alert(alert_id: int, runtime: Runtime = Depends(get_runtime)) -> AlertDetailOut:
    """Return one alert with every message sent or waiting for it, per channel."""
    with runtime.store.session() as session:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise NotFound(f"alert {alert_id} not found")
        deliveries = session.scalars(
            select(AlertDelivery).where(AlertDelivery.alert_id == alert_id).order_by(AlertDelivery.id)
        )
        return AlertDetailOut.model_validate(
            {
                **AlertOut.model_validate(alert).model_dump(),
                "deliveries": [DeliveryOut.model_validate(row) for row in deliveries],
            }
        )
