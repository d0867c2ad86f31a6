"""Swarm operations on servers, and the cluster report of a region.

Drain, activate, promote, demote and leave are served both at ``/api/servers/{id}/<action>`` (the
architecture document's maintenance paths) and at ``/api/servers/{id}/swarm/<action>``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends
from pydantic import Field, StrictBool, StrictInt

from hostcraft.api.auth import Principal, current_principal, get_runtime, require_admin
from hostcraft.api.schemas import Body as BodyModel
from hostcraft.runtime import Runtime
from hostcraft.services import cluster, drain

router = APIRouter(tags=["cluster"], dependencies=[Depends(current_principal)])


class SwarmInitIn(BodyModel):
    advertise_address: str = Field(min_length=1, max_length=64)
    manager_count: StrictInt | None = None
    force_new_cluster: StrictBool = False
    dispatcher_heartbeat_seconds: float | None = Field(default=None, ge=1, le=60)


class SwarmJoinIn(BodyModel):
    as_manager: StrictBool = False
    manager_address: str | None = Field(default=None, max_length=64)
    join_token: str | None = Field(default=None, max_length=256, repr=False)
    advertise_address: str | None = Field(default=None, max_length=64)


class ForceIn(BodyModel):
    force: StrictBool = False


class DrainIn(BodyModel):
    force: StrictBool = False
    timeout_seconds: float = Field(default=drain.DEFAULT_DRAIN_TIMEOUT_SECONDS, gt=0, le=3600)


@router.post("/api/servers/{server_id}/swarm/init")
def swarm_init(
    server_id: int,
    body: SwarmInitIn,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Create the region's swarm on this server (``forceNewCluster`` re-forms one that lost quorum)."""
    with runtime.store.session() as session:
        return cluster.init_swarm(
            session,
            runtime,
            server_id,
            actor=principal.actor,
            advertise_address=body.advertise_address,
            manager_count=body.manager_count,
            force_new_cluster=body.force_new_cluster,
            dispatcher_heartbeat_seconds=body.dispatcher_heartbeat_seconds,
        ).as_dict()


@router.post("/api/servers/{server_id}/swarm/join")
def swarm_join(
    server_id: int,
    body: SwarmJoinIn,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Join the region's swarm; without ``joinToken`` HostCraft fetches it from a reachable manager."""
    with runtime.store.session() as session:
        return cluster.join_swarm(
            session,
            runtime,
            server_id,
            actor=principal.actor,
            as_manager=body.as_manager,
            manager_address=body.manager_address,
            join_token=body.join_token,
            advertise_address=body.advertise_address,
        ).as_dict()


def _leave(
    server_id: int,
    body: ForceIn | None = Body(default=None),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Leave the swarm (a manager is demoted first; guarded unless ``force``)."""
    with runtime.store.session() as session:
        return cluster.leave_swarm(
            session, runtime, server_id, actor=principal.actor, force=bool(body and body.force)
        ).as_dict()


def _promote(
    server_id: int, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(current_principal)
) -> dict[str, Any]:
    """Promote the node to manager."""
    with runtime.store.session() as session:
        return cluster.change_role(
            session, runtime, server_id, actor=principal.actor, role="manager"
        ).as_dict()


def _demote(
    server_id: int,
    body: ForceIn | None = Body(default=None),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Demote the manager to worker; refused (409) when quorum would be at risk unless ``force``."""
    with runtime.store.session() as session:
        return cluster.change_role(
            session, runtime, server_id, actor=principal.actor, role="worker", force=bool(body and body.force)
        ).as_dict()


def _drain(
    server_id: int,
    body: DrainIn | None = Body(default=None),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Move every task off the node without downtime, then keep it drained."""
    options = body or DrainIn()
    with runtime.store.session() as session:
        return drain.drain_node(
            session,
            runtime,
            server_id,
            actor=principal.actor,
            force=options.force,
            timeout_seconds=options.timeout_seconds,
        ).as_dict()


def _activate(
    server_id: int, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(current_principal)
) -> dict[str, Any]:
    """Make the node take tasks again (Swarm does not move running tasks back by itself)."""
    with runtime.store.session() as session:
        return cluster.set_availability(
            session, runtime, server_id, actor=principal.actor, availability="active"
        ).as_dict()


for _name, _endpoint in (
    ("leave", _leave),
    ("promote", _promote),
    ("demote", _demote),
    ("drain", _drain),
    ("activate", _activate),
):
    router.add_api_route(
        f"/api/servers/{{server_id}}/swarm/{_name}", _endpoint, methods=["POST"], name=f"swarm_{_name}"
    )
    if _name != "leave":
        router.add_api_route(f"/api/servers/{{server_id}}/{_name}", _endpoint, methods=["POST"], name=_name)


@router.get("/api/regions/{region_id}/cluster")
def region_cluster(region_id: int, runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """Managers, quorum, fault tolerance, leader, every node, a status and advice."""
    with runtime.store.session() as session:
        return cluster.cluster_report(session, runtime, region_id).as_dict()


@router.get("/api/regions/{region_id}/swarm/join-tokens")
def region_join_tokens(
    region_id: int, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(require_admin)
) -> dict[str, str]:
    """Return the swarm's join tokens (admin only). Each read is recorded as an event."""
    with runtime.store.session() as session:
        return cluster.join_tokens_for_region(session, runtime, region_id, actor=principal.actor)
