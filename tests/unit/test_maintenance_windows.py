"""Maintenance window arithmetic: cron windows in IANA zones across DST changes, merging, clipping."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from hostcraft.domain.maintenance import (
    check_cron,
    clip_and_merge,
    load_zone,
    next_opening,
    recurring_intervals,
)

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# Europe/Berlin 2026: clocks jump 02:00 CET -> 03:00 CEST on 29 March (01:00 UTC) and fall back
# 03:00 CEST -> 02:00 CET on 25 October (01:00 UTC).
CASES = [
    # cron, minutes, range start, range end, expected (opens, closes) in UTC
    ("0 1 * * *", 180, "2026-03-29T00:00", "2026-03-29T12:00", [("2026-03-29T00:00", "2026-03-29T03:00")]),
    ("30 2 * * *", 60, "2026-03-29T00:00", "2026-03-29T12:00", [("2026-03-29T01:30", "2026-03-29T02:30")]),
    ("30 2 * * *", 60, "2026-10-24T12:00", "2026-10-25T12:00", [("2026-10-25T00:30", "2026-10-25T01:30")]),
    ("30 1 25 10 *", 120, "2026-10-24T12:00", "2026-10-25T12:00", [("2026-10-24T23:30", "2026-10-25T01:30")]),
    (
        "0 22 * * *",
        60,
        "2026-03-28T00:00",
        "2026-03-30T00:00",
        [("2026-03-28T21:00", "2026-03-28T22:00"), ("2026-03-29T20:00", "2026-03-29T21:00")],
    ),
    (
        "0 3 * * SUN",
        30,
        "2026-03-23T00:00",
        "2026-04-06T00:00",
        [
            ("2026-03-29T01:00", "2026-03-29T01:30"),
            ("2026-04-05T01:00", "2026-04-05T01:30"),
        ],
    ),
]


@pytest.mark.parametrize(("cron", "minutes", "start", "end", "expected"), CASES)
def test_recurring_window_across_dst(
    cron: str, minutes: int, start: str, end: str, expected: list[tuple[str, str]]
) -> None:
    intervals = recurring_intervals(
        cron, dt.timedelta(minutes=minutes), BERLIN, start=utc(start), end=utc(end)
    )

    assert intervals == [(utc(opens), utc(closes)) for opens, closes in expected]


def test_window_started_before_range_overlaps_it() -> None:
    intervals = recurring_intervals(
        "0 23 * * *", dt.timedelta(hours=4), UTC, start=utc("2026-01-02T01:00"), end=utc("2026-01-02T02:00")
    )

    assert intervals == [(utc("2026-01-01T23:00"), utc("2026-01-02T03:00"))]


def test_clip_and_merge_joins_overlapping_and_touching() -> None:
    merged = clip_and_merge(
        [
            (utc("2026-01-01T05:00"), utc("2026-01-01T06:00")),
            (utc("2026-01-01T00:00"), utc("2026-01-01T02:00")),
            (utc("2026-01-01T01:00"), utc("2026-01-01T03:00")),
            (utc("2026-01-01T03:00"), utc("2026-01-01T04:00")),
            (utc("2026-01-01T09:00"), utc("2026-01-01T12:00")),
        ],
        start=utc("2026-01-01T00:30"),
        end=utc("2026-01-01T10:00"),
    )

    assert merged == [
        (utc("2026-01-01T00:30"), utc("2026-01-01T04:00")),
        (utc("2026-01-01T05:00"), utc("2026-01-01T06:00")),
        (utc("2026-01-01T09:00"), utc("2026-01-01T10:00")),
    ]


def test_clip_drops_intervals_outside_range() -> None:
    merged = clip_and_merge(
        [(utc("2026-01-01T00:00"), utc("2026-01-01T01:00"))],
        start=utc("2026-01-01T02:00"),
        end=utc("2026-01-01T03:00"),
    )

    assert merged == []


def test_next_opening_after_dst_change() -> None:
    after = utc("2026-03-28T12:00")

    assert next_opening("30 2 * * *", BERLIN, after=after) == utc("2026-03-29T01:30")
    assert next_opening("30 2 * * *", BERLIN, after=utc("2026-03-29T01:30")) == utc("2026-03-29T01:30")


@pytest.mark.parametrize("expression", ["0 2 * *", "0 2 * * * *", "61 2 * * *", "0 2 * * MON-XYZ", ""])
def test_invalid_cron_is_rejected(expression: str) -> None:
    with pytest.raises(ValueError, match="invalid cron expression"):
        check_cron(expression)


@pytest.mark.parametrize("name", ["Europe/Atlantis", "CET+99", "../etc/passwd", ""])
def test_unknown_zone_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        load_zone(name)
