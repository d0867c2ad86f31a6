from __future__ import annotations

import pytest

from hostcraft.domain.quorum import (
    ClusterStatus,
    NodeState,
    assess_cluster,
    check_manager_change,
    fault_tolerance,
    quorum_size,
)


@pytest.mark.parametrize(
    ("managers", "quorum", "tolerance"),
    [(0, 0, 0), (1, 1, 0), (2, 2, 0), (3, 2, 1), (4, 3, 1), (5, 3, 2), (6, 4, 2), (7, 4, 3)],
)
def test_quorum_table_matches_raft(managers: int, quorum: int, tolerance: int) -> None:
    assert quorum_size(managers) == quorum
    assert fault_tolerance(managers) == tolerance


def test_demote_refused_when_it_leaves_even_managers() -> None:
    decision = check_manager_change(
        change="demote", node="node-2", managers=3, reachable=3, node_reachable=True
    )
    assert not decision.allowed
    assert decision.message.startswith(
        "3 managers, quorum 2: demoting node-2 leaves 2 managers, which tolerates 0 failures"
    )
    assert decision.details["managersAfter"] == 2
    assert decision.details["faultToleranceAfter"] == 0


def test_demote_allowed_from_four_to_three() -> None:
    decision = check_manager_change(change="demote", node="m4", managers=4, reachable=4, node_reachable=True)
    assert decision.allowed
    assert decision.details["faultToleranceAfter"] == 1


def test_demote_refused_when_quorum_would_be_lost() -> None:
    # 5 managers, 2 of them down: removing a reachable one leaves 2 reachable of 4 (quorum 3).
    decision = check_manager_change(change="demote", node="m1", managers=5, reachable=3, node_reachable=True)
    assert not decision.allowed
    assert "lose quorum" in decision.message
    assert decision.details["reachableManagersAfter"] == 2
    assert decision.details["quorumAfter"] == 3


def test_removing_unreachable_manager_from_four_restores_odd_count() -> None:
    decision = check_manager_change(change="remove", node="m4", managers=4, reachable=3, node_reachable=False)
    assert decision.allowed


def test_leave_of_last_manager_refused() -> None:
    decision = check_manager_change(change="leave", node="solo", managers=1, reachable=1, node_reachable=True)
    assert not decision.allowed
    assert "no manager" in decision.message


def test_drain_of_manager_counts_as_leaving() -> None:
    decision = check_manager_change(change="drain", node="m2", managers=3, reachable=3, node_reachable=True)
    assert not decision.allowed
    assert "draining m2" in decision.message


def _node(
    name: str, role: str, *, state: str = "ready", reachable: bool = True, domain: str | None = "a"
) -> NodeState:
    return NodeState(
        node_id=name,
        hostname=name,
        role=role,
        state=state,
        availability="active",
        reachable=reachable,
        failure_domain=domain,
    )


@pytest.mark.parametrize(
    ("nodes", "status"),
    [
        (
            [
                _node("m1", "manager", domain="a"),
                _node("m2", "manager", domain="b"),
                _node("m3", "manager", domain="c"),
            ],
            ClusterStatus.HEALTHY,
        ),
        (
            [
                _node("m1", "manager", domain="a"),
                _node("m2", "manager", domain="b"),
                _node("m3", "manager", domain="c"),
                _node("w1", "worker", state="down", reachable=False),
            ],
            ClusterStatus.DEGRADED,
        ),
        (
            [
                _node("m1", "manager"),
                _node("m2", "manager"),
                _node("m3", "manager", state="down", reachable=False),
            ],
            ClusterStatus.AT_RISK,
        ),
        (
            [
                _node("m1", "manager"),
                _node("m2", "manager", state="down", reachable=False),
                _node("m3", "manager", state="down", reachable=False),
            ],
            ClusterStatus.QUORUM_LOST,
        ),
        ([_node("m1", "manager")], ClusterStatus.AT_RISK),
        ([], ClusterStatus.QUORUM_LOST),
    ],
    ids=[
        "three-managers",
        "worker-down",
        "one-manager-down",
        "two-of-three-down",
        "single-manager",
        "no-managers",
    ],
)
def test_cluster_status_from_nodes(nodes: list[NodeState], status: ClusterStatus) -> None:
    assert assess_cluster(nodes).status == status


def test_five_managers_one_down_is_degraded_not_at_risk() -> None:
    nodes = [_node(f"m{i}", "manager", domain=str(i)) for i in range(1, 5)]
    nodes.append(_node("m5", "manager", state="down", reachable=False, domain="5"))
    assessment = assess_cluster(nodes)
    assert assessment.status == ClusterStatus.DEGRADED
    assert assessment.fault_tolerance == 1
    assert any("m5 is unreachable" in advice for advice in assessment.advice)


def test_advice_names_even_managers_and_shared_failure_domain() -> None:
    nodes = [_node(f"m{i}", "manager", domain="rack-1") for i in range(1, 5)]
    advice = assess_cluster(nodes).advice
    assert any(item.startswith("even number of managers (4)") for item in advice)
    assert any("failure domain 'rack-1'" in item for item in advice)


def test_unknown_worker_after_leader_change_is_not_called_rescheduled() -> None:
    nodes = [_node(f"m{i}", "manager", domain=str(i)) for i in range(1, 4)]
    nodes.append(_node("w1", "worker", state="unknown", reachable=False))
    advice = assess_cluster(nodes).advice
    assert advice == [
        "worker w1 state is unknown: the leader has not heard from it yet "
        "(normal for a few seconds after a leader change)"
    ]
