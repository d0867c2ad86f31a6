"""Pure backup rules: when a schedule runs next, and which backups retention expires.

The clock is always passed in, so both rules are tested with a controlled clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from croniter import croniter


def next_run(expression: str, timezone: str, *, after: dt.datetime) -> dt.datetime:
    """Return the first time strictly after ``after`` that ``expression`` names, in UTC.

    The expression is read in ``timezone`` (IANA), so ``0 3 * * *`` means 03:00 local time
    across daylight-saving changes. Day of week 0 and 7 both mean Sunday.
    """
    local = after.astimezone(ZoneInfo(timezone))
    upcoming: dt.datetime = croniter(expression, local).get_next(dt.datetime)
    return upcoming.astimezone(dt.UTC)


@dataclass(frozen=True)
class ScheduleDecision:
    run_now: bool
    next_run_at: dt.datetime


def decide(
    expression: str, timezone: str, *, next_run_at: dt.datetime | None, now: dt.datetime
) -> ScheduleDecision:
    """Decide whether a schedule runs now and when it runs next.

    A schedule whose due time has passed runs once, however many slots were missed while
    HostCraft was down, and its next run is the first slot after ``now``, never in the past.
    """
    if next_run_at is None:
        return ScheduleDecision(run_now=False, next_run_at=next_run(expression, timezone, after=now))
    if next_run_at <= now:
        return ScheduleDecision(run_now=True, next_run_at=next_run(expression, timezone, after=now))
    return ScheduleDecision(run_now=False, next_run_at=next_run_at)


@dataclass(frozen=True)
class RetentionPolicy:
    retention_days: int = 30
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None


@dataclass(frozen=True)
class BackupRecord:
    id: int
    status: str
    taken_at: dt.datetime


def expired_backups(records: list[BackupRecord], policy: RetentionPolicy, *, now: dt.datetime) -> list[int]:
    """Return the ids of succeeded backups that no retention rule keeps.

    Only succeeded backups count toward keep-last and the daily/weekly/monthly buckets, so
    failed attempts never push a good backup out. The newest succeeded backup is always kept.
    Backups in other states are never returned.
    """
    good = sorted(
        (r for r in records if r.status == "succeeded"), key=lambda r: (r.taken_at, r.id), reverse=True
    )
    if not good:
        return []
    kept = {good[0].id}
    cutoff = now - dt.timedelta(days=policy.retention_days)
    kept |= {record.id for record in good if record.taken_at >= cutoff}
    if policy.keep_last:
        kept |= {record.id for record in good[: policy.keep_last]}
    for count, bucket in (
        (policy.keep_daily, _day),
        (policy.keep_weekly, _week),
        (policy.keep_monthly, _month),
    ):
        if count:
            kept |= _newest_per_bucket(good, count, bucket)
    return [record.id for record in good if record.id not in kept]


def _newest_per_bucket(good: list[BackupRecord], count: int, bucket: object) -> set[int]:
    seen: dict[object, int] = {}
    for record in good:  # newest first, so the first of each bucket is its newest backup
        key = bucket(record.taken_at)  # type: ignore[operator]
        if key not in seen:
            if len(seen) == count:
                break
            seen[key] = record.id
    return set(seen.values())


def _day(moment: dt.datetime) -> tuple[int, int, int]:
    return (moment.year, moment.month, moment.day)


def _week(moment: dt.datetime) -> tuple[int, int]:
    iso = moment.isocalendar()
    return (iso.year, iso.week)


def _month(moment: dt.datetime) -> tuple[int, int]:
    return (moment.year, moment.month)
