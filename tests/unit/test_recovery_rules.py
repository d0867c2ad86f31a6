"""The recovery ladder's decisions, the incident thresholds and availability, with a fake clock."""

from __future__ import annotations

import datetime as dt

import pytest

from hostcraft.domain.incidents import HealthTracker, observe
from hostcraft.domain.probes import RecoveryOptions
from hostcraft.domain.recovery import Situation, failing_node, next_action
from hostcraft.domain.uptime import availability, parse_window, subtract

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
OPTIONS = RecoveryOptions(step_timeout_seconds=60, cooldown_seconds=30, max_actions_per_hour=3)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("situation", "action"),
    [
        (Situation(auto_restart=True, auto_rollback=True), "restart"),
        (Situation(auto_restart=False, auto_rollback=True), "none"),
        (Situation(auto_restart=True, auto_rollback=True, in_maintenance=True), "none"),
        (Situation(auto_restart=True, auto_rollback=True, deployment_running=True), "wait"),
        (Situation(auto_restart=True, auto_rollback=True, gave_up=True), "none"),
        (
            Situation(
                auto_restart=True, auto_rollback=True, rungs_taken=("restart",), last_action_at=at(-10)
            ),
            "wait",
        ),
        (
            Situation(
                auto_restart=True,
                auto_rollback=True,
                rungs_taken=("restart",),
                last_action_at=at(-61),
                failing_node="n2",
            ),
            "move",
        ),
        (
            Situation(
                auto_restart=True, auto_rollback=True, rungs_taken=("restart",), last_action_at=at(-61)
            ),
            "give_up",
        ),
        (
            Situation(
                auto_restart=True,
                auto_rollback=True,
                rungs_taken=("restart",),
                last_action_at=at(-61),
                began_after_deployment=True,
                rollback_target=7,
            ),
            "rollback",
        ),
        (
            Situation(
                auto_restart=True,
                auto_rollback=False,
                rungs_taken=("restart",),
                last_action_at=at(-61),
                began_after_deployment=True,
                rollback_target=7,
            ),
            "give_up",
        ),
        (
            Situation(
                auto_restart=True,
                auto_rollback=True,
                rungs_taken=("restart", "move"),
                last_action_at=at(-61),
                began_after_deployment=True,
                rollback_target=7,
                failing_node="n2",
            ),
            "rollback",
        ),
        (
            Situation(
                auto_restart=True,
                auto_rollback=True,
                rungs_taken=("restart", "move", "rollback"),
                last_action_at=at(-61),
            ),
            "give_up",
        ),
        (Situation(auto_restart=True, auto_rollback=True, actions_in_last_hour=3), "give_up"),
    ],
)
def test_ladder_next_action(situation: Situation, action: str) -> None:
    assert next_action(situation, OPTIONS, now=T0).action == action


def test_ladder_gives_reason_for_skipped_rungs() -> None:
    decision = next_action(
        Situation(auto_restart=True, auto_rollback=True, rungs_taken=("restart",), last_action_at=at(-120)),
        OPTIONS,
        now=T0,
    )
    assert decision.action == "give_up"
    assert any("do not concentrate" in item for item in decision.skipped)
    assert any("did not begin after a deployment" in item for item in decision.skipped)


def test_cap_reason_names_the_cap() -> None:
    decision = next_action(
        Situation(auto_restart=True, auto_rollback=True, actions_in_last_hour=3), OPTIONS, now=T0
    )
    assert "cap of 3" in decision.reason


def test_tracker_threshold_and_damping() -> None:
    tracker = HealthTracker()
    results = [True, False, False, False, True, False, True, True]
    transitions = [
        observe(tracker, ok=ok, at=at(index), failures_to_open=3, successes_to_resolve=2)
        for index, ok in enumerate(results)
    ]
    opened = [(index, item) for index, item in enumerate(transitions) if item is not None]
    assert [(index, item.kind, item.at) for index, item in opened] == [
        (3, "open", at(1)),
        (7, "resolve", at(6)),
    ]


def task(node: str, state: str, seconds: float) -> dict[str, object]:
    stamp = (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
    return {"NodeID": node, "Status": {"State": state, "Timestamp": stamp}}


def test_failing_node_found_when_failures_concentrate() -> None:
    tasks = [
        task("n1", "failed", 10),
        task("n1", "failed", 20),
        task("n1", "running", 30),
        task("n2", "running", 5),
    ]
    assert failing_node(tasks, since=T0) == "n1"


@pytest.mark.parametrize(
    "tasks",
    [
        [task("n1", "failed", 10), task("n2", "running", 5)],  # one failure only
        [
            task("n1", "failed", 10),
            task("n1", "failed", 20),
            task("n2", "failed", 15),
            task("n2", "failed", 16),
        ],
        [task("n1", "failed", 10), task("n1", "failed", 20)],  # no other node to go to
        [
            task("n1", "failed", -100),
            task("n1", "failed", -50),
            task("n2", "running", 5),
        ],  # before the window
    ],
)
def test_failing_node_none_without_concentration(tasks: list[dict[str, object]]) -> None:
    assert failing_node(tasks, since=T0) is None


def test_availability_is_time_weighted() -> None:
    day = dt.timedelta(days=1)
    figures = availability(
        incidents=[(at(0), at(864))],
        maintenance=[],
        monitored_since=T0 - day,
        window_start=at(864) - day,
        window_end=at(864),
        target_percent=99.9,
    )
    assert figures.downtime_seconds == 864
    assert figures.availability_percent == pytest.approx(99.0)
    assert figures.meets_target is False
    assert figures.error_budget_remaining_seconds == pytest.approx(86.4 - 864)


def test_availability_excludes_maintenance_and_counts_open_incidents() -> None:
    figures = availability(
        incidents=[(at(0), at(3600)), (at(5000), at(999999))],
        maintenance=[(at(1800), at(3600))],
        monitored_since=at(-3600),
        window_start=at(-3600),
        window_end=at(7200),
        target_percent=99.0,
    )
    assert figures.maintenance_seconds == 1800
    assert figures.downtime_seconds == 1800 + 2200
    assert figures.measured_seconds == 10800 - 1800


def test_availability_starts_when_monitoring_began() -> None:
    figures = availability(
        incidents=[],
        maintenance=[],
        monitored_since=at(0),
        window_start=at(-86400),
        window_end=at(3600),
        target_percent=99.9,
    )
    assert figures.measured_seconds == 3600
    assert figures.availability_percent == 100.0


def test_subtract_splits_intervals() -> None:
    assert subtract([(at(0), at(10))], [(at(2), at(3)), (at(5), at(6))]) == [
        (at(0), at(2)),
        (at(3), at(5)),
        (at(6), at(10)),
    ]


@pytest.mark.parametrize(("text", "hours"), [("24h", 24), ("7d", 168), ("30d", 720), ("90d", 2160)])
def test_parse_window(text: str, hours: int) -> None:
    assert parse_window(text) == dt.timedelta(hours=hours)


@pytest.mark.parametrize("text", ["", "0d", "30", "1w", "400d", "-1d"])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid window"):
        parse_window(text)
