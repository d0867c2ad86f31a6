from __future__ import annotations

from hostcraft.domain.health import HealthSample, ServerStatus, classify

MEASURED = {
    "measured": True,
    "diskTotalBytes": 100,
    "diskFreeBytes": 50,
    "memoryTotalBytes": 100,
    "memoryAvailableBytes": 50,
    "dataRoot": "/var/lib/docker",
}


def test_unreachable_engine_is_unreachable() -> None:
    status, reasons = classify(HealthSample(reachable=False, error="connection refused"))
    assert status == ServerStatus.UNREACHABLE
    assert reasons == ["engine unreachable: connection refused"]


def test_measured_healthy_node_has_no_reasons() -> None:
    sample = HealthSample(reachable=True, latency_ms=3, swarm={"localState": "inactive"}, resources=MEASURED)
    assert classify(sample) == (ServerStatus.HEALTHY, [])


def test_low_disk_degrades_with_percentage() -> None:
    sample = HealthSample(reachable=True, latency_ms=3, resources={**MEASURED, "diskFreeBytes": 9})
    status, reasons = classify(sample)
    assert status == ServerStatus.DEGRADED
    assert reasons == ["disk space low on /var/lib/docker: 9.0% free, below 10%"]


def test_unmeasured_resources_degrade() -> None:
    sample = HealthSample(
        reachable=True, latency_ms=3, resources={"measured": False, "error": "no probe image"}
    )
    status, reasons = classify(sample)
    assert status == ServerStatus.DEGRADED
    assert reasons == ["resources not measured: no probe image"]


def test_unreachable_peer_and_down_node_are_reasons() -> None:
    sample = HealthSample(
        reachable=True,
        latency_ms=3,
        resources=MEASURED,
        swarm={"localState": "active", "nodeState": "down", "managerReachability": "unreachable"},
        peers=[
            {"address": "10.0.0.2:7946", "hostname": "m2", "reachable": False},
            {"address": "10.0.0.3:7946", "hostname": "m3", "reachable": True},
        ],
    )
    status, reasons = classify(sample)
    assert status == ServerStatus.DEGRADED
    assert "swarm reports this node as down" in reasons
    assert "manager reachability is unreachable" in reasons
    assert "cannot reach swarm peer m2 at 10.0.0.2:7946" in reasons
    assert not any("m3" in reason for reason in reasons)


def test_node_that_left_its_swarm_degrades() -> None:
    sample = HealthSample(
        reachable=True,
        latency_ms=3,
        resources=MEASURED,
        swarm={"localState": "inactive"},
        expected_in_swarm=True,
    )
    assert classify(sample)[1] == ["node is no longer part of a swarm"]
