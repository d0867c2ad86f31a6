"""When cluster and server conditions open or resolve an alert: pure rules over measured state.

Each rule returns an ``Evaluation`` per cause it owns: ``firing`` True opens (or keeps open) the
alert, False resolves it, and None leaves it as it is because the data cannot tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hostcraft.domain.quorum import ClusterAssessment, ClusterStatus

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class Evaluation:
    trigger: str
    cause: str
    firing: bool | None
    severity: Severity = "critical"
    title: str = ""
    # For a firing rule, the alert's message; for a cleared one, the resolve message.
    message: str = ""


@dataclass(frozen=True)
class CheckSummary:
    """The fields of one server health check that the rules read."""

    reachable: bool
    error: str | None = None
    resources: dict[str, Any] | None = None


def quorum_cause(region_id: int) -> str:
    return f"region:{region_id}:quorum_lost"


def manager_cause(region_id: int) -> str:
    return f"region:{region_id}:manager_failure"


def unreachable_cause(server_id: int) -> str:
    return f"server:{server_id}:unreachable"


def disk_cause(server_id: int) -> str:
    return f"server:{server_id}:disk_space_low"


def evaluate_cluster(
    region_id: int, region_code: str, assessment: ClusterAssessment | None
) -> list[Evaluation]:
    """Rules for a region's swarm; ``assessment`` None means the region has no swarm (both clear)."""
    if assessment is None or assessment.managers == 0:
        no_swarm = f"Region {region_code} has no swarm any more."
        return [
            Evaluation("quorum_lost", quorum_cause(region_id), False, message=no_swarm),
            Evaluation("manager_failure", manager_cause(region_id), False, message=no_swarm),
        ]
    counts = f"{assessment.reachable_managers} of {assessment.managers} managers are reachable"
    if assessment.status == ClusterStatus.QUORUM_LOST:
        quorum = Evaluation(
            "quorum_lost",
            quorum_cause(region_id),
            True,
            "critical",
            f"Quorum lost in region {region_code}",
            f"{counts}; quorum needs {assessment.quorum}. The cluster state is read-only: running "
            "services keep running, but no deploy, scale or failover in this region can change it "
            "until managers return.",
        )
        # The quorum alert covers the failed managers; the manager alert stays as it is.
        return [quorum, Evaluation("manager_failure", manager_cause(region_id), None)]
    quorum = Evaluation("quorum_lost", quorum_cause(region_id), False, message=f"Quorum is back: {counts}.")
    down = assessment.managers - assessment.reachable_managers
    if down == 0:
        cleared = f"All {assessment.managers} managers are reachable again."
        return [quorum, Evaluation("manager_failure", manager_cause(region_id), False, message=cleared)]
    manager = Evaluation(
        "manager_failure",
        manager_cause(region_id),
        True,
        "critical" if assessment.fault_tolerance == 0 else "warning",
        f"Manager failure in region {region_code}: quorum at risk",
        f"{down} of {assessment.managers} managers are unreachable. The cluster can lose "
        f"{assessment.fault_tolerance} more before it loses quorum. Restore or replace the failed "
        "manager(s).",
    )
    return [quorum, manager]


def evaluate_server(
    server_id: int,
    server_name: str,
    newest_first: list[CheckSummary],
    *,
    unreachable_checks: int,
    min_disk_free_ratio: float,
) -> list[Evaluation]:
    """Rules for one server from its newest health checks (newest first)."""
    return [
        _unreachable(server_id, server_name, newest_first, unreachable_checks),
        _disk(server_id, server_name, newest_first[0] if newest_first else None, min_disk_free_ratio),
    ]


def _unreachable(server_id: int, name: str, checks: list[CheckSummary], needed: int) -> Evaluation:
    cause = unreachable_cause(server_id)
    if not checks:
        return Evaluation("node_unreachable", cause, None)
    if checks[0].reachable:
        return Evaluation("node_unreachable", cause, False, message=f"The engine of {name} responds again.")
    recent = checks[:needed]
    if len(recent) < needed or any(check.reachable for check in recent):
        # One failed check may be a blip: wait for the next ones.
        return Evaluation("node_unreachable", cause, None)
    return Evaluation(
        "node_unreachable",
        cause,
        True,
        "critical",
        f"Node {name} is unreachable",
        f"The Docker engine of {name} did not respond to {needed} consecutive health checks: "
        f"{checks[0].error or 'no response'}. Swarm reschedules its tasks on other nodes; check the "
        "machine and its network.",
    )


def _disk(server_id: int, name: str, check: CheckSummary | None, ratio: float) -> Evaluation:
    cause = disk_cause(server_id)
    resources = (check.resources or {}) if check is not None else {}
    total, free = resources.get("diskTotalBytes"), resources.get("diskFreeBytes")
    if not resources.get("measured") or not total or free is None:
        return Evaluation("disk_space_low", cause, None)
    free_ratio = free / total
    if free_ratio >= ratio:
        return Evaluation("disk_space_low", cause, False, message=f"{free_ratio:.1%} free on {name} again.")
    return Evaluation(
        "disk_space_low",
        cause,
        True,
        "warning",
        f"Disk space low on {name}",
        f"{free_ratio:.1%} free on {resources.get('dataRoot') or 'the engine data root'} "
        f"({free // 2**20} MiB of {total // 2**20} MiB), below {ratio:.0%}. Free space before images, "
        "volumes or logs fill it.",
    )
