"""API tokens (admin only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from hostcraft.api.auth import Principal, get_runtime, require_admin
from hostcraft.api.schemas import TokenCreated, TokenIn, TokenOut
from hostcraft.runtime import Runtime
from hostcraft.services import tokens
from hostcraft.services.events import record_event

router = APIRouter(prefix="/api/tokens", tags=["tokens"])


@router.post("", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(
    body: TokenIn, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(require_admin)
) -> TokenCreated:
    """Create a token; the response is the only place the token ever appears."""
    with runtime.store.session() as session:
        row, token = tokens.create_token(session, name=body.name, role=body.role)
        record_event(
            session,
            actor=principal.actor,
            action="token.create",
            target_type="token",
            target_id=row.id,
            target_name=row.name,
            outcome="succeeded",
            details={"role": row.role},
        )
        return TokenCreated.model_validate({**TokenOut.model_validate(row).model_dump(), "token": token})


@router.get("", response_model=list[TokenOut])
def list_tokens(
    runtime: Runtime = Depends(get_runtime), _: Principal = Depends(require_admin)
) -> list[TokenOut]:
    with runtime.store.session() as session:
        return [TokenOut.model_validate(row) for row in tokens.list_tokens(session)]


@router.delete("/{token_id}", response_model=TokenOut)
def revoke_token(
    token_id: int, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(require_admin)
) -> TokenOut:
    with runtime.store.session() as session:
        row, revoked = tokens.revoke_token(session, token_id)
        if not revoked:
            return TokenOut.model_validate(row)
        record_event(
            session,
            actor=principal.actor,
            action="token.revoke",
            target_type="token",
            target_id=row.id,
            target_name=row.name,
            outcome="succeeded",
        )
        return TokenOut.model_validate(row)
