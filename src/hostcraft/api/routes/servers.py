"""Servers, their validation and their health."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response, status
from sqlalchemy.orm import Session

from hostcraft.api.auth import Principal, current_principal, get_runtime
from hostcraft.api.schemas import (
    EngineFactsOut,
    HealthCheckOut,
    ServerHealthOut,
    ServerIn,
    ServerOut,
    ServerUpdate,
    SwarmMembershipOut,
)
from hostcraft.runtime import Runtime
from hostcraft.services import health, servers
from hostcraft.store.models import Server

router = APIRouter(prefix="/api/servers", tags=["servers"], dependencies=[Depends(current_principal)])


def server_out(server: Server) -> ServerOut:
    return ServerOut(
        id=server.id,
        name=server.name,
        endpoint=server.endpoint,
        region_id=server.region_id,
        region_code=server.region.code,
        failure_domain=server.failure_domain,
        tls_configured=bool(server.tls_cert_encrypted),
        ssh_key_configured=bool(server.ssh_private_key_encrypted),
        ssh_host_key_pinned=bool(server.ssh_known_host_key),
        engine=EngineFactsOut.model_validate(server),
        swarm=SwarmMembershipOut(
            state=server.swarm_state,
            node_id=server.swarm_node_id,
            role=server.swarm_role,
            availability=server.swarm_availability,
            cluster_id=server.swarm_cluster_id,
            node_address=server.swarm_node_address,
        ),
        validated_at=server.validated_at,
        created_at=server.created_at,
    )


def _input(body: ServerIn | ServerUpdate) -> servers.ServerInput:
    return servers.ServerInput(
        name=body.name,
        endpoint=body.endpoint,
        region=body.region_id,
        failure_domain=body.failure_domain,
        tls_ca=body.tls_ca,
        tls_cert=body.tls_cert,
        tls_key=body.tls_key,
        ssh_private_key=body.ssh_private_key,
        ssh_known_host_key=body.ssh_known_host_key,
        skip_validation=body.skip_validation,
    )


@router.post("", response_model=ServerOut, status_code=status.HTTP_201_CREATED)
def create_server(
    body: ServerIn, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(current_principal)
) -> ServerOut:
    """Register a server. The engine must respond unless ``skipValidation`` is true."""
    with runtime.store.session() as session:
        return server_out(servers.create_server(session, runtime, _input(body), actor=principal.actor))


@router.get("", response_model=list[ServerOut])
def list_servers(
    region_id: int | None = Query(default=None, alias="regionId"), runtime: Runtime = Depends(get_runtime)
) -> list[ServerOut]:
    with runtime.store.session() as session:
        return [server_out(server) for server in servers.list_servers(session, region_id=region_id)]


@router.get("/{server_id}", response_model=ServerOut)
def get_server(server_id: int, runtime: Runtime = Depends(get_runtime)) -> ServerOut:
    with runtime.store.session() as session:
        return server_out(servers.get_server(session, server_id))


@router.put("/{server_id}", response_model=ServerOut)
def update_server(
    server_id: int,
    body: ServerUpdate,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> ServerOut:
    with runtime.store.session() as session:
        server = servers.update_server(session, runtime, server_id, _input(body), actor=principal.actor)
        return server_out(server)


@router.delete("/{server_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_server(
    server_id: int, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(current_principal)
) -> Response:
    with runtime.store.session() as session:
        servers.delete_server(session, server_id, actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{server_id}/validate", response_model=ServerOut)
def validate_server(
    server_id: int, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(current_principal)
) -> ServerOut:
    """Connect to the engine and record its version, resources and swarm membership."""
    with runtime.store.session() as session:
        return server_out(servers.validate_server(session, runtime, server_id, actor=principal.actor))


def health_out(session: Session, server: Server, history: int) -> ServerHealthOut:
    latest = health.latest_check(session, server.id)
    rows = health.check_history(session, server.id, limit=history) if history else []
    return ServerHealthOut(
        server_id=server.id,
        server_name=server.name,
        status=latest.status if latest else "unknown",
        reasons=latest.reasons
        if latest
        else [f"not checked yet: POST /api/servers/{server.id}/health checks now"],
        latest=HealthCheckOut.model_validate(latest) if latest else None,
        history=[HealthCheckOut.model_validate(row) for row in rows],
    )


@router.get("/{server_id}/health", response_model=ServerHealthOut)
def get_health(
    server_id: int, history: int = Query(default=0, ge=0, le=1000), runtime: Runtime = Depends(get_runtime)
) -> ServerHealthOut:
    """Return the newest health check and its status; ``history=N`` adds the N newest checks."""
    with runtime.store.session() as session:
        return health_out(session, servers.get_server(session, server_id), history)


@router.post("/{server_id}/health", response_model=ServerHealthOut)
def check_health_now(server_id: int, runtime: Runtime = Depends(get_runtime)) -> ServerHealthOut:
    """Measure the server now instead of waiting for the engine loop."""
    with runtime.store.session() as session:
        server = servers.get_server(session, server_id)
        health.check_server(session, runtime, server)
        return health_out(session, server, 0)
