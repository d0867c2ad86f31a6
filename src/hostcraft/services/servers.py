"""Servers: Docker engines HostCraft reaches, each a swarm node of exactly one region."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

import docker
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.docker.endpoints import Credentials, check_credentials, connect, parse_endpoint
from hostcraft.docker.facts import EngineFacts, read_engine_facts
from hostcraft.errors import ConflictError, EngineUnavailable, NotFound, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services.events import audit, record_event
from hostcraft.services.regions import find_region
from hostcraft.store.models import Server, utcnow

_KEY_FIELDS = {
    "tls_ca": "tls_ca_encrypted",
    "tls_cert": "tls_cert_encrypted",
    "tls_key": "tls_key_encrypted",
    "ssh_private_key": "ssh_private_key_encrypted",
}


@dataclass
class ServerInput:
    """Fields of a server; on update, ``None`` keeps the stored value and ``""`` clears it."""

    name: str | None = None
    endpoint: str | None = None
    region: int | str | None = None
    failure_domain: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    ssh_private_key: str | None = None
    ssh_known_host_key: str | None = None
    skip_validation: bool = False


def credentials_for(server: Server, runtime: Runtime) -> Credentials:
    def plain(column: str) -> str | None:
        value = getattr(server, column)
        return runtime.secrets.decrypt(value) if value else None

    return Credentials(
        tls_ca=plain("tls_ca_encrypted"),
        tls_cert=plain("tls_cert_encrypted"),
        tls_key=plain("tls_key_encrypted"),
        ssh_private_key=plain("ssh_private_key_encrypted"),
        ssh_known_host_key=server.ssh_known_host_key,
    )


@contextmanager
def engine_client(
    server: Server, runtime: Runtime, *, timeout: float | None = None
) -> Iterator[docker.DockerClient]:
    """Connect to a server's engine with its stored key material."""
    with connect(
        server.endpoint,
        credentials_for(server, runtime),
        timeout=timeout or runtime.settings.engine_timeout_seconds,
    ) as client:
        yield client


def apply_facts(server: Server, facts: EngineFacts) -> None:
    server.engine_version = facts.engine_version
    server.api_version = facts.api_version
    server.os = facts.os
    server.cpus = facts.cpus
    server.memory_bytes = facts.memory_bytes
    server.swarm_state = facts.swarm_state
    server.swarm_node_id = facts.swarm_node_id
    server.swarm_role = facts.swarm_role
    server.swarm_availability = facts.swarm_availability
    server.swarm_cluster_id = facts.swarm_cluster_id
    server.swarm_node_address = facts.swarm_node_address
    server.validated_at = utcnow()


def _probe(endpoint: str, credentials: Credentials, runtime: Runtime) -> EngineFacts:
    """Connect and read facts; an unreachable engine is a 422 on the endpoint field here."""
    try:
        with connect(endpoint, credentials, timeout=runtime.settings.engine_timeout_seconds) as client:
            return read_engine_facts(client)
    except EngineUnavailable as exc:
        raise ValidationError(exc.message, field="endpoint", details=exc.details) from exc


def _check_name(session: Session, name: str, *, exclude_id: int | None = None) -> str:
    name = name.strip()
    if not name or len(name) > 128:
        raise ValidationError("server name must be 1 to 128 characters", field="name")
    query = select(Server.id).where(Server.name == name)
    if exclude_id is not None:
        query = query.where(Server.id != exclude_id)
    if session.scalar(query) is not None:
        raise ConflictError(f"a server named {name!r} already exists", details={"field": "name"})
    return name


def _check_endpoint_unique(session: Session, endpoint: str, *, exclude_id: int | None = None) -> None:
    query = select(Server.name).where(Server.endpoint == endpoint)
    if exclude_id is not None:
        query = query.where(Server.id != exclude_id)
    existing = session.scalar(query)
    if existing is not None:
        raise ConflictError(
            f"endpoint {endpoint} is already registered as server {existing!r}", details={"field": "endpoint"}
        )


def _resolve_region_id(session: Session, reference: int | str | None) -> int:
    if reference is None or reference == "":
        raise ValidationError("regionId is missing: every server belongs to one region", field="regionId")
    try:
        return find_region(session, reference).id
    except NotFound as exc:
        raise ValidationError(f"unknown region {reference!r}", field="regionId") from exc


def create_server(session: Session, runtime: Runtime, data: ServerInput, *, actor: str) -> Server:
    """Register a server; unless skip_validation, the engine must respond first."""
    name = _check_name(session, data.name or "")
    endpoint = parse_endpoint(data.endpoint or "").url
    region_id = _resolve_region_id(session, data.region)
    _check_endpoint_unique(session, endpoint)
    credentials = Credentials(
        tls_ca=data.tls_ca or None,
        tls_cert=data.tls_cert or None,
        tls_key=data.tls_key or None,
        ssh_private_key=data.ssh_private_key or None,
        ssh_known_host_key=data.ssh_known_host_key or None,
    )
    check_credentials(parse_endpoint(endpoint), credentials)
    facts = None if data.skip_validation else _probe(endpoint, credentials, runtime)

    server = Server(
        name=name, endpoint=endpoint, region_id=region_id, failure_domain=data.failure_domain or None
    )
    _store_credentials(server, data, runtime)
    if facts is not None:
        apply_facts(server, facts)
    session.add(server)
    session.flush()
    record_event(
        session,
        actor=actor,
        action="server.create",
        target_type="server",
        target_id=server.id,
        target_name=server.name,
        outcome="succeeded",
        details={"endpoint": endpoint, "validated": facts is not None},
    )
    return server


def _store_credentials(server: Server, data: ServerInput, runtime: Runtime) -> None:
    for field_name, column in _KEY_FIELDS.items():
        value = getattr(data, field_name)
        if value is not None:
            setattr(server, column, runtime.secrets.encrypt(value) if value else None)
    if data.ssh_known_host_key is not None:
        server.ssh_known_host_key = data.ssh_known_host_key or None


def get_server(session: Session, server_id: int) -> Server:
    server = session.get(Server, server_id)
    if server is None:
        raise NotFound(f"server {server_id} not found")
    return server


def find_server(session: Session, reference: int | str) -> Server:
    if isinstance(reference, int) or reference.isdigit():
        return get_server(session, int(reference))
    server = session.scalar(select(Server).where(Server.name == reference))
    if server is None:
        raise NotFound(f"server {reference!r} not found")
    return server


def list_servers(session: Session, *, region_id: int | None = None) -> list[Server]:
    query = select(Server).order_by(Server.id)
    if region_id is not None:
        query = query.where(Server.region_id == region_id)
    return list(session.scalars(query))


def update_server(
    session: Session, runtime: Runtime, server_id: int, data: ServerInput, *, actor: str
) -> Server:
    """Change a server; a new endpoint or new key material is validated against the engine first."""
    server = get_server(session, server_id)
    if data.name is not None:
        server.name = _check_name(session, data.name, exclude_id=server.id)
    if data.region is not None:
        region_id = _resolve_region_id(session, data.region)
        if region_id != server.region_id and server.swarm_state == "active":
            raise ConflictError(
                f"server {server.name} is a member of its region's swarm: a region holds exactly one "
                "cluster, so make it leave the swarm before moving it to another region",
                details={"field": "regionId"},
            )
        server.region_id = region_id
    if data.failure_domain is not None:
        server.failure_domain = data.failure_domain or None
    connection_changed = data.endpoint is not None or any(
        getattr(data, f.name) is not None
        for f in fields(data)
        if f.name in (*_KEY_FIELDS, "ssh_known_host_key")
    )
    if data.endpoint is not None:
        endpoint = parse_endpoint(data.endpoint).url
        _check_endpoint_unique(session, endpoint, exclude_id=server.id)
        server.endpoint = endpoint
    _store_credentials(server, data, runtime)
    if connection_changed:
        check_credentials(parse_endpoint(server.endpoint), credentials_for(server, runtime))
        if not data.skip_validation:
            apply_facts(server, _probe(server.endpoint, credentials_for(server, runtime), runtime))
    session.flush()
    record_event(
        session,
        actor=actor,
        action="server.update",
        target_type="server",
        target_id=server.id,
        target_name=server.name,
        outcome="succeeded",
    )
    return server


def delete_server(session: Session, server_id: int, *, actor: str) -> None:
    """Forget a server. Its engine and swarm membership are left as they are."""
    server = get_server(session, server_id)
    session.delete(server)
    record_event(
        session,
        actor=actor,
        action="server.delete",
        target_type="server",
        target_id=server_id,
        target_name=server.name,
        outcome="succeeded",
    )
    session.flush()


def validate_server(session: Session, runtime: Runtime, server_id: int, *, actor: str) -> Server:
    server = get_server(session, server_id)
    try:
        facts = _probe(server.endpoint, credentials_for(server, runtime), runtime)
    except ValidationError as exc:
        # The request fails, so the event goes in its own transaction to survive the rollback.
        audit(
            runtime,
            actor=actor,
            action="server.validate",
            target_type="server",
            target_id=server.id,
            target_name=server.name,
            outcome="failed",
            reason=exc.message,
        )
        raise
    apply_facts(server, facts)
    record_event(
        session,
        actor=actor,
        action="server.validate",
        target_type="server",
        target_id=server.id,
        target_name=server.name,
        outcome="succeeded",
        details={"engineVersion": facts.engine_version, "swarmState": facts.swarm_state},
    )
    return server
