"""Swarm placement constraints, evaluated against nodes to find where a task may run.

Supports the constraint forms Swarm documents: ``node.id``, ``node.hostname``, ``node.role``,
``node.platform.os``, ``node.platform.arch``, ``node.labels.<key>`` and ``engine.labels.<key>``,
each with ``==`` or ``!=``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlacementNode:
    node_id: str
    hostname: str
    role: str
    state: str
    availability: str
    os: str = "linux"
    arch: str = "x86_64"
    labels: dict[str, str] = field(default_factory=dict)
    engine_labels: dict[str, str] = field(default_factory=dict)


def _attribute(node: PlacementNode, key: str) -> str | None:
    simple = {
        "node.id": node.node_id,
        "node.hostname": node.hostname,
        "node.role": node.role,
        "node.platform.os": node.os,
        "node.platform.arch": node.arch,
    }
    if key in simple:
        return simple[key]
    if key.startswith("node.labels."):
        return node.labels.get(key.removeprefix("node.labels."))
    if key.startswith("engine.labels."):
        return node.engine_labels.get(key.removeprefix("engine.labels."))
    return None


def satisfies(node: PlacementNode, constraint: str) -> bool:
    """Return whether ``node`` meets one constraint expression such as ``node.role==worker``."""
    for operator in ("!=", "=="):
        if operator in constraint:
            key, expected = (part.strip() for part in constraint.split(operator, 1))
            actual = _attribute(node, key)
            if operator == "==":
                return actual is not None and actual.lower() == expected.lower()
            return actual is None or actual.lower() != expected.lower()
    return False


def eligible_nodes(
    nodes: list[PlacementNode], constraints: list[str], *, exclude: str
) -> list[PlacementNode]:
    """Nodes other than ``exclude`` that are ready, active and meet every constraint."""
    return [
        node
        for node in nodes
        if node.node_id != exclude
        and node.state == "ready"
        and node.availability == "active"
        and all(satisfies(node, constraint) for constraint in constraints)
    ]
