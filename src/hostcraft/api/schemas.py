"""Request and response bodies. JSON uses camelCase, as in the architecture document."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt
from pydantic.alias_generators import to_camel

from hostcraft.services.regions import CODE_PATTERN


class Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


# Regions


def _check_region_code(code: str) -> str:
    if not CODE_PATTERN.fullmatch(code):
        raise ValueError(
            f"invalid region code {code!r}: expected lowercase letters, digits and '-', starting "
            "with a letter or digit, at most 32 characters (e.g. eu-west-1)"
        )
    return code


class RegionIn(Body):
    name: str = Field(min_length=1, max_length=128)
    code: Annotated[str, AfterValidator(_check_region_code)]
    is_primary: StrictBool = False
    priority: StrictInt = Field(default=1, gt=0)
    image_registry: str | None = Field(default=None, max_length=256)


class RegionsIn(Body):
    regions: list[RegionIn] = Field(min_length=1)


class RegionOut(Out):
    id: int
    name: str
    code: str
    is_primary: bool
    priority: int
    image_registry: str | None = None
    server_count: int = 0
    created_at: dt.datetime
    updated_at: dt.datetime


class RegionsOut(Out):
    regions: list[RegionOut]


# Servers


class ServerIn(Body):
    name: str = Field(min_length=1, max_length=128)
    endpoint: str = Field(min_length=1, max_length=512)
    region_id: StrictInt | str
    failure_domain: str | None = Field(default=None, max_length=128)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    ssh_private_key: str | None = None
    ssh_known_host_key: str | None = None
    skip_validation: StrictBool = False


class ServerUpdate(Body):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    endpoint: str | None = Field(default=None, min_length=1, max_length=512)
    region_id: StrictInt | str | None = None
    failure_domain: str | None = Field(default=None, max_length=128)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    ssh_private_key: str | None = None
    ssh_known_host_key: str | None = None
    skip_validation: StrictBool = False


class EngineFactsOut(Out):
    engine_version: str | None
    api_version: str | None
    os: str | None
    cpus: int | None
    memory_bytes: int | None


class SwarmMembershipOut(Out):
    state: str | None
    node_id: str | None
    role: str | None
    availability: str | None
    cluster_id: str | None
    node_address: str | None


class ServerOut(Out):
    id: int
    name: str
    endpoint: str
    region_id: int
    region_code: str
    failure_domain: str | None
    tls_configured: bool
    ssh_key_configured: bool
    ssh_host_key_pinned: bool
    engine: EngineFactsOut
    swarm: SwarmMembershipOut
    validated_at: dt.datetime | None
    created_at: dt.datetime


class HealthCheckOut(Out):
    id: int
    checked_at: dt.datetime
    status: Literal["healthy", "degraded", "unreachable"]
    reasons: list[str]
    reachable: bool
    latency_ms: float | None
    error: str | None
    swarm: dict[str, Any]
    resources: dict[str, Any]
    peers: list[dict[str, Any]]


class ServerHealthOut(Out):
    server_id: int
    server_name: str
    status: Literal["healthy", "degraded", "unreachable", "unknown"]
    reasons: list[str]
    latest: HealthCheckOut | None
    history: list[HealthCheckOut] = []


# Tokens


class TokenIn(Body):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["admin", "operator", "viewer"]


class TokenOut(Out):
    id: int
    name: str
    role: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenCreated(TokenOut):
    token: str


# Events


class EventOut(Out):
    id: int
    at: dt.datetime
    actor: str
    action: str
    target_type: str
    target_id: str | None
    target_name: str | None
    outcome: str
    reason: str | None
    details: dict[str, Any]
