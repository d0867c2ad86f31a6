"""Maintenance windows of applications and regions: create, list, delete, and ask whether one is active.

During a window, alerts for the application (or for anything in the region) are stored as
``suppressed`` and not sent. ``in_maintenance`` is the check for the recovery ladder, and
``maintenance_intervals`` gives SLA figures the time to leave out. An application is in maintenance
when its own window or its region's window is active.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hostcraft.domain.maintenance import (
    Interval,
    check_cron,
    clip_and_merge,
    load_zone,
    next_opening,
    recurring_intervals,
)
from hostcraft.errors import NotFound, ValidationError
from hostcraft.services.events import record_event
from hostcraft.store.models import Application, MaintenanceWindow, Region

MAX_DURATION_MINUTES = 7 * 24 * 60


@dataclass(frozen=True)
class WindowInput:
    application_id: int | None = None
    region_id: int | None = None
    reason: str = ""
    timezone: str = "UTC"
    cron: str | None = None
    duration_minutes: int | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None


def create_window(session: Session, window: WindowInput, *, actor: str) -> MaintenanceWindow:
    """Validate and store a window; raise ValidationError naming the offending field."""
    _check_target(session, window)
    _check_timing(window)
    row = MaintenanceWindow(
        application_id=window.application_id,
        region_id=window.region_id,
        reason=window.reason,
        timezone=window.timezone,
        cron=window.cron,
        duration_minutes=window.duration_minutes,
        starts_at=window.starts_at,
        ends_at=window.ends_at,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    target_type, target_id = _target(row)
    record_event(
        session,
        actor=actor,
        action="maintenance.create",
        target_type=target_type,
        target_id=target_id,
        outcome="succeeded",
        reason=window.reason or None,
        details={"windowId": row.id, "cron": row.cron, "timezone": row.timezone},
    )
    return row


def _check_target(session: Session, window: WindowInput) -> None:
    if (window.application_id is None) == (window.region_id is None):
        raise ValidationError(
            "a maintenance window needs exactly one of applicationId and regionId", field="applicationId"
        )
    if window.application_id is not None and session.get(Application, window.application_id) is None:
        raise ValidationError(f"unknown application {window.application_id}", field="applicationId")
    if window.region_id is not None and session.get(Region, window.region_id) is None:
        raise ValidationError(f"unknown region {window.region_id}", field="regionId")


def _check_timing(window: WindowInput) -> None:
    try:
        load_zone(window.timezone)
    except ValueError as exc:
        raise ValidationError(str(exc), field="timezone") from exc
    recurring = window.cron is not None
    one_off = window.starts_at is not None or window.ends_at is not None
    if recurring == one_off:
        raise ValidationError(
            "a maintenance window is either recurring (cron and durationMinutes) or one-off "
            "(startsAt and endsAt), not both and not neither",
            field="cron",
        )
    if recurring:
        _check_recurring(window)
    else:
        _check_one_off(window)


def _check_recurring(window: WindowInput) -> None:
    assert window.cron is not None
    try:
        check_cron(window.cron)
    except ValueError as exc:
        raise ValidationError(str(exc), field="cron") from exc
    duration = window.duration_minutes
    if duration is None or duration <= 0 or duration > MAX_DURATION_MINUTES:
        raise ValidationError(
            f"invalid durationMinutes {duration!r}: a recurring window needs a duration between 1 and "
            f"{MAX_DURATION_MINUTES} minutes",
            field="durationMinutes",
        )


def _check_one_off(window: WindowInput) -> None:
    for field, value in (("startsAt", window.starts_at), ("endsAt", window.ends_at)):
        if value is None:
            raise ValidationError(
                f"{field} is missing: a one-off window needs startsAt and endsAt", field=field
            )
        if value.tzinfo is None:
            raise ValidationError(
                f"invalid {field} {value.isoformat()}: give a UTC offset, e.g. 2026-03-29T01:00:00+01:00",
                field=field,
            )
    assert window.starts_at is not None and window.ends_at is not None
    if window.ends_at <= window.starts_at:
        raise ValidationError("invalid endsAt: it must be later than startsAt", field="endsAt")
    if window.duration_minutes is not None:
        raise ValidationError(
            "durationMinutes is only for recurring windows: a one-off window ends at endsAt",
            field="durationMinutes",
        )


def _target(window: MaintenanceWindow) -> tuple[str, int]:
    if window.application_id is not None:
        return "application", window.application_id
    assert window.region_id is not None
    return "region", window.region_id


def list_windows(
    session: Session, *, application_id: int | None = None, region_id: int | None = None
) -> list[MaintenanceWindow]:
    query = select(MaintenanceWindow).order_by(MaintenanceWindow.id)
    if application_id is not None:
        query = query.where(MaintenanceWindow.application_id == application_id)
    if region_id is not None:
        query = query.where(MaintenanceWindow.region_id == region_id)
    return list(session.scalars(query))


def get_window(session: Session, window_id: int) -> MaintenanceWindow:
    window = session.get(MaintenanceWindow, window_id)
    if window is None:
        raise NotFound(f"maintenance window {window_id} not found")
    return window


def delete_window(session: Session, window_id: int, *, actor: str) -> None:
    window = get_window(session, window_id)
    target_type, target_id = _target(window)
    session.delete(window)
    record_event(
        session,
        actor=actor,
        action="maintenance.delete",
        target_type=target_type,
        target_id=target_id,
        outcome="succeeded",
        details={"windowId": window_id},
    )
    session.flush()


def window_intervals(window: MaintenanceWindow, *, start: dt.datetime, end: dt.datetime) -> list[Interval]:
    """Return when ``window`` is active within ``[start, end)``, unmerged, in UTC."""
    if window.cron is not None and window.duration_minutes is not None:
        zone = load_zone(window.timezone)
        duration = dt.timedelta(minutes=window.duration_minutes)
        return recurring_intervals(window.cron, duration, zone, start=start, end=end)
    starts_at, ends_at = window.starts_at, window.ends_at
    if starts_at is not None and ends_at is not None and starts_at < end and ends_at > start:
        return [(starts_at, ends_at)]
    return []


def _windows_for(
    session: Session, *, application_id: int | None, region_id: int | None
) -> list[MaintenanceWindow]:
    """Return the windows of the application and of its region (or of the region alone)."""
    conditions = []
    if application_id is not None:
        conditions.append(MaintenanceWindow.application_id == application_id)
        app = session.get(Application, application_id)
        if app is not None and region_id is None:
            region_id = app.region_id
    if region_id is not None:
        conditions.append(MaintenanceWindow.region_id == region_id)
    if not conditions:
        return []
    return list(session.scalars(select(MaintenanceWindow).where(or_(*conditions))))


def maintenance_intervals(
    session: Session,
    *,
    application_id: int | None,
    region_id: int | None,
    start: dt.datetime,
    end: dt.datetime,
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Return the merged maintenance time in [start, end) of an application or a region.

    An application's time includes its region's windows.
    """
    windows = _windows_for(session, application_id=application_id, region_id=region_id)
    intervals = [
        interval for window in windows for interval in window_intervals(window, start=start, end=end)
    ]
    return clip_and_merge(intervals, start=start, end=end)


def in_maintenance(
    session: Session, *, application_id: int | None, region_id: int | None, at: dt.datetime
) -> bool:
    """Return whether the application (or its region), or the region, is in maintenance at ``at``."""
    probe_end = at + dt.timedelta(microseconds=1)
    return bool(
        maintenance_intervals(
            session, application_id=application_id, region_id=region_id, start=at, end=probe_end
        )
    )


def next_start(window: MaintenanceWindow, *, now: dt.datetime) -> dt.datetime | None:
    """Return when the window next begins after ``now``; None for a one-off window already begun."""
    if window.cron is not None:
        return next_opening(window.cron, load_zone(window.timezone), after=now)
    if window.starts_at is not None and window.starts_at > now:
        return window.starts_at
    return None
