"""Classify one server health measurement as healthy, degraded or unreachable, with reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ServerStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class HealthThresholds:
    max_latency_ms: float = 1000.0
    min_disk_free_ratio: float = 0.10
    min_memory_available_ratio: float = 0.05


@dataclass
class HealthSample:
    reachable: bool
    latency_ms: float | None = None
    error: str | None = None
    swarm: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    peers: list[dict[str, Any]] = field(default_factory=list)
    expected_in_swarm: bool = False
    facts: Any = None  # the engine facts read during the measurement, when the engine responded


def classify(
    sample: HealthSample, thresholds: HealthThresholds = HealthThresholds()
) -> tuple[ServerStatus, list[str]]:
    """Return the status and every reason that lowered it."""
    if not sample.reachable:
        return ServerStatus.UNREACHABLE, [f"engine unreachable: {sample.error or 'no response'}"]
    reasons: list[str] = []
    if sample.latency_ms is not None and sample.latency_ms > thresholds.max_latency_ms:
        reasons.append(
            f"engine latency {sample.latency_ms:.0f} ms exceeds {thresholds.max_latency_ms:.0f} ms"
        )
    reasons.extend(_swarm_reasons(sample))
    reasons.extend(_resource_reasons(sample.resources, thresholds))
    for peer in sample.peers:
        if peer.get("reachable") is False:
            name = peer.get("hostname") or peer.get("nodeId") or peer["address"]
            reasons.append(f"cannot reach swarm peer {name} at {peer['address']}")
    return (ServerStatus.DEGRADED if reasons else ServerStatus.HEALTHY), reasons


def _swarm_reasons(sample: HealthSample) -> list[str]:
    swarm = sample.swarm
    state = swarm.get("localState")
    reasons: list[str] = []
    if state in ("error", "pending"):
        reasons.append(f"swarm membership is {state}: {swarm.get('error') or 'no detail from the engine'}")
    elif state == "inactive" and sample.expected_in_swarm:
        reasons.append("node is no longer part of a swarm")
    if swarm.get("nodeState") not in (None, "ready"):
        reasons.append(f"swarm reports this node as {swarm['nodeState']}")
    if swarm.get("managerReachability") not in (None, "reachable"):
        reasons.append(f"manager reachability is {swarm['managerReachability']}")
    if swarm.get("availability") in ("drain", "pause"):
        reasons.append(f"node availability is {swarm['availability']}: it takes no new tasks")
    if swarm.get("error") and state == "active":
        reasons.append(f"swarm: {swarm['error']}")
    return reasons


def _resource_reasons(resources: dict[str, Any], thresholds: HealthThresholds) -> list[str]:
    if not resources.get("measured"):
        return [f"resources not measured: {resources.get('error') or 'no measurement yet'}"]
    reasons: list[str] = []
    total, free = resources.get("diskTotalBytes"), resources.get("diskFreeBytes")
    if total and free is not None and free / total < thresholds.min_disk_free_ratio:
        reasons.append(
            f"disk space low on {resources.get('dataRoot')}: {free / total:.1%} free, "
            f"below {thresholds.min_disk_free_ratio:.0%}"
        )
    mem_total, mem_free = resources.get("memoryTotalBytes"), resources.get("memoryAvailableBytes")
    if mem_total and mem_free is not None and mem_free / mem_total < thresholds.min_memory_available_ratio:
        reasons.append(f"memory low: {mem_free / mem_total:.1%} available")
    return reasons
