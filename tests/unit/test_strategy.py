from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from hostcraft.domain.strategy import (
    Healthcheck,
    Strategy,
    format_duration,
    parse_duration,
    parse_strategy,
    plan_updates,
)
from hostcraft.errors import ValidationError

NS = 1_000_000_000
CHECK = Healthcheck(
    test=["CMD", "true"], interval_seconds=10, timeout_seconds=5, retries=3, start_period_seconds=0
)
NO_CHECK_ROLLBACK = (
    "The application sets no healthcheck, so unless the image defines a HEALTHCHECK, Swarm detects only "
    "tasks that exit, not tasks that keep running while unhealthy. Monitor is 30s so that a task exiting "
    "soon after it starts is rolled back. Add a healthcheck to roll back unhealthy tasks too."
)
CONTINUE = (
    "FailureAction is continue instead of Swarm's default pause, because rollbackOnFailure is false and a "
    "paused update leaves the service half updated. HostCraft reports failed tasks, but Swarm does not "
    "roll them back."
)
SINGLE_REPLICA_START_FIRST = (
    "The update order is start-first instead of stop-first (maxSurge 0), because with 1 replica stop-first "
    "stops the only task before its replacement starts and the app would be down during every update."
)


def update_config(
    *, parallelism: int = 1, delay: float = 10, action: str = "rollback", monitor: float = 45, order: str
) -> dict[str, Any]:
    return {
        "Parallelism": parallelism,
        "Delay": round(delay * NS),
        "FailureAction": action,
        "Monitor": round(monitor * NS),
        "MaxFailureRatio": 0.0,
        "Order": order,
    }


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("100ns", 0.0000001),
        ("0s", 0.0),
        (10, 10.0),
        (0, 0.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_accepts(value: str | float, seconds: float) -> None:
    assert parse_duration(value, field="strategy.updateDelay") == seconds


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("10", 'add a unit, e.g. "10s"'),
        ("", "expected a duration"),
        ("-1s", "expected a duration"),
        ("10 s", "expected a duration"),
        (" 10s", "expected a duration"),
        ("1d", "expected a duration"),
        ("s", "expected a duration"),
        ("1e3s", "expected a duration"),
        ("ten seconds", "expected a duration"),
        (True, "expected a duration"),
        ([10], "expected a duration"),
        (-1, "at least 0"),
        (math.nan, "at least 0"),
        (math.inf, "at least 0"),
        ("999999999h", "longer than the Engine API can store"),
    ],
)
def test_parse_duration_rejects(value: Any, fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_duration(value, field="strategy.updateDelay")
    assert caught.value.field == "strategy.updateDelay"
    assert caught.value.message.startswith(f"invalid updateDelay {value!r}")
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (10, "10s"),
        (90, "1m30s"),
        (0.5, "500ms"),
        (1.5, "1s500ms"),
        (3600, "1h"),
        (5400, "1h30m"),
        (0.00025, "250us"),
        (0.0000001, "100ns"),
    ],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text, field="x") == seconds


# --- parse_strategy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {},
        {
            "type": None,
            "maxUnavailable": None,
            "maxSurge": None,
            "updateDelay": None,
            "rollbackOnFailure": None,
        },
        {
            "type": "rolling",
            "maxUnavailable": 1,
            "maxSurge": 1,
            "updateDelay": "10s",
            "rollbackOnFailure": True,
        },
        {"updateDelay": 10},
    ],
)
def test_strategy_defaults(raw: dict[str, Any] | None) -> None:
    assert parse_strategy(raw) == Strategy(
        type="rolling", max_unavailable=1, max_surge=1, update_delay_seconds=10.0, rollback_on_failure=True
    )


def test_strategy_instance_passes_through() -> None:
    strategy = Strategy(max_unavailable=2)
    assert parse_strategy(strategy) is strategy


def test_strategy_must_be_an_object() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_strategy("rolling")  # type: ignore[arg-type]
    assert caught.value.field == "strategy"
    assert caught.value.message == (
        "invalid strategy 'rolling': expected an object such as "
        '{"type": "rolling", "maxUnavailable": 1, "maxSurge": 1, "updateDelay": "10s", '
        '"rollbackOnFailure": true}'
    )


def test_strategy_reads_every_field() -> None:
    raw = {
        "type": "rolling",
        "maxUnavailable": 2,
        "maxSurge": 0,
        "updateDelay": "1m30s",
        "rollbackOnFailure": False,
    }
    strategy = parse_strategy(raw)
    assert strategy == Strategy(
        max_unavailable=2, max_surge=0, update_delay_seconds=90.0, rollback_on_failure=False
    )
    assert strategy.to_dict() == {**raw, "updateDelay": "1m30s"}
    assert parse_strategy(strategy.to_dict()) == strategy


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"type": "canary"}, "strategy.type", "blue-green and canary deployments are not supported yet"),
        ({"type": "blue-green"}, "strategy.type", "blue-green and canary deployments are not supported yet"),
        ({"type": "recreate"}, "strategy.type", "unknown strategy type 'recreate': expected 'rolling'"),
        (
            {"maxUnavailable": 0},
            "strategy.maxUnavailable",
            "invalid maxUnavailable 0: expected an integer of at least 1",
        ),
        ({"maxUnavailable": -1}, "strategy.maxUnavailable", "invalid maxUnavailable -1"),
        ({"maxUnavailable": 1.5}, "strategy.maxUnavailable", "invalid maxUnavailable 1.5"),
        ({"maxUnavailable": True}, "strategy.maxUnavailable", "invalid maxUnavailable True"),
        ({"maxUnavailable": "1"}, "strategy.maxUnavailable", "invalid maxUnavailable '1'"),
        ({"maxSurge": -1}, "strategy.maxSurge", "invalid maxSurge -1: expected 0 to stop old tasks first"),
        ({"maxSurge": False}, "strategy.maxSurge", "invalid maxSurge False"),
        ({"maxSurge": "1"}, "strategy.maxSurge", "invalid maxSurge '1'"),
        ({"updateDelay": "soon"}, "strategy.updateDelay", "invalid updateDelay 'soon'"),
        ({"updateDelay": "10"}, "strategy.updateDelay", 'add a unit, e.g. "10s"'),
        ({"rollbackOnFailure": "yes"}, "strategy.rollbackOnFailure", "expected true or false"),
        ({"rollbackOnFailure": 1}, "strategy.rollbackOnFailure", "expected true or false"),
        ({"maxSurg": 1}, "strategy.maxSurg", "unknown field 'maxSurg'"),
        ("rolling", "strategy", "expected an object"),
    ],
)
def test_strategy_rejects(raw: Any, field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_strategy(raw)
    assert caught.value.field == field
    assert fragment in caught.value.message
    assert caught.value.details["problems"][0]["field"] == field


def test_strategy_collects_every_problem() -> None:
    raw = {
        "type": "canary",
        "maxUnavailable": 0,
        "maxSurge": -1,
        "updateDelay": "x",
        "rollbackOnFailure": "no",
        "a": 1,
    }
    with pytest.raises(ValidationError) as caught:
        parse_strategy(raw)
    fields = [problem["field"] for problem in caught.value.details["problems"]]
    assert fields == [
        "strategy.a",
        "strategy.type",
        "strategy.maxUnavailable",
        "strategy.maxSurge",
        "strategy.updateDelay",
        "strategy.rollbackOnFailure",
    ]
    assert caught.value.field == "strategy.a"
    assert "(5 more in details.problems)" in caught.value.message


@pytest.mark.parametrize(
    "arguments",
    [
        {"max_unavailable": 0},
        {"max_surge": -1},
        {"update_delay_seconds": -1.0},
        {"update_delay_seconds": math.inf},
    ],
)
def test_strategy_constructor_rejects_invalid(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Strategy(**arguments)


# --- plan_updates ----------------------------------------------------------------------------


def test_healthcheck_detection_time() -> None:
    check = Healthcheck(
        test=["CMD", "x"], interval_seconds=10, timeout_seconds=5, retries=3, start_period_seconds=60
    )
    assert check.detection_seconds() == 60 + 3 * (10 + 5)


PLAN_CASES: list[
    tuple[str, Strategy, Healthcheck | None, int, tuple[str, ...], dict[str, Any], list[str]]
] = [
    (
        "defaults with a healthcheck",
        Strategy(),
        CHECK,
        3,
        (),
        update_config(order="start-first"),
        [],
    ),
    (
        "maxSurge 0 is stop-first",
        Strategy(max_surge=0),
        CHECK,
        3,
        (),
        update_config(order="stop-first"),
        [],
    ),
    (
        "maxUnavailable becomes parallelism",
        Strategy(max_unavailable=2, max_surge=0),
        CHECK,
        5,
        (),
        update_config(parallelism=2, order="stop-first"),
        [],
    ),
    (
        "updateDelay becomes delay",
        Strategy(update_delay_seconds=0.5),
        CHECK,
        3,
        (),
        update_config(delay=0.5, order="start-first"),
        [],
    ),
    (
        "one replica with maxSurge 0 switches to start-first",
        Strategy(max_surge=0),
        CHECK,
        1,
        (),
        update_config(order="start-first"),
        [SINGLE_REPLICA_START_FIRST],
    ),
    (
        "stop-first of every replica at once is lowered",
        Strategy(max_unavailable=3, max_surge=0),
        CHECK,
        3,
        (),
        update_config(parallelism=2, order="stop-first"),
        [
            "Parallelism is 2 instead of 3 (maxUnavailable), because stop-first with a parallelism of 3 and "
            "3 replicas stops every task at once and the app would be down during the update."
        ],
    ),
    (
        "stop-first with parallelism above replicas is lowered",
        Strategy(max_unavailable=5, max_surge=0),
        CHECK,
        2,
        (),
        update_config(parallelism=1, order="stop-first"),
        [
            "Parallelism is 1 instead of 5 (maxUnavailable), because stop-first with a parallelism of 5 and "
            "2 replicas stops every task at once and the app would be down during the update."
        ],
    ),
    (
        "maxSurge below parallelism is raised",
        Strategy(max_unavailable=2, max_surge=1),
        CHECK,
        5,
        (),
        update_config(parallelism=2, order="start-first"),
        [
            "maxSurge 1 is raised to 2, because Swarm's start-first order starts one batch of Parallelism 2 "
            "(maxUnavailable) new tasks before it stops old ones. Set maxUnavailable to 1 to run at most "
            "1 extra task."
        ],
    ),
    (
        "maxSurge above parallelism is capped",
        Strategy(max_unavailable=1, max_surge=3),
        CHECK,
        5,
        (),
        update_config(order="start-first"),
        [
            "maxSurge 3 is capped to 1, because Swarm's start-first order starts one batch of Parallelism 1 "
            "(maxUnavailable) new tasks before it stops old ones. Set maxUnavailable to 3 to start 3 extra "
            "tasks at a time."
        ],
    ),
    (
        "maxSurge equal to parallelism needs no correction",
        Strategy(max_unavailable=3, max_surge=3),
        CHECK,
        5,
        (),
        update_config(parallelism=3, order="start-first"),
        [],
    ),
    (
        "maxSurge above the replicas needs no correction",
        Strategy(max_unavailable=1, max_surge=2),
        CHECK,
        1,
        (),
        update_config(order="start-first"),
        [],
    ),
    (
        "rollbackOnFailure false continues, never pauses",
        Strategy(rollback_on_failure=False),
        CHECK,
        3,
        (),
        update_config(action="continue", order="start-first"),
        [CONTINUE],
    ),
    (
        "no healthcheck watches 30s for exits",
        Strategy(),
        None,
        3,
        (),
        update_config(monitor=30, order="start-first"),
        [NO_CHECK_ROLLBACK],
    ),
    (
        "disabled healthcheck watches 30s for exits",
        Strategy(),
        Healthcheck(
            test=["NONE"], interval_seconds=30, timeout_seconds=10, retries=3, start_period_seconds=0
        ),
        3,
        (),
        update_config(monitor=30, order="start-first"),
        [
            "The healthcheck is disabled (NONE), so Swarm detects only tasks that exit, not tasks that keep "
            "running while unhealthy. Monitor is 30s so that a task exiting soon after it starts is rolled "
            "back. Add a healthcheck to roll back unhealthy tasks too."
        ],
    ),
    (
        "no healthcheck without rollback notes only the failure action",
        Strategy(rollback_on_failure=False),
        None,
        3,
        (),
        update_config(action="continue", monitor=30, order="start-first"),
        [CONTINUE],
    ),
    (
        "monitor covers a long delay",
        Strategy(update_delay_seconds=120),
        CHECK,
        3,
        (),
        update_config(delay=120, monitor=120, order="start-first"),
        [],
    ),
    (
        "monitor without healthcheck covers a long delay",
        Strategy(update_delay_seconds=90),
        None,
        3,
        (),
        update_config(delay=90, monitor=90, order="start-first"),
        [NO_CHECK_ROLLBACK.replace("Monitor is 30s", "Monitor is 1m30s")],
    ),
    (
        "monitor covers the start period",
        Strategy(),
        Healthcheck(
            test=["CMD", "x"], interval_seconds=10, timeout_seconds=5, retries=3, start_period_seconds=60
        ),
        3,
        (),
        update_config(monitor=105, order="start-first"),
        [],
    ),
    (
        "monitor has a floor of 5s",
        Strategy(update_delay_seconds=0),
        Healthcheck(
            test=["CMD", "x"], interval_seconds=1, timeout_seconds=0.5, retries=1, start_period_seconds=0
        ),
        3,
        (),
        update_config(delay=0, monitor=5, order="start-first"),
        [],
    ),
    (
        "a local volume makes start-first stop-first",
        Strategy(),
        CHECK,
        1,
        ("volume data (local driver)",),
        update_config(order="stop-first"),
        [
            "The update order is stop-first instead of start-first (maxSurge 1), because a new task would "
            "start while the old one still holds volume data (local driver), which two tasks must not use "
            "at the same time. The app is down while its only task is replaced."
        ],
    ),
    (
        "a local volume keeps stop-first with one replica",
        Strategy(max_surge=0),
        CHECK,
        1,
        ("volume data (local driver)",),
        update_config(order="stop-first"),
        [
            "The update order stays stop-first (maxSurge 0), because the task holds volume data (local "
            "driver), which two tasks must not use at the same time. The app is down while its only task "
            "is replaced."
        ],
    ),
    (
        "a host port with several replicas is stop-first and keeps one task serving",
        Strategy(max_unavailable=3),
        CHECK,
        3,
        ("host port 8080/tcp",),
        update_config(parallelism=2, order="stop-first"),
        [
            "The update order is stop-first instead of start-first (maxSurge 1), because a new task would "
            "start while the old one still holds host port 8080/tcp, which two tasks must not use at the "
            "same time.",
            "Parallelism is 2 instead of 3 (maxUnavailable), because stop-first with a parallelism of 3 and "
            "3 replicas stops every task at once and the app would be down during the update.",
        ],
    ),
    (
        "zero replicas keep start-first without notes",
        Strategy(),
        CHECK,
        0,
        (),
        update_config(order="start-first"),
        [],
    ),
    (
        "zero replicas keep stop-first without notes",
        Strategy(max_surge=0, max_unavailable=4),
        CHECK,
        0,
        (),
        update_config(parallelism=4, order="stop-first"),
        [],
    ),
]


@pytest.mark.parametrize(
    ("strategy", "healthcheck", "replicas", "exclusive", "expected_update", "expected_corrections"),
    [case[1:] for case in PLAN_CASES],
    ids=[case[0] for case in PLAN_CASES],
)
def test_plan_updates(
    strategy: Strategy,
    healthcheck: Healthcheck | None,
    replicas: int,
    exclusive: tuple[str, ...],
    expected_update: dict[str, Any],
    expected_corrections: list[str],
) -> None:
    plan = plan_updates(strategy, healthcheck, replicas=replicas, exclusive_resources=exclusive)
    assert plan.update_config == expected_update
    assert plan.rollback_config == {
        **expected_update,
        "Delay": 0,
        "FailureAction": "continue",
    }
    assert plan.corrections == expected_corrections


@pytest.mark.parametrize(
    ("max_unavailable", "max_surge", "delay", "rollback", "check", "replicas", "exclusive"),
    list(
        itertools.product(
            [1, 2, 5],
            [0, 1, 3],
            [0.0, 10.0, 300.0],
            [True, False],
            [None, CHECK],
            [0, 1, 2, 3, 10],
            [(), ("volume data (local driver)",)],
        )
    ),
)
def test_plan_invariants_hold(
    max_unavailable: int,
    max_surge: int,
    delay: float,
    rollback: bool,
    check: Healthcheck | None,
    replicas: int,
    exclusive: tuple[str, ...],
) -> None:
    strategy = Strategy(
        max_unavailable=max_unavailable,
        max_surge=max_surge,
        update_delay_seconds=delay,
        rollback_on_failure=rollback,
    )
    plan = plan_updates(strategy, check, replicas=replicas, exclusive_resources=exclusive)
    update, rollback_config = plan.update_config, plan.rollback_config

    assert update["FailureAction"] != "pause"
    assert rollback_config["FailureAction"] == "continue"
    assert update["Parallelism"] >= 1
    assert update["Monitor"] >= update["Delay"]
    assert update["Monitor"] >= 5 * NS
    if check is not None:
        assert update["Monitor"] >= round(check.detection_seconds() * NS)
    else:
        assert update["Monitor"] >= 30 * NS
    if replicas > 1 and update["Order"] == "stop-first":
        assert update["Parallelism"] < replicas
    if replicas == 1 and not exclusive:
        assert update["Order"] == "start-first"
    if exclusive:
        assert update["Order"] == "stop-first"
    assert all(correction.endswith(".") for correction in plan.corrections)


def test_plan_rejects_negative_replicas() -> None:
    with pytest.raises(ValueError):
        plan_updates(Strategy(), CHECK, replicas=-1)
