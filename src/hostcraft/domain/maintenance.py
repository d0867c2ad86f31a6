"""Maintenance windows as time intervals: recurring cron windows in an IANA time zone, across DST.

A recurring window starts at each cron time read as *wall-clock* time in its zone and lasts
``duration`` of elapsed time. Cron runs on naive local times, and each start is then placed in
the zone. A start inside the spring-forward gap (02:30 on the day clocks jump from 02:00 to
03:00) takes the offset from before the jump, so it begins at 03:30 local time, as cron daemons
run a skipped job late. A start in the repeated autumn hour begins at its first occurrence and
happens once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

Interval = tuple[dt.datetime, dt.datetime]

# Starts are searched from one day before ``start - duration``. The extra day covers the
# zone's UTC offset, so no start whose duration reaches into the range is missed.
_LOOKBACK = dt.timedelta(days=1)


def load_zone(name: str) -> ZoneInfo:
    """Return the IANA time zone ``name``; raise ValueError for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC"
        ) from exc


def check_cron(expression: str) -> None:
    """Raise ValueError unless ``expression`` is a valid five-field cron expression."""
    if len(expression.split()) != 5:
        raise ValueError(
            f"invalid cron expression {expression!r}: expected five fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 2 * * SUN'"
        )
    if not croniter.is_valid(expression):
        raise ValueError(f"invalid cron expression {expression!r}: croniter cannot parse it")


def recurring_intervals(
    cron: str, duration: dt.timedelta, zone: ZoneInfo, *, start: dt.datetime, end: dt.datetime
) -> list[Interval]:
    """Return the occurrences of a recurring window that overlap ``[start, end)``, in UTC."""
    local_from = (start - duration - _LOOKBACK).astimezone(zone).replace(tzinfo=None)
    local_until = (end + _LOOKBACK).astimezone(zone).replace(tzinfo=None)
    schedule = croniter(cron, local_from)
    intervals: list[Interval] = []
    while True:
        wall_clock: dt.datetime = schedule.get_next(dt.datetime)
        if wall_clock >= local_until:
            break
        opens = wall_clock.replace(tzinfo=zone).astimezone(dt.UTC)
        closes = opens + duration
        if opens < end and closes > start:
            intervals.append((opens, closes))
    return intervals


def clip_and_merge(intervals: Iterable[Interval], *, start: dt.datetime, end: dt.datetime) -> list[Interval]:
    """Clip intervals to ``[start, end)`` and merge those that overlap or touch, sorted by start."""
    clipped = sorted((max(opens, start), min(closes, end)) for opens, closes in intervals)
    merged: list[Interval] = []
    for opens, closes in clipped:
        if closes <= opens:
            continue
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return merged


def next_opening(cron: str, zone: ZoneInfo, *, after: dt.datetime) -> dt.datetime:
    """Return the first start of a recurring window at or after ``after``, in UTC."""
    schedule = croniter(cron, (after - _LOOKBACK).astimezone(zone).replace(tzinfo=None))
    while True:
        wall_clock: dt.datetime = schedule.get_next(dt.datetime)
        opens = wall_clock.replace(tzinfo=zone).astimezone(dt.UTC)
        if opens >= after:
            return opens
