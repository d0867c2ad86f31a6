"""Delivery of the alert outbox to Apprise channels, with retries and a per-channel rate limit.

``deliver_pending`` reads due rows in one short transaction, sends them with no transaction
open, and records each outcome in another. A failed message is retried with exponential
backoff (``alert_retry_initial_seconds`` doubling up to ``alert_retry_max_seconds``) and marked
``failed`` after ``alert_delivery_max_attempts``; its error stays on the row.

Rate limit: a channel gets at most ``alert_rate_limit_messages`` messages per
``alert_rate_limit_window_seconds``. When more are due than the channel may still get, the
last allowed message is a digest that carries all the remaining ones. When the budget is
used up, due messages wait until the window frees a slot. No message is dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import apprise
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hostcraft.runtime import Runtime
from hostcraft.store.models import Alert, AlertChannel, AlertDelivery, utcnow

logger = logging.getLogger(__name__)

_NOTIFY_TYPES = {
    "critical": apprise.NotifyType.FAILURE,
    "warning": apprise.NotifyType.WARNING,
    "info": apprise.NotifyType.INFO,
}


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    notify_type: str


@dataclass
class _Send:
    """One message to send: a single delivery row, or a digest of several."""

    channel_id: int
    url: str
    delivery_ids: list[int]
    message: Message
    alert_ids: list[int]


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    delayed: int = 0
    digests: int = 0
    errors: list[str] = field(default_factory=list)


def deliver_pending(runtime: Runtime, *, now: dt.datetime | None = None) -> DeliveryReport:
    """Send every due outbox row; return counts of sent, failed (will retry or gave up) and delayed rows."""
    now = now or utcnow()
    report = DeliveryReport()
    with runtime.store.session() as session:
        sends = _plan(session, runtime, now, report)
    failed_pairs: set[tuple[int, int]] = set()
    for send in sends:
        if any((alert_id, send.channel_id) in failed_pairs for alert_id in send.alert_ids):
            # The open message of this alert just failed: its resolve must not overtake it.
            continue
        error = send_message(send.url, send.message)
        if error is not None:
            failed_pairs.update((alert_id, send.channel_id) for alert_id in send.alert_ids)
        with runtime.store.session() as session:
            _record(session, runtime, send, error, now)
        if error is None:
            report.sent += len(send.delivery_ids)
        else:
            report.failed += len(send.delivery_ids)
            report.errors.append(error)
    return report


def _plan(session: Session, runtime: Runtime, now: dt.datetime, report: DeliveryReport) -> list[_Send]:
    due = list(
        session.scalars(
            select(AlertDelivery)
            .where(AlertDelivery.status == "pending", AlertDelivery.next_attempt_at <= now)
            .order_by(AlertDelivery.id)
        )
    )
    due_ids = {row.id for row in due}
    by_channel: dict[int, list[AlertDelivery]] = {}
    for row in due:
        if not _waits_for_open(session, row, due_ids):
            by_channel.setdefault(row.channel_id, []).append(row)
    sends: list[_Send] = []
    for channel_id, rows in by_channel.items():
        channel = session.get(AlertChannel, channel_id)
        if channel is None:
            continue
        sends.extend(_plan_channel(session, runtime, channel, rows, now, report))
    return sends


def _waits_for_open(session: Session, row: AlertDelivery, due_ids: set[int]) -> bool:
    """Return whether a resolve message must wait for an open message that is not due yet.

    An open message due in the same pass goes first, because rows are sent in id order.
    """
    if row.kind != "resolve":
        return False
    pending_open = session.scalar(
        select(AlertDelivery.id).where(
            AlertDelivery.alert_id == row.alert_id,
            AlertDelivery.channel_id == row.channel_id,
            AlertDelivery.kind == "open",
            AlertDelivery.status == "pending",
        )
    )
    return pending_open is not None and pending_open not in due_ids


def _plan_channel(
    session: Session,
    runtime: Runtime,
    channel: AlertChannel,
    rows: list[AlertDelivery],
    now: dt.datetime,
    report: DeliveryReport,
) -> list[_Send]:
    settings = runtime.settings
    window = dt.timedelta(seconds=settings.alert_rate_limit_window_seconds)
    sent_in_window = _messages_sent_since(session, channel.id, now - window)
    budget = settings.alert_rate_limit_messages - len(sent_in_window)

    if budget <= 0:
        # The oldest message in the window leaves it first; then a slot is free again.
        free_at = min(sent_in_window) + window
        for row in rows:
            row.next_attempt_at = free_at
        report.delayed += len(rows)
        logger.info(
            "alert channel rate limit reached; messages delayed",
            extra={"channel": channel.name, "delayed": len(rows), "until": free_at.isoformat()},
        )
        return []

    url = runtime.secrets.decrypt(channel.url_encrypted)
    alerts = {
        alert.id: alert
        for alert in session.scalars(select(Alert).where(Alert.id.in_({r.alert_id for r in rows})))
    }
    if len(rows) <= budget:
        return [_single(channel.id, url, row, alerts[row.alert_id]) for row in rows]

    singles, rest = rows[: budget - 1], rows[budget - 1 :]
    sends = [_single(channel.id, url, row, alerts[row.alert_id]) for row in singles]
    digest = compose_digest([(alerts[row.alert_id], row.kind) for row in rest])
    sends.append(_Send(channel.id, url, [row.id for row in rest], digest, [row.alert_id for row in rest]))
    report.digests += 1
    logger.info(
        "alert channel rate limit reached; messages collapsed into a digest",
        extra={"channel": channel.name, "collapsed": len(rest)},
    )
    return sends


def _single(channel_id: int, url: str, row: AlertDelivery, alert: Alert) -> _Send:
    return _Send(channel_id, url, [row.id], compose(alert, row.kind), [row.alert_id])


def _messages_sent_since(session: Session, channel_id: int, since: dt.datetime) -> list[dt.datetime]:
    """Return the send times of the messages a channel got since ``since``; a digest counts once."""
    query = select(AlertDelivery.sent_at).where(
        AlertDelivery.channel_id == channel_id,
        AlertDelivery.status == "sent",
        AlertDelivery.sent_at >= since,
        or_(AlertDelivery.digest_of.is_(None), AlertDelivery.digest_of == AlertDelivery.id),
    )
    return [sent_at for sent_at in session.scalars(query) if sent_at is not None]


def _record(session: Session, runtime: Runtime, send: _Send, error: str | None, now: dt.datetime) -> None:
    settings = runtime.settings
    head = send.delivery_ids[0]
    for delivery_id in send.delivery_ids:
        row = session.get(AlertDelivery, delivery_id)
        if row is None:
            continue
        row.attempts += 1
        if error is None:
            row.status = "sent"
            row.sent_at = now
            row.last_error = None
            row.digest_of = head if len(send.delivery_ids) > 1 else None
            continue
        row.last_error = error
        if row.attempts >= settings.alert_delivery_max_attempts:
            row.status = "failed"
            logger.error(
                "failed to deliver alert message; giving up",
                extra={
                    "delivery_id": row.id,
                    "alert_id": row.alert_id,
                    "attempts": row.attempts,
                    "error": error,
                },
            )
        else:
            delay = min(
                settings.alert_retry_initial_seconds * 2 ** (row.attempts - 1),
                settings.alert_retry_max_seconds,
            )
            row.next_attempt_at = now + dt.timedelta(seconds=delay)
            logger.warning(
                "failed to deliver alert message; will retry",
                extra={"delivery_id": row.id, "alert_id": row.alert_id, "retry_in": delay, "error": error},
            )


def compose(alert: Alert, kind: str) -> Message:
    """Build the title and body of an open, resolve or notice message."""
    if kind == "resolve":
        duration = (alert.resolved_at or alert.last_seen_at) - alert.opened_at
        body = (
            f"{alert.resolve_message or 'The condition cleared.'}\n\n"
            f"Open for {_human_duration(duration)}; seen {alert.occurrences} time(s). "
            f"Alert #{alert.id}, cause {alert.cause}."
        )
        return Message(f"[RESOLVED] {alert.title}", body, apprise.NotifyType.SUCCESS)
    label = "NOTICE" if kind == "notice" else alert.severity.upper()
    body = f"{alert.message}\n\nTrigger {alert.trigger}; alert #{alert.id}, cause {alert.cause}."
    return Message(
        f"[{label}] {alert.title}", body, _NOTIFY_TYPES.get(alert.severity, apprise.NotifyType.INFO)
    )


def compose_digest(items: list[tuple[Alert, str]]) -> Message:
    """Build one message that carries several, sent when a channel reaches its rate limit."""
    lines = [f"{len(items)} alert messages were collected because this channel reached its rate limit:", ""]
    for alert, kind in items:
        state = {"open": alert.severity.upper(), "resolve": "RESOLVED", "notice": "NOTICE"}.get(kind, kind)
        lines.append(f"- [{state}] {alert.title} (alert #{alert.id})")
    return Message(
        f"HostCraft: {len(items)} alert messages (rate-limit digest)",
        "\n".join(lines),
        apprise.NotifyType.WARNING,
    )


def _human_duration(duration: dt.timedelta) -> str:
    seconds = int(duration.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def send_message(url: str, message: Message) -> str | None:
    """Send one message through Apprise; return None on success, else the delivery error (no secrets)."""
    notifier = apprise.Apprise()
    if not notifier.add(url):
        return "the channel URL is not a valid Apprise URL"
    with apprise.LogCapture(  # type: ignore[no-untyped-call]
        level=logging.WARNING, fmt="%(message)s"
    ) as captured:
        delivered = notifier.notify(body=message.body, title=message.title, notify_type=message.notify_type)
        log_text = captured.getvalue()
    if delivered:
        return None
    detail = " ".join(line.strip() for line in log_text.splitlines() if line.strip())
    return redact(f"delivery failed: {detail or 'Apprise reported no detail'}", url)[:1000]


def redact(text: str, url: str) -> str:
    """Remove the parts of an Apprise URL that may be secret (user, password, path, query) from text."""
    parts = urlsplit(url)
    secrets = {url, parts.password or "", parts.username or "", parts.query}
    host = parts.netloc.rpartition("@")[2].split(":")[0]
    if "." not in host:
        # Services such as slack:// put a token where a host would be; real hosts have dots.
        secrets.add(host)
    secrets.update(unquote(segment) for segment in parts.path.split("/"))
    secrets.update(segment for segment in parts.path.split("/"))
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "****")
    return text
