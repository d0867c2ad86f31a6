"""Deployment strategies and the Swarm ``UpdateConfig`` and ``RollbackConfig`` they become.

A rolling strategy is written the Kubernetes way (``maxUnavailable``, ``maxSurge``), but Swarm
replaces tasks in batches of ``Parallelism`` and orders each batch stop-first or start-first.
``plan_updates`` maps one onto the other and returns, next to the Engine API dicts, one sentence
per correction: what it changed and why. HostCraft never emits the failure action ``pause``,
because a paused update leaves the service half updated until someone notices.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hostcraft.errors import ValidationError

StrategyType = Literal["rolling"]
UpdateOrder = Literal["start-first", "stop-first"]
FailureAction = Literal["rollback", "continue"]

NS_PER_SECOND = 1_000_000_000

# Swarm's own default Monitor (swarmkit api/defaults), used as the minimum window with a healthcheck.
MONITOR_FLOOR_SECONDS = 5.0
# Without a healthcheck Swarm detects only tasks that exit. The 30 s window is an estimate, because
# apps that cannot reach a dependency usually give up and exit within tens of seconds.
MONITOR_FLOOR_WITHOUT_HEALTHCHECK_SECONDS = 30.0

_STRATEGY_FIELDS = ("type", "maxUnavailable", "maxSurge", "updateDelay", "rollbackOnFailure")
_UNSUPPORTED_TYPES = ("blue-green", "canary")

# Go's time.ParseDuration units, longest first so that "ms" is not read as minutes.
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": NS_PER_SECOND,
    "m": 60 * NS_PER_SECOND,
    "h": 3600 * NS_PER_SECOND,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION = re.compile(rf"(?:{_DURATION_PART.pattern})+")
_MAX_DURATION_NS = 2**63 - 1  # the Engine API stores durations as int64 nanoseconds


@dataclass(frozen=True)
class Healthcheck:
    """A container health check as Docker runs it. ``test == ["NONE"]`` disables the image's own check."""

    test: list[str]
    interval_seconds: float
    timeout_seconds: float
    retries: int
    start_period_seconds: float

    @property
    def disabled(self) -> bool:
        return self.test == ["NONE"]

    def detection_seconds(self) -> float:
        """Return the longest time from task start until Docker marks a failing task unhealthy.

        Failures during the start period do not count. After it, ``retries`` failed probes in a
        row are needed, and Docker starts each probe one interval after the previous one
        finished, which takes up to the timeout.
        """
        return self.start_period_seconds + self.retries * (self.interval_seconds + self.timeout_seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": list(self.test),
            "intervalSeconds": self.interval_seconds,
            "timeoutSeconds": self.timeout_seconds,
            "retries": self.retries,
            "startPeriodSeconds": self.start_period_seconds,
        }


@dataclass(frozen=True)
class Strategy:
    """A rolling deployment strategy, with the defaults that the API documents."""

    type: StrategyType = "rolling"
    max_unavailable: int = 1
    max_surge: int = 1
    update_delay_seconds: float = 10.0
    rollback_on_failure: bool = True

    def __post_init__(self) -> None:
        # parse_strategy reports these problems to users, so here they only guard code that builds a
        # Strategy directly.
        if self.max_unavailable < 1:
            raise ValueError(f"max_unavailable must be at least 1, not {self.max_unavailable}")
        if self.max_surge < 0:
            raise ValueError(f"max_surge must not be negative, not {self.max_surge}")
        if not (math.isfinite(self.update_delay_seconds) and self.update_delay_seconds >= 0):
            raise ValueError(f"update_delay_seconds must be finite and >= 0, not {self.update_delay_seconds}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "maxUnavailable": self.max_unavailable,
            "maxSurge": self.max_surge,
            "updateDelay": format_duration(self.update_delay_seconds),
            "rollbackOnFailure": self.rollback_on_failure,
        }


@dataclass
class UpdatePlan:
    """Engine API ``UpdateConfig`` and ``RollbackConfig`` and the corrections made to get them."""

    update_config: dict[str, Any]
    rollback_config: dict[str, Any]
    corrections: list[str] = field(default_factory=list)


def parse_duration(value: str | int | float, *, field: str) -> float:
    """Parse a Go-style duration ("10s", "1m30s", "500ms") or a number of seconds into seconds.

    The result is rounded to whole nanoseconds, the Engine API's unit. Negative durations are
    invalid, and ``field`` names the input in the ``ValidationError``.
    """
    expected = 'expected a duration such as "10s", "1m30s" or "500ms", or a number of seconds'
    name = field.rsplit(".", 1)[-1]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(f"invalid {name} {value!r}: {expected}", field=field)

    if isinstance(value, str):
        if not _DURATION.fullmatch(value):
            hint = f' (add a unit, e.g. "{value}s")' if re.fullmatch(r"\d+(\.\d+)?", value) else ""
            raise ValidationError(f"invalid {name} {value!r}: {expected}{hint}", field=field)
        nanoseconds = sum(
            round(float(number) * _UNIT_NS[unit]) for number, unit in _DURATION_PART.findall(value)
        )
    else:
        if not math.isfinite(value) or value < 0:
            raise ValidationError(
                f"invalid {name} {value!r}: expected a finite number of seconds of at least 0", field=field
            )
        nanoseconds = round(value * NS_PER_SECOND)

    if nanoseconds > _MAX_DURATION_NS:
        raise ValidationError(f"invalid {name} {value!r}: longer than the Engine API can store", field=field)
    return nanoseconds / NS_PER_SECOND


def format_duration(seconds: float) -> str:
    """Format seconds as a Go-style duration such as "1m30s" or "500ms", with zero as "0s"."""
    remaining = round(seconds * NS_PER_SECOND)
    parts = []
    for unit in ("h", "m", "s", "ms", "us", "ns"):
        count, remaining = divmod(remaining, _UNIT_NS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_strategy(raw: dict[str, Any] | Strategy | None) -> Strategy:
    """Validate the API's strategy object (camelCase keys). Missing or null fields take the defaults.

    Every problem is collected, and one ``ValidationError`` is raised whose ``field`` is the first
    problem's path and whose ``details["problems"]`` lists each ``{"field", "message"}``.
    """
    if raw is None:
        return Strategy()
    if isinstance(raw, Strategy):
        return raw
    if not isinstance(raw, dict):
        message = f"invalid strategy {raw!r}: expected an object such as {json.dumps(Strategy().to_dict())}"
        raise ValidationError(
            message, field="strategy", details={"problems": [{"field": "strategy", "message": message}]}
        )

    problems: list[dict[str, str]] = []
    for key in raw:
        if key not in _STRATEGY_FIELDS:
            problems.append(
                {
                    "field": f"strategy.{key}",
                    "message": f"unknown field {key!r}: expected one of {', '.join(_STRATEGY_FIELDS)}",
                }
            )

    values: dict[str, Any] = {}
    _parse_type(raw.get("type"), problems)
    _parse_count(raw.get("maxUnavailable"), "maxUnavailable", 1, "max_unavailable", values, problems)
    _parse_count(raw.get("maxSurge"), "maxSurge", 0, "max_surge", values, problems)
    if raw.get("updateDelay") is not None:
        try:
            values["update_delay_seconds"] = parse_duration(raw["updateDelay"], field="strategy.updateDelay")
        except ValidationError as exc:
            problems.append({"field": "strategy.updateDelay", "message": exc.message})
    rollback = raw.get("rollbackOnFailure")
    if rollback is not None:
        if isinstance(rollback, bool):
            values["rollback_on_failure"] = rollback
        else:
            problems.append(
                {
                    "field": "strategy.rollbackOnFailure",
                    "message": f"invalid rollbackOnFailure {rollback!r}: expected true or false",
                }
            )

    if problems:
        first = problems[0]
        more = f" ({len(problems) - 1} more in details.problems)" if len(problems) > 1 else ""
        raise ValidationError(
            f"{first['field']}: {first['message']}{more}",
            field=first["field"],
            details={"problems": problems},
        )
    return Strategy(**values)


def _parse_type(value: object, problems: list[dict[str, str]]) -> None:
    if value is None or value == "rolling":
        return
    if value in _UNSUPPORTED_TYPES:
        message = (
            f"unsupported strategy type {value!r}: blue-green and canary deployments are not "
            "supported yet, so use 'rolling'"
        )
    else:
        message = (
            f"unknown strategy type {value!r}: expected 'rolling' "
            "(blue-green and canary deployments are not supported yet)"
        )
    problems.append({"field": "strategy.type", "message": message})


def _parse_count(
    value: object,
    key: str,
    minimum: int,
    attribute: str,
    values: dict[str, Any],
    problems: list[dict[str, str]],
) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = (
            "an integer of at least 1, the number of tasks Swarm replaces at a time"
            if key == "maxUnavailable"
            else "0 to stop old tasks first, or a positive number of extra tasks to start first"
        )
        problems.append(
            {"field": f"strategy.{key}", "message": f"invalid {key} {value!r}: expected {expected}"}
        )
        return
    values[attribute] = value


def plan_updates(
    strategy: Strategy,
    healthcheck: Healthcheck | None,
    *,
    replicas: int,
    exclusive_resources: Sequence[str] = (),
) -> UpdatePlan:
    """Build the Engine API ``UpdateConfig`` and ``RollbackConfig`` of one application.

    ``maxUnavailable`` becomes ``Parallelism`` and ``maxSurge > 0`` the start-first order. Swarm's
    start-first order starts exactly one batch of ``Parallelism`` new tasks before it stops old
    ones, so a ``maxSurge`` above ``Parallelism`` cannot be expressed and is capped, and one below
    it is raised. Both are reported as corrections. ``exclusive_resources`` names what two tasks
    of the service must not hold at the same time, such as a node-local volume or a host-mode
    published port. With any of them the order is stop-first, even when that means downtime.
    """
    if replicas < 0:
        raise ValueError(f"replicas must not be negative, not {replicas}")
    corrections: list[str] = []

    order, parallelism = _choose_order(strategy, replicas, exclusive_resources, corrections)
    if order == "start-first" and strategy.max_surge > 0:
        _note_surge(strategy, parallelism, replicas, corrections)

    failure_action: FailureAction = "rollback" if strategy.rollback_on_failure else "continue"
    if not strategy.rollback_on_failure:
        corrections.append(
            "FailureAction is continue instead of Swarm's default pause, because rollbackOnFailure is "
            "false and a paused update leaves the service half updated. HostCraft reports failed "
            "tasks, but Swarm does not roll them back."
        )

    monitor_seconds = _monitor_seconds(strategy, healthcheck, corrections)
    update_config = {
        "Parallelism": parallelism,
        "Delay": round(strategy.update_delay_seconds * NS_PER_SECOND),
        "FailureAction": failure_action,
        "Monitor": round(monitor_seconds * NS_PER_SECOND),
        "MaxFailureRatio": 0.0,
        "Order": order,
    }
    # A rollback restores the spec that ran before, so it goes without delay. Its failure action is
    # continue, because swarmkit never rolls back a rollback and pauses it on "rollback" instead.
    rollback_config = {
        "Parallelism": parallelism,
        "Delay": 0,
        "FailureAction": "continue",
        "Monitor": round(monitor_seconds * NS_PER_SECOND),
        "MaxFailureRatio": 0.0,
        "Order": order,
    }
    return UpdatePlan(update_config=update_config, rollback_config=rollback_config, corrections=corrections)


def _choose_order(
    strategy: Strategy, replicas: int, exclusive_resources: Sequence[str], corrections: list[str]
) -> tuple[UpdateOrder, int]:
    """Return the update order and parallelism, correcting what would stop every task at once."""
    parallelism = strategy.max_unavailable
    exclusive = " and ".join(exclusive_resources)

    if exclusive_resources:
        downtime = " The app is down while its only task is replaced." if replicas == 1 else ""
        if strategy.max_surge > 0:
            corrections.append(
                f"The update order is stop-first instead of start-first (maxSurge {strategy.max_surge}), "
                f"because a new task would start while the old one still holds {exclusive}, which two "
                f"tasks must not use at the same time.{downtime}"
            )
        elif replicas == 1:
            corrections.append(
                f"The update order stays stop-first (maxSurge 0), because the task holds {exclusive}, "
                f"which two tasks must not use at the same time.{downtime}"
            )
    elif strategy.max_surge > 0:
        return "start-first", parallelism
    elif replicas == 1:
        corrections.append(
            "The update order is start-first instead of stop-first (maxSurge 0), because with 1 "
            "replica stop-first stops the only task before its replacement starts and the app "
            "would be down during every update."
        )
        return "start-first", parallelism

    if replicas > 1 and parallelism >= replicas:
        corrections.append(
            f"Parallelism is {replicas - 1} instead of {parallelism} (maxUnavailable), because "
            f"stop-first with a parallelism of {parallelism} and {replicas} replicas stops every task at "
            "once and the app would be down during the update."
        )
        return "stop-first", replicas - 1
    return "stop-first", parallelism


def _note_surge(strategy: Strategy, parallelism: int, replicas: int, corrections: list[str]) -> None:
    if replicas == 0:
        return
    # With fewer replicas than either number, only `replicas` tasks are ever started ahead.
    requested = min(strategy.max_surge, replicas)
    batch = min(parallelism, replicas)
    if requested > batch:
        corrections.append(
            f"maxSurge {strategy.max_surge} is capped to {batch}, because Swarm's start-first order "
            f"starts one batch of Parallelism {parallelism} (maxUnavailable) new tasks before it stops "
            f"old ones. Set maxUnavailable to {requested} to start {_tasks(requested)} at a time."
        )
    elif requested < batch:
        corrections.append(
            f"maxSurge {strategy.max_surge} is raised to {batch}, because Swarm's start-first order "
            f"starts one batch of Parallelism {parallelism} (maxUnavailable) new tasks before it stops "
            f"old ones. Set maxUnavailable to {requested} to run at most {_tasks(requested)}."
        )


def _tasks(count: int) -> str:
    return "1 extra task" if count == 1 else f"{count} extra tasks"


def _monitor_seconds(strategy: Strategy, healthcheck: Healthcheck | None, corrections: list[str]) -> float:
    """Return how long Swarm watches each new task for a failure, long enough to see one."""
    if healthcheck is not None and not healthcheck.disabled:
        return max(MONITOR_FLOOR_SECONDS, strategy.update_delay_seconds, healthcheck.detection_seconds())

    monitor = max(MONITOR_FLOOR_WITHOUT_HEALTHCHECK_SECONDS, strategy.update_delay_seconds)
    if strategy.rollback_on_failure:
        detection = (
            "The healthcheck is disabled (NONE), so Swarm detects only tasks that exit"
            if healthcheck is not None
            else "The application sets no healthcheck, so unless the image defines a HEALTHCHECK, "
            "Swarm detects only tasks that exit"
        )
        corrections.append(
            f"{detection}, not tasks that keep running while unhealthy. Monitor is "
            f"{format_duration(monitor)} so that a task exiting soon after it starts is rolled back. "
            "Add a healthcheck to roll back unhealthy tasks too."
        )
    return monitor
