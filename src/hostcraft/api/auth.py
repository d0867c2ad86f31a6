"""Bearer-token authentication; viewers may only read, token management is for admins."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request

from hostcraft.errors import AuthenticationError, PermissionDenied
from hostcraft.runtime import Runtime
from hostcraft.services.tokens import Role, authenticate

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    token_id: int
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"token:{self.name}"


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def current_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <token>'")
    runtime = get_runtime(request)
    with runtime.store.session() as session:
        row = authenticate(session, token.strip())
        principal = Principal(token_id=row.id, name=row.name, role=Role(row.role))
    if principal.role == Role.VIEWER and request.method not in READ_METHODS:
        raise PermissionDenied(
            "viewer tokens may only read: use an operator or admin token to change anything"
        )
    return principal


def require_admin(principal: Principal = Depends(current_principal)) -> Principal:
    if principal.role != Role.ADMIN:
        raise PermissionDenied("this endpoint needs an admin token")
    return principal
