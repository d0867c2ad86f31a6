"""Raft quorum arithmetic, the manager-change guard and the cluster status of a region.

Managers ``N``, quorum ``floor(N/2) + 1``, fault tolerance ``N - quorum``. With fewer reachable
managers than the quorum, Swarm's cluster state is read-only; running tasks keep running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

ManagerChange = Literal["demote", "leave", "remove", "drain"]

_VERB = {"demote": "demoting", "leave": "removing", "remove": "removing", "drain": "draining"}


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def quorum_size(managers: int) -> int:
    return managers // 2 + 1 if managers > 0 else 0


def fault_tolerance(managers: int) -> int:
    return managers - quorum_size(managers) if managers > 0 else 0


@dataclass(frozen=True)
class GuardDecision:
    allowed: bool
    message: str
    details: dict[str, Any]


def check_manager_change(
    *, change: ManagerChange, node: str, managers: int, reachable: int, node_reachable: bool
) -> GuardDecision:
    """Decide whether taking manager ``node`` out of the manager set keeps the cluster safe.

    A drain is counted as the node leaving: operators drain a manager to take it down.
    Refused when the remaining reachable managers would be below the new quorum, when no
    manager would remain, or when the remaining number of managers would be even.
    """
    remaining = managers - 1
    remaining_reachable = reachable - (1 if node_reachable else 0)
    new_quorum = quorum_size(remaining)
    arithmetic = (
        f"{_count(managers, 'manager')}, quorum {quorum_size(managers)}: {_VERB[change]} {node} leaves "
        f"{_count(remaining, 'manager')}"
    )
    details = {
        "managers": managers,
        "reachableManagers": reachable,
        "quorum": quorum_size(managers),
        "managersAfter": remaining,
        "reachableManagersAfter": remaining_reachable,
        "quorumAfter": new_quorum,
        "faultToleranceAfter": max(0, remaining_reachable - new_quorum) if remaining else 0,
    }
    if remaining == 0:
        return GuardDecision(
            False,
            f"{arithmetic}: the swarm would have no manager and its state would be lost. "
            "Add and promote another manager first, or pass force=true",
            details,
        )
    if remaining_reachable < new_quorum:
        return GuardDecision(
            False,
            f"{arithmetic}, of which {remaining_reachable} reachable, below the quorum of "
            f"{new_quorum}: the cluster would lose quorum. Bring the unreachable managers back "
            "first, or pass force=true",
            details,
        )
    if remaining % 2 == 0:
        tolerance = details["faultToleranceAfter"]
        return GuardDecision(
            False,
            f"{arithmetic}, which tolerates {_count(tolerance, 'failure')} "
            f"(no more than {_count(remaining - 1, 'manager')} would: an even number adds no tolerance). "
            "Promote another node first, or pass force=true",
            details,
        )
    return GuardDecision(
        True, f"{arithmetic}, which tolerates {_count(details['faultToleranceAfter'], 'failure')}", details
    )


class ClusterStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    AT_RISK = "at_risk"
    QUORUM_LOST = "quorum_lost"


@dataclass(frozen=True)
class NodeState:
    """One swarm node as the cluster report needs it."""

    node_id: str
    hostname: str
    role: str
    state: str  # ready | down | unknown | disconnected
    availability: str  # active | pause | drain
    reachable: bool  # managers: Raft reachability; workers: state == ready
    leader: bool = False
    failure_domain: str | None = None


@dataclass
class ClusterAssessment:
    status: ClusterStatus
    managers: int
    reachable_managers: int
    quorum: int
    fault_tolerance: int
    workers: int
    ready_workers: int
    advice: list[str] = field(default_factory=list)


def assess_cluster(nodes: list[NodeState]) -> ClusterAssessment:
    """Classify a region's cluster from the state of its nodes, and list what to improve."""
    managers = [n for n in nodes if n.role == "manager"]
    workers = [n for n in nodes if n.role == "worker"]
    total = len(managers)
    reachable = sum(1 for n in managers if n.reachable)
    quorum = quorum_size(total)
    tolerance = max(0, reachable - quorum) if total else 0
    ready_workers = sum(1 for n in workers if n.state == "ready")
    advice: list[str] = []

    if total and total % 2 == 0:
        advice.append(
            f"even number of managers ({total}): it tolerates {_count(fault_tolerance(total), 'failure')}, "
            f"no more than {total - 1} would; promote or remove one manager"
        )
    domains = {n.failure_domain for n in managers}
    if total > 1 and len(domains) == 1:
        domain = next(iter(domains))
        advice.append(
            f"all {total} managers are in failure domain {domain!r}: one outage there loses quorum; "
            "spread managers across failure domains"
            if domain
            else f"no failure domain recorded for the {total} managers: set failureDomain on the "
            "servers so HostCraft can check that managers are spread"
        )
    for node in managers:
        if not node.reachable:
            advice.append(f"manager {node.hostname} is unreachable ({node.state}): restore it or replace it")
    for node in workers:
        if node.state == "unknown":
            advice.append(
                f"worker {node.hostname} state is unknown: the leader has not heard from it yet "
                "(normal for a few seconds after a leader change)"
            )
        elif node.state != "ready":
            advice.append(f"worker {node.hostname} is {node.state}: its tasks are rescheduled elsewhere")
    if total == 1:
        advice.append("single manager: any failure of it makes the cluster read-only; run 3 or 5 managers")

    if total == 0 or reachable < quorum:
        status = ClusterStatus.QUORUM_LOST
    elif tolerance == 0:
        status = ClusterStatus.AT_RISK
    elif reachable < total or ready_workers < len(workers) or total % 2 == 0:
        status = ClusterStatus.DEGRADED
    else:
        status = ClusterStatus.HEALTHY
    return ClusterAssessment(
        status=status,
        managers=total,
        reachable_managers=reachable,
        quorum=quorum,
        fault_tolerance=tolerance,
        workers=len(workers),
        ready_workers=ready_workers,
        advice=advice,
    )
