"""Backup schedules and retention, with a controlled clock."""

from __future__ import annotations

import datetime as dt

import pytest

from hostcraft.domain.backup_policy import BackupRecord, RetentionPolicy, decide, expired_backups, next_run

UTC = dt.UTC
WEDNESDAY = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SUNDAY_3AM = dt.datetime(2024, 5, 5, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize("expression", ["0 3 * * 7", "0 3 * * 0", "0 3 * * SUN"])
def test_sunday_spellings_run_sunday_3am(expression: str) -> None:
    assert next_run(expression, "UTC", after=WEDNESDAY) == SUNDAY_3AM


@pytest.mark.parametrize("expression", ["0 3 * * 7", "0 3 * * 0", "0 3 * * SUN"])
def test_sunday_schedule_runs_once_per_week(expression: str) -> None:
    runs = []
    moment = WEDNESDAY
    for _ in range(3):
        moment = next_run(expression, "UTC", after=moment)
        runs.append(moment)
    assert [run - runs[0] for run in runs] == [dt.timedelta(0), dt.timedelta(days=7), dt.timedelta(days=14)]


def test_friday_to_sunday_range_includes_sunday() -> None:
    moment, days = WEDNESDAY, []
    for _ in range(4):
        moment = next_run("0 3 * * 5-7", "UTC", after=moment)
        days.append(moment.strftime("%a %d"))
    assert days == ["Fri 03", "Sat 04", "Sun 05", "Fri 10"]


def test_schedule_reads_time_zone() -> None:
    berlin_3am = dt.datetime(2024, 5, 5, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert next_run("0 3 * * 0", "Europe/Berlin", after=WEDNESDAY) == berlin_3am


def test_missed_slots_run_once_and_next_is_future() -> None:
    due = SUNDAY_3AM
    now = SUNDAY_3AM + dt.timedelta(days=22)  # three Sundays missed during downtime
    first = decide("0 3 * * 7", "UTC", next_run_at=due, now=now)
    assert first.run_now is True
    assert first.next_run_at > now
    second = decide("0 3 * * 7", "UTC", next_run_at=first.next_run_at, now=now + dt.timedelta(minutes=1))
    assert second.run_now is False


def test_new_schedule_waits_for_first_slot() -> None:
    decision = decide("0 3 * * 7", "UTC", next_run_at=None, now=WEDNESDAY)
    assert decision.run_now is False
    assert decision.next_run_at == SUNDAY_3AM


def _records(*statuses: str, start: dt.datetime = WEDNESDAY) -> list[BackupRecord]:
    return [
        BackupRecord(id=i + 1, status=s, taken_at=start + dt.timedelta(hours=i))
        for i, s in enumerate(statuses)
    ]


def test_failed_attempts_do_not_count_toward_keep_last() -> None:
    records = _records("succeeded", "failed", "failed")
    policy = RetentionPolicy(retention_days=1, keep_last=2)
    assert expired_backups(records, policy, now=WEDNESDAY + dt.timedelta(days=90)) == []


def test_newest_success_survives_expired_retention() -> None:
    records = _records("succeeded", "succeeded", "failed")
    policy = RetentionPolicy(retention_days=1)
    assert expired_backups(records, policy, now=WEDNESDAY + dt.timedelta(days=90)) == [1]


def test_keep_last_keeps_newest_successes() -> None:
    records = _records("succeeded", "succeeded", "succeeded", "failed", "succeeded")
    policy = RetentionPolicy(retention_days=1, keep_last=2)
    assert sorted(expired_backups(records, policy, now=WEDNESDAY + dt.timedelta(days=90))) == [1, 2]


def test_keep_daily_keeps_newest_of_each_day() -> None:
    records = [
        BackupRecord(1, "succeeded", WEDNESDAY),
        BackupRecord(2, "succeeded", WEDNESDAY + dt.timedelta(hours=2)),
        BackupRecord(3, "succeeded", WEDNESDAY + dt.timedelta(days=1)),
    ]
    policy = RetentionPolicy(retention_days=1, keep_daily=2)
    assert expired_backups(records, policy, now=WEDNESDAY + dt.timedelta(days=90)) == [1]


def test_recent_backups_kept_by_retention_days() -> None:
    records = _records("succeeded", "succeeded", "succeeded")
    assert (
        expired_backups(records, RetentionPolicy(retention_days=30), now=WEDNESDAY + dt.timedelta(days=1))
        == []
    )
