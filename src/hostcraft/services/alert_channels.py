"""Alert channels: Apprise URLs stored encrypted, with optional trigger and severity filters.

The URL carries tokens and passwords, so it is write-only: responses show the service name and
a masked form with no user, password, path or query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import apprise
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.errors import ConflictError, NotFound, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services.alert_delivery import Message, send_message
from hostcraft.services.alerts import SEVERITIES, TRIGGERS
from hostcraft.services.events import record_event
from hostcraft.store.models import AlertChannel


@dataclass(frozen=True)
class ChannelInput:
    name: str
    url: str
    triggers: list[str] = field(default_factory=list)
    min_severity: str = "info"


@dataclass(frozen=True)
class ChannelTestResult:
    delivered: bool
    error: str | None


def describe_url(url: str) -> tuple[str, str]:
    """Return the service name and a masked form of an Apprise URL; raise ValidationError if invalid."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        raise ValidationError(
            f"invalid url: Apprise cannot parse a {scheme + ':// ' if scheme else ''}URL of this form; "
            "see the Apprise documentation for the service's URL format "
            "(e.g. json://host:port/path, mailto://user:password@example.com, slack://TokenA/TokenB/TokenC)",
            field="url",
        )
    # Apprise's privacy form hides passwords and tokens but keeps paths; keep only scheme and host.
    private = urlsplit(plugin.url(privacy=True))  # type: ignore[no-untyped-call]
    host = private.netloc.rpartition("@")[2]
    masked = (
        f"{private.scheme}://{host}/…"
        if private.path.strip("/") or private.query
        else f"{private.scheme}://{host}"
    )
    return str(plugin.service_name), masked[:300]


def create_channel(session: Session, runtime: Runtime, channel: ChannelInput, *, actor: str) -> AlertChannel:
    _check_filters(channel)
    service, masked = describe_url(channel.url)
    if session.scalar(select(AlertChannel.id).where(AlertChannel.name == channel.name)) is not None:
        raise ConflictError(f"alert channel {channel.name!r} already exists", details={"field": "name"})
    row = AlertChannel(
        name=channel.name,
        url_encrypted=runtime.secrets.encrypt(channel.url),
        service=service,
        url_masked=masked,
        triggers=list(dict.fromkeys(channel.triggers)),
        min_severity=channel.min_severity,
    )
    session.add(row)
    session.flush()
    record_event(
        session,
        actor=actor,
        action="alert-channel.create",
        target_type="alert-channel",
        target_id=row.id,
        target_name=row.name,
        outcome="succeeded",
        details={"service": service, "url": masked},
    )
    return row


def _check_filters(channel: ChannelInput) -> None:
    for index, trigger in enumerate(channel.triggers):
        if trigger not in TRIGGERS:
            raise ValidationError(
                f"invalid trigger {trigger!r}: expected one of {', '.join(TRIGGERS)}",
                field=f"triggers[{index}]",
            )
    if channel.min_severity not in SEVERITIES:
        raise ValidationError(
            f"invalid minSeverity {channel.min_severity!r}: expected one of {', '.join(SEVERITIES)}",
            field="minSeverity",
        )


def list_channels(session: Session) -> list[AlertChannel]:
    return list(session.scalars(select(AlertChannel).order_by(AlertChannel.id)))


def get_channel(session: Session, channel_id: int) -> AlertChannel:
    channel = session.get(AlertChannel, channel_id)
    if channel is None:
        raise NotFound(f"alert channel {channel_id} not found")
    return channel


def delete_channel(session: Session, channel_id: int, *, actor: str) -> None:
    """Delete a channel; its pending messages are deleted with it."""
    channel = get_channel(session, channel_id)
    name = channel.name
    session.delete(channel)
    session.flush()
    record_event(
        session,
        actor=actor,
        action="alert-channel.delete",
        target_type="alert-channel",
        target_id=channel_id,
        target_name=name,
        outcome="succeeded",
    )


def send_test_message(runtime: Runtime, channel_id: int, *, actor: str) -> ChannelTestResult:
    """Send a test message now, outside any transaction, and record the outcome as an event."""
    with runtime.store.session() as session:
        channel = get_channel(session, channel_id)
        url = runtime.secrets.decrypt(channel.url_encrypted)
        name = channel.name
    message = Message(
        title="HostCraft test message",
        body=f"This is a test of alert channel {name!r}. Alerts will arrive here.",
        notify_type=apprise.NotifyType.INFO,
    )
    error = send_message(url, message)
    with runtime.store.session() as session:
        record_event(
            session,
            actor=actor,
            action="alert-channel.test",
            target_type="alert-channel",
            target_id=channel_id,
            target_name=name,
            outcome="succeeded" if error is None else "failed",
            reason=error,
        )
    return ChannelTestResult(delivered=error is None, error=error)
