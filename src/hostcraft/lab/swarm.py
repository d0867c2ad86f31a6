"""Forming the lab's swarm through the Docker Engine API of each node.

The first manager initializes the swarm with a 1 s dispatcher heartbeat instead of
Swarm's default 5 s, so a dead node is marked ``down`` within seconds and the failure
tests stay short. The other managers join first, one at a time so that Raft grows by one
member per step, and the workers after them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import docker
from docker.errors import APIError, DockerException
from requests.exceptions import RequestException

from hostcraft.errors import LabError
from hostcraft.lab.state import Lab, LabNode

logger = logging.getLogger(__name__)

DISPATCHER_HEARTBEAT_NS = 1_000_000_000
SWARM_PORT = 2377
READY_TIMEOUT = 90.0

Progress = Callable[[str], None]


def node_client(node: LabNode, *, timeout: int = 60) -> docker.DockerClient:
    """Return a Docker SDK client for the node's engine socket."""
    try:
        return docker.DockerClient(base_url=node.endpoint, timeout=timeout)
    except (DockerException, RequestException) as exc:
        raise LabError(
            f"failed to connect to the engine of node {node.name} at {node.endpoint}: {exc}",
            details={"node": node.name},
        ) from exc


def form_swarm(lab: Lab, progress: Progress) -> None:
    """Join every lab node that is not in the swarm, initializing the swarm if none exists.

    A running swarm is reached through any lab node that is a manager of it, so a lab whose
    first manager was demoted or crashed still converges.
    """
    manager = _find_manager(lab)
    if manager is None:
        manager = lab.managers[0]
        _init_swarm(manager, progress)
    join_tokens = _join_tokens(manager)
    remote = f"{manager.address}:{SWARM_PORT}"
    for node in [*lab.managers, *lab.workers]:
        if node != manager:
            token = join_tokens["Manager" if node.role == "manager" else "Worker"]
            _join(node, remote, token, progress)
    wait_swarm_ready(lab, manager=manager)


def wait_swarm_ready(lab: Lab, *, manager: LabNode | None = None, timeout: float = READY_TIMEOUT) -> None:
    """Wait until every lab node is ``ready`` and every manager ``reachable``.

    The swarm is observed through ``manager``, by default the lab's first manager.
    """
    observer = manager or lab.managers[0]
    deadline = time.monotonic() + timeout
    pending: list[str] = [node.name for node in lab.nodes]
    while time.monotonic() < deadline:
        try:
            pending = _nodes_not_ready(lab, observer)
        except (DockerException, RequestException) as exc:
            logger.info("swarm not ready yet", extra={"lab": lab.name, "error": str(exc)})
        if not pending:
            return
        time.sleep(0.5)
    raise LabError(
        f"swarm of lab {lab.name} not ready within {timeout:.0f} s; nodes not ready: {', '.join(pending)}",
        details={"lab": lab.name, "nodes": pending},
    )


def _find_manager(lab: Lab) -> LabNode | None:
    """Return a lab node that is a manager of a swarm, or None if there is none."""
    for node in lab.nodes:
        client = node_client(node)
        try:
            info: dict[str, Any] = client.info()
        finally:
            client.close()
        if info.get("Swarm", {}).get("ControlAvailable"):
            return node
    return None


def _init_swarm(node: LabNode, progress: Progress) -> None:
    client = node_client(node)
    try:
        # State "pending" or "error" means a failed join. State "active" here means a
        # worker of a swarm whose managers are gone. Both are reset before the new swarm.
        if _local_node_state(client) != "inactive":
            client.swarm.leave(force=True)
        progress(f"initializing the swarm on {node.name}")
        client.swarm.init(
            advertise_addr=node.address,
            listen_addr=f"{node.address}:{SWARM_PORT}",
            dispatcher_heartbeat_period=DISPATCHER_HEARTBEAT_NS,
        )
    except APIError as exc:
        raise LabError(
            f"failed to initialize the swarm on {node.name}: {exc.explanation or exc}",
            details={"node": node.name},
        ) from exc
    finally:
        client.close()


def _join_tokens(manager: LabNode) -> dict[str, str]:
    client = node_client(manager)
    try:
        client.swarm.reload()
        tokens: dict[str, str] = client.swarm.attrs["JoinTokens"]
        return tokens
    except APIError as exc:
        raise LabError(
            f"failed to read the join tokens from {manager.name}: {exc.explanation or exc}",
            details={"node": manager.name},
        ) from exc
    finally:
        client.close()


def _join(node: LabNode, remote: str, token: str, progress: Progress) -> None:
    client = node_client(node)
    try:
        state = _local_node_state(client)
        if state == "active":
            return
        progress(f"joining {node.name} to the swarm as {node.role}")
        # A join that timed out keeps trying in the background and can leave the node in
        # state "error" or "pending". Leaving with force resets it for a clean attempt.
        for attempt in (1, 2):
            if state != "inactive":
                client.swarm.leave(force=True)
            try:
                client.swarm.join(
                    remote_addrs=[remote],
                    join_token=token,
                    listen_addr=f"{node.address}:{SWARM_PORT}",
                    advertise_addr=node.address,
                )
                return
            except APIError as exc:
                if attempt == 2:
                    raise LabError(
                        f"failed to join {node.name} to the swarm at {remote}: {exc.explanation or exc}",
                        details={"node": node.name},
                    ) from exc
                logger.warning(
                    "failed to join the swarm, retrying",
                    extra={"node": node.name, "error": str(exc)},
                )
                state = _local_node_state(client)
    finally:
        client.close()


def _local_node_state(client: docker.DockerClient) -> str:
    info: dict[str, Any] = client.info()
    return str(info.get("Swarm", {}).get("LocalNodeState", "inactive"))


def _nodes_not_ready(lab: Lab, manager: LabNode) -> list[str]:
    client = node_client(manager, timeout=10)
    try:
        swarm_nodes = client.nodes.list()
    finally:
        client.close()
    ready = set()
    for swarm_node in swarm_nodes:
        attrs = swarm_node.attrs
        hostname = attrs["Description"]["Hostname"]
        if attrs["Status"]["State"] != "ready":
            continue
        reachable = attrs.get("ManagerStatus", {}).get("Reachability") == "reachable"
        if attrs["Spec"]["Role"] == "manager" and not reachable:
            continue
        ready.add(hostname)
    return [node.name for node in lab.nodes if node.name not in ready]
