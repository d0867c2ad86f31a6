"""Time-weighted availability from incident intervals, with maintenance excluded.

Availability over a window = 1 - downtime / measured time, where measured time is the part of
the window after monitoring began, minus maintenance, and downtime is the union of incident
intervals outside maintenance. Probe counts play no part: a probe every minute and a probe
every second give the same figure for the same outage.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

Interval = tuple[dt.datetime, dt.datetime]

WINDOWS = {
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
    "90d": dt.timedelta(days=90),
}
_WINDOW_PATTERN = re.compile(r"^(\d+)([hd])$")
MAX_WINDOW = dt.timedelta(days=366)


@dataclass(frozen=True)
class Availability:
    window_start: dt.datetime
    window_end: dt.datetime
    measured_seconds: float
    downtime_seconds: float
    maintenance_seconds: float
    target_percent: float

    @property
    def availability_percent(self) -> float | None:
        if self.measured_seconds <= 0:
            return None
        return 100.0 * (1 - self.downtime_seconds / self.measured_seconds)

    @property
    def allowed_downtime_seconds(self) -> float:
        return self.measured_seconds * (1 - self.target_percent / 100.0)

    @property
    def error_budget_remaining_seconds(self) -> float:
        return self.allowed_downtime_seconds - self.downtime_seconds

    @property
    def meets_target(self) -> bool | None:
        percent = self.availability_percent
        return None if percent is None else percent >= self.target_percent


def parse_window(value: str) -> dt.timedelta:
    """Parse ``24h``, ``7d``, ``30d``, ``90d`` or any ``<n>h``/``<n>d`` up to 366 days; raise ValueError."""
    match = _WINDOW_PATTERN.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"invalid window {value!r}: expected a number of hours or days such as 24h, 7d, 30d or 90d"
        )
    amount, unit = int(match.group(1)), match.group(2)
    window = dt.timedelta(hours=amount) if unit == "h" else dt.timedelta(days=amount)
    if window > MAX_WINDOW:
        raise ValueError(f"invalid window {value!r}: at most 366 days")
    return window


def merge(intervals: list[Interval]) -> list[Interval]:
    """Sort and merge overlapping or touching intervals; drop empty ones."""
    merged: list[Interval] = []
    for start, end in sorted(interval for interval in intervals if interval[1] > interval[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def clip(intervals: list[Interval], start: dt.datetime, end: dt.datetime) -> list[Interval]:
    return merge([(max(a, start), min(b, end)) for a, b in intervals])


def subtract(intervals: list[Interval], holes: list[Interval]) -> list[Interval]:
    """Return ``intervals`` minus every interval of ``holes``."""
    result: list[Interval] = []
    holes = merge(holes)
    for start, end in merge(intervals):
        cursor = start
        for hole_start, hole_end in holes:
            if hole_end <= cursor or hole_start >= end:
                continue
            if hole_start > cursor:
                result.append((cursor, hole_start))
            cursor = max(cursor, hole_end)
        if cursor < end:
            result.append((cursor, end))
    return result


def total_seconds(intervals: list[Interval]) -> float:
    return sum((end - start).total_seconds() for start, end in merge(intervals))


def availability(
    *,
    incidents: list[Interval],
    maintenance: list[Interval],
    monitored_since: dt.datetime,
    window_start: dt.datetime,
    window_end: dt.datetime,
    target_percent: float,
) -> Availability:
    """Compute the availability of one app over one window; open incidents end at ``window_end``."""
    start = max(window_start, monitored_since)
    if start >= window_end:
        return Availability(window_start, window_end, 0.0, 0.0, 0.0, target_percent)
    maintenance_in_window = clip(maintenance, start, window_end)
    downtime = subtract(clip(incidents, start, window_end), maintenance_in_window)
    maintenance_seconds = total_seconds(maintenance_in_window)
    measured = (window_end - start).total_seconds() - maintenance_seconds
    return Availability(
        window_start=window_start,
        window_end=window_end,
        measured_seconds=measured,
        downtime_seconds=total_seconds(downtime),
        maintenance_seconds=maintenance_seconds,
        target_percent=target_percent,
    )
