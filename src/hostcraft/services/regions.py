"""Regions: failure domains that each hold exactly one Swarm cluster; exactly one is primary."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hostcraft.docker.registry_copy import rewrite_registry, split_reference
from hostcraft.errors import ConflictError, NotFound, ValidationError
from hostcraft.services.events import record_event
from hostcraft.store.models import Region, Server

CODE_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
REGISTRY_PATTERN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,250}[A-Za-z0-9])?(:[0-9]{1,5})?")


@dataclass(frozen=True)
class RegionInput:
    name: str
    code: str
    is_primary: bool = False
    priority: int = 1
    image_registry: str | None = None


def _check_input(data: RegionInput, *, field_prefix: str = "") -> None:
    if not data.name.strip() or len(data.name) > 128:
        raise ValidationError("region name must be 1 to 128 characters", field=f"{field_prefix}name")
    if not CODE_PATTERN.fullmatch(data.code):
        raise ValidationError(
            f"invalid region code {data.code!r}: expected lowercase letters, digits and '-', "
            "starting with a letter or digit, at most 32 characters (e.g. eu-west-1)",
            field=f"{field_prefix}code",
        )
    if isinstance(data.priority, bool) or not isinstance(data.priority, int) or data.priority < 1:
        raise ValidationError(
            f"invalid priority {data.priority!r}: expected a positive integer (1 = first choice)",
            field=f"{field_prefix}priority",
        )
    if data.image_registry is not None and not REGISTRY_PATTERN.fullmatch(data.image_registry):
        raise ValidationError(
            f"invalid imageRegistry {data.image_registry!r}: expected HOST or HOST:PORT of an image "
            "registry, without scheme or path (e.g. registry.eu-west-1.example.com or 10.0.1.5:5000)",
            field=f"{field_prefix}imageRegistry",
        )


def _check_unique(session: Session, data: RegionInput, *, exclude_id: int | None = None) -> None:
    for column, value, label in ((Region.name, data.name, "name"), (Region.code, data.code, "code")):
        query = select(Region.id).where(column == value)
        if exclude_id is not None:
            query = query.where(Region.id != exclude_id)
        if session.scalar(query) is not None:
            raise ConflictError(f"a region with {label} {value!r} already exists", details={"field": label})


def _make_primary(session: Session, region: Region) -> None:
    for other in session.scalars(select(Region).where(Region.is_primary.is_(True), Region.id != region.id)):
        other.is_primary = False
    region.is_primary = True


def create_regions(session: Session, items: list[RegionInput], *, actor: str) -> list[Region]:
    """Create one or more regions atomically; the first region ever created becomes primary."""
    primaries = [item for item in items if item.is_primary]
    if len(primaries) > 1:
        raise ValidationError("at most one region in a request can be primary", field="regions")
    codes = [item.code for item in items]
    names = [item.name for item in items]
    if len(set(codes)) != len(codes) or len(set(names)) != len(names):
        raise ConflictError("the request names the same region code or name twice")
    created: list[Region] = []
    for index, item in enumerate(items):
        prefix = f"regions[{index}]." if len(items) > 1 else ""
        _check_input(item, field_prefix=prefix)
        _check_unique(session, item)
        region = Region(
            name=item.name.strip(),
            code=item.code,
            priority=item.priority,
            is_primary=False,
            image_registry=item.image_registry,
        )
        session.add(region)
        session.flush()
        created.append(region)
    has_primary = session.scalar(select(Region.id).where(Region.is_primary.is_(True))) is not None
    if primaries:
        _make_primary(session, created[items.index(primaries[0])])
    elif not has_primary:
        created[0].is_primary = True
    for region in created:
        record_event(
            session,
            actor=actor,
            action="region.create",
            target_type="region",
            target_id=region.id,
            target_name=region.code,
            outcome="succeeded",
            reason="first region becomes primary" if region.is_primary and not primaries else None,
        )
    session.flush()
    return created


def get_region(session: Session, region_id: int) -> Region:
    region = session.get(Region, region_id)
    if region is None:
        raise NotFound(f"region {region_id} not found")
    return region


def find_region(session: Session, reference: int | str) -> Region:
    """Find a region by id or by code."""
    if isinstance(reference, int) or (isinstance(reference, str) and reference.isdigit()):
        return get_region(session, int(reference))
    region = session.scalar(select(Region).where(Region.code == reference))
    if region is None:
        raise NotFound(f"region {reference!r} not found")
    return region


def list_regions(session: Session) -> list[Region]:
    return list(session.scalars(select(Region).order_by(Region.priority, Region.id)))


def update_region(session: Session, region_id: int, data: RegionInput, *, actor: str) -> Region:
    region = get_region(session, region_id)
    _check_input(data)
    _check_unique(session, data, exclude_id=region.id)
    if region.is_primary and not data.is_primary:
        raise ConflictError(
            f"region {region.code!r} is the primary region: make another region primary instead "
            "(there is always exactly one)"
        )
    region.name, region.code, region.priority = data.name.strip(), data.code, data.priority
    region.image_registry = data.image_registry
    if data.is_primary:
        _make_primary(session, region)
    record_event(
        session,
        actor=actor,
        action="region.update",
        target_type="region",
        target_id=region.id,
        target_name=region.code,
        outcome="succeeded",
    )
    session.flush()
    return region


def server_count(session: Session, region_id: int) -> int:
    return session.scalar(select(func.count(Server.id)).where(Server.region_id == region_id)) or 0


def delete_region(session: Session, region_id: int, *, actor: str) -> None:
    region = get_region(session, region_id)
    servers = server_count(session, region.id)
    if servers:
        raise ConflictError(
            f"region {region.code!r} still has {servers} server(s): remove or move them first",
            details={"servers": servers},
        )
    others = session.scalar(select(func.count(Region.id)).where(Region.id != region.id)) or 0
    if region.is_primary and others:
        raise ConflictError(
            f"region {region.code!r} is the primary region: make another region primary before deleting it"
        )
    session.delete(region)
    record_event(
        session,
        actor=actor,
        action="region.delete",
        target_type="region",
        target_id=region_id,
        target_name=region.code,
        outcome="succeeded",
    )
    session.flush()


def registry_of(image: str) -> str | None:
    """Return the registry part ("host[:port]") of an image reference, or None for Docker Hub names."""
    return split_reference(image).registry


def image_for_region(session: Session, region_id: int, image: str) -> str:
    """Return the reference a region's nodes pull ``image`` by.

    An image kept in another region's registry is pulled from this region's own registry under
    the same repository, tag and digest, because a failover copies it there first. Any other
    image is used as written.
    """
    source = registry_of(image)
    if source is None:
        return image
    region = get_region(session, region_id)
    known = {item.image_registry for item in list_regions(session) if item.image_registry}
    if region.image_registry is None or source == region.image_registry or source not in known:
        return image
    return rewrite_registry(image, source, region.image_registry)
