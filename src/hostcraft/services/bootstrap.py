"""First start of ``hostcraft up``: an admin token, and the local engine as a server."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from sqlalchemy import select

from hostcraft.errors import HostCraftError
from hostcraft.runtime import Runtime
from hostcraft.services.regions import RegionInput, create_regions, list_regions
from hostcraft.services.servers import ServerInput, create_server
from hostcraft.services.tokens import create_token, has_admin_token, list_tokens
from hostcraft.store.models import Server

DEFAULT_REGION = RegionInput(name="Default", code="default", is_primary=True, priority=1)


@dataclass
class BootstrapResult:
    admin_token: str | None = None
    messages: list[str] = field(default_factory=list)


def bootstrap(runtime: Runtime, *, local_engine: str) -> BootstrapResult:
    result = BootstrapResult()
    with runtime.store.session() as session:
        if not has_admin_token(session):
            # Revoked tokens keep their names, so a later bootstrap picks a free one.
            taken = {token.name for token in list_tokens(session)}
            name = next(n for n in ("admin", *(f"admin-{i}" for i in range(2, 1000))) if n not in taken)
            _, result.admin_token = create_token(session, name=name, role="admin")
    result.messages.append(register_local_engine(runtime, local_engine))
    return result


def register_local_engine(runtime: Runtime, endpoint: str) -> str:
    """Register the local engine in the default region when it responds, and return what happened."""
    with runtime.store.session() as session:
        existing = session.scalar(select(Server).where(Server.endpoint == endpoint))
        if existing is not None:
            return f"local engine already registered as server {existing.name!r}"
        regions = list_regions(session)
        region = regions[0] if regions else create_regions(session, [DEFAULT_REGION], actor="hostcraft-up")[0]
        region_id = next((r.id for r in regions if r.is_primary), region.id)
        name = socket.gethostname() or "local"
        if session.scalar(select(Server.id).where(Server.name == name)) is not None:
            name = f"{name}-local"
        try:
            with session.begin_nested():
                server = create_server(
                    session,
                    runtime,
                    ServerInput(name=name, endpoint=endpoint, region=region_id),
                    actor="hostcraft-up",
                )
        except HostCraftError as exc:
            return (
                f"no local Docker engine responded at {endpoint} ({exc.message}); HostCraft runs anyway. "
                "Add a server with: hostcraft server add NAME --endpoint URL --region CODE"
            )
        return f"registered the local engine as server {server.name!r} in region {server.region.code!r}"
