"""Regions: ``POST /api/regions`` takes one region or the ``{"regions": [...]}`` document."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.orm import Session

from hostcraft.api.auth import Principal, current_principal, get_runtime
from hostcraft.api.schemas import RegionIn, RegionOut, RegionsIn, RegionsOut
from hostcraft.runtime import Runtime
from hostcraft.services import regions
from hostcraft.store.models import Region

router = APIRouter(prefix="/api/regions", tags=["regions"], dependencies=[Depends(current_principal)])


def region_out(session: Session, region: Region) -> RegionOut:
    out = RegionOut.model_validate(region)
    out.server_count = regions.server_count(session, region.id)
    return out


def _input(body: RegionIn) -> regions.RegionInput:
    return regions.RegionInput(
        name=body.name,
        code=body.code,
        is_primary=body.is_primary,
        priority=body.priority,
        image_registry=body.image_registry,
    )


def _parse_create_body(payload: Any) -> RegionIn | RegionsIn:
    """Read one region, or the architecture document's ``{"regions": [...]}`` shape."""
    model: type[RegionIn] | type[RegionsIn] = (
        RegionsIn if isinstance(payload, dict) and "regions" in payload else RegionIn
    )
    try:
        return model.model_validate(payload)
    except PydanticValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from exc


_CREATE_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/RegionIn"},
                        {"$ref": "#/components/schemas/RegionsIn"},
                    ]
                }
            }
        },
    }
}


@router.post(
    "",
    response_model=RegionOut | RegionsOut,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_CREATE_SCHEMA,
)
def create_regions(
    payload: Any = Body(default=None),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> RegionOut | RegionsOut:
    """Create one region, or several at once (all or none) from ``{"regions": [...]}``."""
    body = _parse_create_body(payload)
    items = body.regions if isinstance(body, RegionsIn) else [body]
    with runtime.store.session() as session:
        created = regions.create_regions(session, [_input(item) for item in items], actor=principal.actor)
        if isinstance(body, RegionsIn):
            return RegionsOut(regions=[region_out(session, region) for region in created])
        return region_out(session, created[0])


@router.get("", response_model=list[RegionOut])
def list_regions(runtime: Runtime = Depends(get_runtime)) -> list[RegionOut]:
    with runtime.store.session() as session:
        return [region_out(session, region) for region in regions.list_regions(session)]


@router.get("/{region_id}", response_model=RegionOut)
def get_region(region_id: int, runtime: Runtime = Depends(get_runtime)) -> RegionOut:
    with runtime.store.session() as session:
        return region_out(session, regions.get_region(session, region_id))


@router.put("/{region_id}", response_model=RegionOut)
def update_region(
    region_id: int,
    body: RegionIn,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> RegionOut:
    with runtime.store.session() as session:
        region = regions.update_region(session, region_id, _input(body), actor=principal.actor)
        return region_out(session, region)


@router.delete("/{region_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_region(
    region_id: int, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(current_principal)
) -> Response:
    with runtime.store.session() as session:
        regions.delete_region(session, region_id, actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
