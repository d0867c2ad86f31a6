"""Draining a node without taking any application down.

Swarm's own drain stops a node's tasks and only then starts replacements, so a service whose
every replica is on that node is down in between. HostCraft drains in this order instead:

1. plan: every replicated service with tasks on the node needs an eligible node elsewhere
   (ready, active, meeting its placement constraints), else the drain is refused with the list;
2. pause the node, so new tasks are scheduled elsewhere;
3. scale each service whose every running replica is on the node up by that many tasks, and
   wait until they run on other nodes (with a healthcheck, Swarm reports ``running`` only once
   the container is healthy);
4. drain the node and wait until its tasks have moved and every service has converged;
5. restore the original replica counts.

On any failure HostCraft restores the original replica counts, and gives a node that was never
drained its original availability back; a restore that itself fails is logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import docker
from sqlalchemy.orm import Session

from hostcraft.docker import swarm as swarm_api
from hostcraft.domain.placement import PlacementNode, eligible_nodes
from hostcraft.errors import ConflictError, HostCraftError, OperationTimedOut
from hostcraft.runtime import Runtime
from hostcraft.services.cluster import ClusterOperation, OperationResult, _guard, _node_id, _refresh_facts
from hostcraft.services.managers import any_manager
from hostcraft.services.servers import get_server

logger = logging.getLogger(__name__)

DEFAULT_DRAIN_TIMEOUT_SECONDS = 180.0


@dataclass
class ServicePlan:
    service_id: str
    name: str
    replicas: int
    on_node: int
    elsewhere: int
    eligible: list[str]
    surge: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "replicas": self.replicas,
            "tasksOnNode": self.on_node,
            "tasksElsewhere": self.elsewhere,
            "surge": self.surge,
            "eligibleNodes": self.eligible,
        }


@dataclass
class DrainPlan:
    node_id: str
    services: list[ServicePlan] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


def placement_node(node: dict[str, Any]) -> PlacementNode:
    spec = node.get("Spec") or {}
    description = node.get("Description") or {}
    platform = description.get("Platform") or {}
    return PlacementNode(
        node_id=node["ID"],
        hostname=description.get("Hostname", ""),
        role=spec.get("Role", "worker"),
        state=(node.get("Status") or {}).get("State", "unknown"),
        availability=spec.get("Availability", "active"),
        os=str(platform.get("OS", "linux")).lower(),
        arch=str(platform.get("Architecture", "x86_64")),
        labels=spec.get("Labels") or {},
        engine_labels=(description.get("Engine") or {}).get("Labels") or {},
    )


def _running(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tasks if t.get("DesiredState") == "running" and t["Status"]["State"] == "running"]


def plan_drain(client: docker.DockerClient, node_id: str) -> DrainPlan:
    """Decide, for every replicated service with tasks on the node, where its tasks can go."""
    nodes = [placement_node(node) for node in swarm_api.list_nodes(client)]
    plan = DrainPlan(node_id=node_id)
    for service in swarm_api.list_services(client):
        spec = service["Spec"]
        replicated = (spec.get("Mode") or {}).get("Replicated")
        if replicated is None:
            continue  # global services run one task per node; draining stops only this node's task
        tasks = swarm_api.list_tasks(client, service=service["ID"], **{"desired-state": "running"})
        on_node = [t for t in tasks if t.get("NodeID") == node_id]
        if not on_node:
            continue
        elsewhere = [t for t in _running(tasks) if t.get("NodeID") != node_id]
        placement = (spec.get("TaskTemplate") or {}).get("Placement") or {}
        eligible = eligible_nodes(nodes, placement.get("Constraints") or [], exclude=node_id)
        max_per_node = int(placement.get("MaxReplicas") or 0)
        replicas = int(replicated.get("Replicas") or 0)
        item = ServicePlan(
            service_id=service["ID"],
            name=spec.get("Name", service["ID"]),
            replicas=replicas,
            on_node=len(on_node),
            elsewhere=len(elsewhere),
            eligible=[node.hostname for node in eligible],
        )
        if not eligible:
            plan.blocked.append(
                f"{item.name} ({replicas} replica(s), {item.on_node} on this node): no other node is ready, "
                f"active and meets its constraints {placement.get('Constraints') or '[]'}"
            )
        elif max_per_node and max_per_node * len(eligible) < replicas:
            plan.blocked.append(
                f"{item.name}: {replicas} replicas at most {max_per_node} per node do not fit on the "
                f"{len(eligible)} other eligible node(s)"
            )
        if item.elsewhere == 0:
            item.surge = item.on_node
        plan.services.append(item)
    return plan


def drain_node(
    session: Session,
    runtime: Runtime,
    server_id: int,
    *,
    actor: str,
    force: bool = False,
    timeout_seconds: float = DEFAULT_DRAIN_TIMEOUT_SECONDS,
) -> OperationResult:
    server = get_server(session, server_id)
    with ClusterOperation(runtime, actor=actor, action="swarm.drain", server=server) as operation:
        node_id = _node_id(server, runtime)
        guard = _guard(session, runtime, server, "drain", force=force)
        with any_manager(session, runtime, server.region_id, require_quorum=True) as (_, client):
            plan = plan_drain(client, node_id)
            if plan.blocked and not force:
                raise ConflictError(
                    f"draining {server.name} would take services down, because they have nowhere else "
                    f"to run: {'; '.join(plan.blocked)}. Add capacity or relax constraints, "
                    "or pass force=true",
                    details={"services": plan.blocked},
                )
            original = client.api.inspect_node(node_id)["Spec"].get("Availability", "active")
            _drain_with_surge(client, node_id, plan, timeout_seconds, original_availability=original)
        _refresh_facts(runtime, server.id)
        moved = [item.as_dict() for item in plan.services]
        return operation.done(
            f"drained {server.name}: {len(moved)} service(s) moved without downtime",
            services=moved,
            blocked=plan.blocked,
            **(guard or {}),
        )
    raise AssertionError("unreachable")


def _drain_with_surge(
    client: docker.DockerClient, node_id: str, plan: DrainPlan, timeout: float, *, original_availability: str
) -> None:
    deadline = time.monotonic() + timeout
    surged: list[ServicePlan] = []
    drained = False
    try:
        if any(item.surge for item in plan.services):
            swarm_api.update_node(client, node_id, availability="pause")
        for item in plan.services:
            if item.surge:
                swarm_api.scale_service(client, item.service_id, item.replicas + item.surge)
                surged.append(item)
        for item in surged:
            _wait_running_elsewhere(client, item, node_id, item.surge, deadline)
        swarm_api.update_node(client, node_id, availability="drain")
        drained = True
        for item in plan.services:
            _wait_moved(client, item, node_id, item.replicas + item.surge, deadline)
    except BaseException:
        if not drained:
            _try(
                lambda: swarm_api.update_node(client, node_id, availability=original_availability),
                "restore node availability",
            )
        raise
    finally:
        for item in surged:
            _try(
                lambda item=item: swarm_api.scale_service(client, item.service_id, item.replicas),
                f"restore replicas of {item.name}",
            )


def _try(action: Any, what: str) -> None:
    try:
        action()
    except HostCraftError as exc:
        logger.error("failed to %s: %s", what, exc.message)


def _wait_running_elsewhere(
    client: docker.DockerClient, item: ServicePlan, node_id: str, count: int, deadline: float
) -> None:
    def ready() -> bool:
        tasks = _running(swarm_api.list_tasks(client, service=item.service_id))
        return sum(1 for task in tasks if task.get("NodeID") != node_id) >= count

    if not swarm_api.wait_until(ready, timeout=max(0.0, deadline - time.monotonic())):
        raise OperationTimedOut(
            f"failed to drain: the extra task(s) of {item.name} did not start on another node in time; "
            "the node was not drained and replica counts are restored"
        )


def _wait_moved(
    client: docker.DockerClient, item: ServicePlan, node_id: str, replicas: int, deadline: float
) -> None:
    def converged() -> bool:
        tasks = swarm_api.list_tasks(client, service=item.service_id)
        on_node = [
            t for t in tasks if t.get("NodeID") == node_id and t["Status"]["State"] in ("running", "starting")
        ]
        running = [t for t in _running(tasks) if t.get("NodeID") != node_id]
        return not on_node and len(running) >= replicas

    if not swarm_api.wait_until(converged, timeout=max(0.0, deadline - time.monotonic())):
        raise OperationTimedOut(
            f"failed to drain: tasks of {item.name} did not finish moving in time; the node stays drained, "
            "replica counts are restored, and Swarm keeps rescheduling"
        )
