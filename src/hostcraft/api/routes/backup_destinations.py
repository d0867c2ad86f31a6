"""Backup destinations: ``/api/backup-destinations``, their test and the repository key export."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Depends, Response, status
from pydantic import Field, StrictBool

from hostcraft.api.auth import Principal, current_principal, get_runtime, require_admin
from hostcraft.api.schemas import Body
from hostcraft.runtime import Runtime
from hostcraft.services import backup_destinations as destinations

router = APIRouter(
    prefix="/api/backup-destinations", tags=["backups"], dependencies=[Depends(current_principal)]
)


class DestinationIn(Body):
    name: str = Field(min_length=1, max_length=64)
    kind: Literal["local", "s3"]
    path: str | None = Field(default=None, max_length=1024)
    endpoint: str | None = Field(default=None, max_length=512)
    bucket: str | None = Field(default=None, max_length=63)
    prefix: str = Field(default="", max_length=512)
    s3_region: str | None = Field(default=None, max_length=64)
    path_style: StrictBool = True
    access_key: str | None = Field(default=None, max_length=256)
    secret_key: str | None = Field(default=None, max_length=1024, repr=False)
    region_id: int | None = None
    replicate_to: list[int] = Field(
        default_factory=list, max_length=16, description="ids of destinations every backup here is copied to"
    )

    def to_input(self) -> destinations.DestinationInput:
        return destinations.DestinationInput(**self.model_dump())


@router.post("", status_code=status.HTTP_201_CREATED)
def create_destination(
    body: DestinationIn,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Store a destination with a new random repository password; the secret key is write-only."""
    with runtime.store.session() as session:
        destination = destinations.create_destination(
            session, runtime, body.to_input(), actor=principal.actor
        )
        return destinations.destination_out(destination)


@router.get("")
def list_destinations(runtime: Runtime = Depends(get_runtime)) -> list[dict[str, Any]]:
    with runtime.store.session() as session:
        return [destinations.destination_out(item) for item in destinations.list_destinations(session)]


@router.get("/{destination_id}")
def get_destination(destination_id: int, runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    with runtime.store.session() as session:
        return destinations.destination_out(destinations.get_destination(session, destination_id))


@router.put("/{destination_id}")
def update_destination(
    destination_id: int,
    body: DestinationIn,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Replace the location; a missing secretKey keeps the stored one."""
    with runtime.store.session() as session:
        destination = destinations.update_destination(
            session, runtime, destination_id, body.to_input(), actor=principal.actor
        )
        return destinations.destination_out(destination)


@router.delete("/{destination_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_destination(
    destination_id: int,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> Response:
    with runtime.store.session() as session:
        destinations.delete_destination(session, destination_id, actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{destination_id}/test")
def test_destination(
    destination_id: int,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Write, list, read and delete a probe snapshot; ``reason`` names the first fault found."""
    with runtime.store.session() as session:
        report = destinations.test_destination(session, runtime, destination_id, actor=principal.actor)
        return {
            "ok": report.ok,
            "reason": report.reason,
            "message": report.message,
            "steps": [asdict(step) for step in report.steps],
        }


@router.post("/{destination_id}/export-key")
def export_key(
    destination_id: int,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """Return the restic repository password (admins only); backups cannot be restored without it."""
    with runtime.store.session() as session:
        destination = destinations.get_destination(session, destination_id)
        password = destinations.export_key(session, runtime, destination_id, actor=principal.actor)
        return {
            "id": destination.id,
            "name": destination.name,
            "repository": destinations.repository_url(destination),
            "password": password,
        }
