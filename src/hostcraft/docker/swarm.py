"""Swarm operations on one engine, through the Engine API. No policy lives here.

Every node or service update carries the object's version, so a concurrent change makes the
update fail instead of being overwritten. Swarm's "no leader" error becomes ``QuorumLost``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import docker
import docker.errors

from hostcraft.errors import ConflictError, EngineUnavailable, HostCraftError, QuorumLost

SWARM_PORT = 2377

_NO_LEADER_MARKERS = ("does not have a leader", "too few managers are online", "context deadline exceeded")


def translate_api_error(exc: docker.errors.APIError, *, action: str) -> HostCraftError:
    """Map an Engine API error to HostCraft's hierarchy, keeping Swarm's own message."""
    explanation = str(exc.explanation or exc)
    if any(marker in explanation for marker in _NO_LEADER_MARKERS):
        return QuorumLost(
            f"failed to {action}: the swarm has no leader ({explanation}). Fewer than a quorum of "
            "managers are reachable, so the cluster state is read-only; restore managers or "
            "re-initialise with forceNewCluster on a surviving manager",
            details={"engineMessage": explanation},
        )
    if exc.status_code == 409 or "update out of sequence" in explanation:
        return ConflictError(f"failed to {action}: {explanation}", details={"engineMessage": explanation})
    if exc.status_code == 503:
        return EngineUnavailable(f"failed to {action}: {explanation}", details={"engineMessage": explanation})
    return HostCraftError(f"failed to {action}: {explanation}", details={"engineMessage": explanation})


def _call(action: str, function: Callable[[], Any]) -> Any:
    try:
        return function()
    except docker.errors.APIError as exc:
        raise translate_api_error(exc, action=action) from exc


def list_nodes(client: docker.DockerClient) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = _call("list swarm nodes", client.api.nodes)
    return nodes


def inspect_swarm(client: docker.DockerClient) -> dict[str, Any]:
    swarm: dict[str, Any] = _call("inspect the swarm", client.api.inspect_swarm)
    return swarm


def join_tokens(client: docker.DockerClient) -> dict[str, str]:
    tokens = inspect_swarm(client).get("JoinTokens") or {}
    return {"worker": tokens.get("Worker", ""), "manager": tokens.get("Manager", "")}


def init_swarm(
    client: docker.DockerClient,
    *,
    advertise_address: str,
    force_new_cluster: bool = False,
    dispatcher_heartbeat_seconds: float | None = None,
) -> str:
    spec = None
    if dispatcher_heartbeat_seconds is not None:
        spec = client.api.create_swarm_spec(
            dispatcher_heartbeat_period=int(dispatcher_heartbeat_seconds * 1e9)
        )
    node_id: str = _call(
        "initialise the swarm",
        lambda: client.api.init_swarm(
            advertise_addr=advertise_address,
            listen_addr=f"0.0.0.0:{SWARM_PORT}",
            force_new_cluster=force_new_cluster,
            swarm_spec=spec,
        ),
    )
    return node_id


def join_swarm(
    client: docker.DockerClient, *, manager_address: str, join_token: str, advertise_address: str | None
) -> None:
    _call(
        "join the swarm",
        lambda: client.api.join_swarm(
            remote_addrs=[manager_address],
            join_token=join_token,
            listen_addr=f"0.0.0.0:{SWARM_PORT}",
            advertise_addr=advertise_address,
        ),
    )


def leave_swarm(client: docker.DockerClient, *, force: bool) -> None:
    _call("leave the swarm", lambda: client.api.leave_swarm(force=force))


def update_node(client: docker.DockerClient, node_id: str, **changes: str) -> dict[str, Any]:
    """Change ``role`` or ``availability`` of a node, carrying its version."""
    node = _call("inspect the node", lambda: client.api.inspect_node(node_id))
    spec = dict(node["Spec"])
    for key, value in changes.items():
        spec[key.capitalize()] = value
    version = node["Version"]["Index"]
    _call("update the node", lambda: client.api.update_node(node_id, version, spec))
    updated: dict[str, Any] = _call("inspect the node", lambda: client.api.inspect_node(node_id))
    return updated


def remove_node(client: docker.DockerClient, node_id: str, *, force: bool) -> None:
    _call("remove the node", lambda: client.api.remove_node(node_id, force=force))


def list_services(client: docker.DockerClient) -> list[dict[str, Any]]:
    services: list[dict[str, Any]] = _call("list services", client.api.services)
    return services


def list_tasks(client: docker.DockerClient, **filters: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = _call("list tasks", lambda: client.api.tasks(filters=filters))
    return tasks


def update_service_spec(
    client: docker.DockerClient, service_id: str, change: Callable[[dict[str, Any]], None]
) -> None:
    """Apply ``change`` to the service's current spec and post it back with the read version."""
    service = _call("inspect the service", lambda: client.api.inspect_service(service_id))
    spec = service["Spec"]
    change(spec)
    version = service["Version"]["Index"]

    def post() -> None:
        url = client.api._url("/services/{0}/update", service_id)
        response = client.api._post_json(url, data=spec, params={"version": version})
        client.api._raise_for_status(response)

    _call("update the service", post)


def scale_service(client: docker.DockerClient, service_id: str, replicas: int) -> None:
    """Set a replicated service's replica count, carrying the service version."""

    def set_replicas(spec: dict[str, Any]) -> None:
        spec["Mode"] = {"Replicated": {"Replicas": replicas}}

    update_service_spec(client, service_id, set_replicas)


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
