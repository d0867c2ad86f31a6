"""API tokens: only a SHA-256 hash is stored; the token itself is shown once."""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.errors import AuthenticationError, ConflictError, NotFound, ValidationError
from hostcraft.store.models import ApiToken, utcnow

TOKEN_PREFIX = "hc_"  # noqa: S105 - a marker that makes leaked tokens searchable, not a secret


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, name: str, role: str) -> tuple[ApiToken, str]:
    """Store a new token's hash and return the row and the token, which is never stored."""
    try:
        parsed_role = Role(role)
    except ValueError as exc:
        raise ValidationError(
            f"invalid role {role!r}: expected admin, operator or viewer", field="role"
        ) from exc
    name = name.strip()
    if not name or len(name) > 64:
        raise ValidationError("token name must be 1 to 64 characters", field="name")
    if session.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
        raise ConflictError(
            f"a token named {name!r} already exists (revoked tokens keep their names): choose another name"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, role=parsed_role.value, token_hash=hash_token(token), prefix=token[:10])
    session.add(row)
    session.flush()
    return row, token


def authenticate(session: Session, token: str) -> ApiToken:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None:
        raise AuthenticationError("invalid or revoked API token")
    row.last_used_at = utcnow()
    return row


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: int) -> tuple[ApiToken, bool]:
    """Revoke a token; the flag is true when it was still active (revoking twice changes nothing)."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} not found")
    if row.revoked_at is not None:
        return row, False
    row.revoked_at = utcnow()
    return row, True


def has_admin_token(session: Session) -> bool:
    query = select(ApiToken.id).where(ApiToken.role == Role.ADMIN.value, ApiToken.revoked_at.is_(None))
    return session.scalar(query.limit(1)) is not None
