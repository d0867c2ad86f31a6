"""The recovery ladder: which action to take next for an open incident, and why.

Rungs, in order: restart (force-update the service), move (redeploy away from the node where
failures concentrate), rollback (to the last good deployment, when the incident began after a
deployment and ``autoRollback`` is on), then give up and alert "recovery failed". After each
action the ladder waits up to ``step_timeout_seconds`` for the incident to resolve before it
climbs on; ``cooldown_seconds`` and ``max_actions_per_hour`` stop restart loops.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from hostcraft.domain.probes import RecoveryOptions

Rung = Literal["restart", "move", "rollback"]
Action = Literal["none", "wait", "restart", "move", "rollback", "give_up"]


@dataclass(frozen=True)
class Situation:
    """The facts about the app and its incident that the ladder decides on."""

    auto_restart: bool
    auto_rollback: bool
    in_maintenance: bool = False
    failing_node: str | None = None
    began_after_deployment: bool = False
    rollback_target: int | None = None
    rungs_taken: tuple[Rung, ...] = ()
    last_action_at: dt.datetime | None = None
    actions_in_last_hour: int = 0
    gave_up: bool = False
    deployment_running: bool = False


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    skipped: tuple[str, ...] = field(default=())


def next_action(situation: Situation, options: RecoveryOptions, *, now: dt.datetime) -> Decision:
    """Decide the next step of the ladder for an open incident."""
    if situation.gave_up:
        return Decision("none", "recovery already failed and was reported; waiting for the app to recover")
    if situation.in_maintenance:
        return Decision("none", "a maintenance window is active: recovery actions are suppressed")
    if not situation.auto_restart:
        return Decision("none", "autoRestart is off: the incident is reported, nothing is changed")
    if situation.deployment_running:
        return Decision("wait", "a deployment of the app is running: waiting for it to finish")

    if situation.last_action_at is not None:
        elapsed = (now - situation.last_action_at).total_seconds()
        wait_for = max(options.step_timeout_seconds, options.cooldown_seconds)
        if elapsed < wait_for:
            return Decision(
                "wait",
                f"waiting up to {wait_for:g} s for the last action to take effect ({elapsed:.0f} s so far)",
            )

    skipped: list[str] = []
    for rung in _remaining_rungs(situation, skipped):
        if situation.actions_in_last_hour >= options.max_actions_per_hour:
            return Decision(
                "give_up",
                f"{situation.actions_in_last_hour} recovery actions in the last hour reached the cap of "
                f"{options.max_actions_per_hour}: no further automatic action",
                tuple(skipped),
            )
        return Decision(rung, _reason(rung, situation), tuple(skipped))
    return Decision(
        "give_up", "every rung of the recovery ladder was tried and the app is still failing", tuple(skipped)
    )


def _remaining_rungs(situation: Situation, skipped: list[str]) -> list[Rung]:
    remaining: list[Rung] = []
    if "restart" not in situation.rungs_taken:
        remaining.append("restart")
    if "move" not in situation.rungs_taken:
        if situation.failing_node:
            remaining.append("move")
        else:
            skipped.append("move: the failures do not concentrate on one node")
    if "rollback" not in situation.rungs_taken:
        if not situation.auto_rollback:
            skipped.append("rollback: autoRollback is off")
        elif not situation.began_after_deployment:
            skipped.append("rollback: the incident did not begin after a deployment")
        elif situation.rollback_target is None:
            skipped.append("rollback: no earlier successful deployment to return to")
        else:
            remaining.append("rollback")
    return remaining


def _reason(rung: Rung, situation: Situation) -> str:
    if rung == "restart":
        return "the app failed its health checks: restarting every task"
    if rung == "move":
        return f"failures concentrate on node {situation.failing_node}: redeploying away from it"
    return (
        f"the incident began after a deployment: rolling back to deployment {situation.rollback_target}, "
        "the last one that succeeded"
    )


# A task of a service is meant to run until it is replaced, so one that ended on its own failed,
# whatever its exit code: a container stopped for failing its healthcheck often exits 0 on the
# SIGTERM and is reported "complete". Tasks replaced by an update end "shutdown" instead.
FAILED_TASK_STATES = frozenset({"failed", "rejected", "complete"})


def failing_node(tasks: list[dict[str, Any]], *, since: dt.datetime, minimum_failures: int = 2) -> str | None:
    """Return the node id where the service's recent task failures concentrate, or None.

    Failures concentrate on a node when it has at least ``minimum_failures`` failed tasks since
    ``since``, at least three quarters of all of them, and some other node ran a task of the
    service (so there is somewhere else to go).
    """
    failures = failures_by_node(tasks, since=since)
    nodes_used = {task["NodeID"] for task in tasks if task.get("NodeID")}
    if not failures:
        return None
    node, count = max(failures.items(), key=lambda item: item[1])
    if count < minimum_failures or count < 0.75 * sum(failures.values()) or len(nodes_used) < 2:
        return None
    return node


def failures_by_node(tasks: list[dict[str, Any]], *, since: dt.datetime) -> dict[str, int]:
    """Count the tasks that ended on their own since ``since``, by node id."""
    failures: dict[str, int] = {}
    for task in tasks:
        node = task.get("NodeID")
        status = task.get("Status") or {}
        if not node or status.get("State") not in FAILED_TASK_STATES:
            continue
        timestamp = task_time(status.get("Timestamp"))
        if timestamp is not None and timestamp >= since:
            failures[node] = failures.get(node, 0) + 1
    return failures


def task_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    # Docker prints nanoseconds ("2026-12-04T10:00:00.123456789Z"); Python parses microseconds.
    text = value.rstrip("Z")
    head, _, fraction = text.partition(".")
    try:
        parsed = dt.datetime.fromisoformat(f"{head}.{fraction[:6].ljust(6, '0')}" if fraction else head)
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC)
