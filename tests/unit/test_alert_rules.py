"""Cluster and server alert rules: which measurements open, resolve or leave an alert."""

from __future__ import annotations

import pytest

from hostcraft.domain.alert_rules import CheckSummary, evaluate_cluster, evaluate_server
from hostcraft.domain.quorum import NodeState, assess_cluster


def _managers(total: int, reachable: int) -> list[NodeState]:
    return [
        NodeState(
            node_id=f"m{index}",
            hostname=f"m{index}",
            role="manager",
            state="ready" if index < reachable else "down",
            availability="active",
            reachable=index < reachable,
            failure_domain=f"rack-{index}",
        )
        for index in range(total)
    ]


@pytest.mark.parametrize(
    ("total", "reachable", "quorum_lost", "manager_failure", "severity"),
    [
        (3, 3, False, False, None),
        (3, 2, False, True, "critical"),  # tolerance 0 left
        (5, 4, False, True, "warning"),  # one more may fail
        (5, 3, False, True, "critical"),
        (3, 1, True, None, None),  # quorum alert covers it; manager alert unchanged
        (5, 2, True, None, None),
        (1, 1, False, False, None),  # a single manager is at risk by design, not failed
        (1, 0, True, None, None),
    ],
)
def test_cluster_rules(
    total: int, reachable: int, quorum_lost: bool, manager_failure: bool | None, severity: str | None
) -> None:
    quorum, manager = evaluate_cluster(4, "eu-west-1", assess_cluster(_managers(total, reachable)))

    assert quorum.cause == "region:4:quorum_lost"
    assert quorum.firing is quorum_lost
    assert manager.cause == "region:4:manager_failure"
    assert manager.firing is manager_failure
    if severity is not None:
        assert manager.severity == severity
        assert f"{total - reachable} of {total} managers are unreachable" in manager.message


def test_region_without_swarm_clears_both() -> None:
    evaluations = evaluate_cluster(4, "eu-west-1", None)

    assert [evaluation.firing for evaluation in evaluations] == [False, False]
    assert all("no swarm" in evaluation.message for evaluation in evaluations)


DOWN = CheckSummary(reachable=False, error="connection refused")
UP = CheckSummary(reachable=True, resources={"measured": True, "diskTotalBytes": 100, "diskFreeBytes": 50})


def _disk(free: int, total: int = 1000) -> CheckSummary:
    return CheckSummary(
        reachable=True,
        resources={"measured": True, "diskTotalBytes": total, "diskFreeBytes": free, "dataRoot": "/d"},
    )


@pytest.mark.parametrize(
    ("checks", "needed", "firing"),
    [
        ([], 2, None),
        ([UP], 2, False),
        ([DOWN], 2, None),  # one failed check may be a blip
        ([DOWN, UP], 2, None),
        ([DOWN, DOWN], 2, True),
        ([DOWN], 1, True),
        ([UP, DOWN, DOWN], 2, False),
    ],
)
def test_unreachable_rule(checks: list[CheckSummary], needed: int, firing: bool | None) -> None:
    unreachable, _ = evaluate_server(7, "node-a", checks, unreachable_checks=needed, min_disk_free_ratio=0.1)

    assert unreachable.cause == "server:7:unreachable"
    assert unreachable.firing is firing
    if firing:
        assert "connection refused" in unreachable.message


@pytest.mark.parametrize(
    ("check", "firing"),
    [
        (_disk(99), True),
        (_disk(100), False),  # exactly 10 % free is not below 10 %
        (_disk(500), False),
        (_disk(0), True),
        (CheckSummary(reachable=True, resources={"measured": False, "error": "probe failed"}), None),
        (DOWN, None),
        (
            CheckSummary(
                reachable=True, resources={"measured": True, "diskTotalBytes": 0, "diskFreeBytes": 0}
            ),
            None,
        ),
    ],
)
def test_disk_rule(check: CheckSummary, firing: bool | None) -> None:
    _, disk = evaluate_server(7, "node-a", [check], unreachable_checks=2, min_disk_free_ratio=0.1)

    assert disk.cause == "server:7:disk_space_low"
    assert disk.firing is firing
    if firing:
        assert disk.severity == "warning"
        assert "below 10%" in disk.message
