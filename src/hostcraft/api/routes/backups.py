"""Backups: ``POST /api/applications/{id}/backups``, ``/api/backups``, restores and verification."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, status
from pydantic import Field, StrictBool

from hostcraft.api.auth import Principal, current_principal, get_runtime
from hostcraft.api.schemas import Body
from hostcraft.runtime import Runtime
from hostcraft.services import backup_replication as replication
from hostcraft.services import backup_restore, backup_verification, backups

router = APIRouter(tags=["backups"], dependencies=[Depends(current_principal)])


class BackupIn(Body):
    type: Literal["config", "volume", "database", "full"]
    upload_to_s3: StrictBool | None = None
    destination_id: int | None = None


class RestoreIn(Body):
    mode: Literal["replace", "new"] = "new"
    target_server_id: int | None = None
    target_region_id: int | None = None
    source_destination_id: int | None = Field(
        default=None, description="read from this destination (the primary or a replica) instead of choosing"
    )
    stop_app: StrictBool = False


class PointInTimeRestoreIn(RestoreIn):
    at: dt.datetime = Field(description="restore the newest succeeded backup taken at or before this time")


@router.post("/api/applications/{app_id}/backups", status_code=status.HTTP_202_ACCEPTED)
def create_backup(
    app_id: int,
    body: BackupIn,
    wait: bool = Query(default=False),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Queue a backup; poll ``GET /api/backups/{id}`` (or pass wait=true) for its outcome."""
    with runtime.store.session() as session:
        backup = backups.start_backup(
            session,
            runtime,
            app_id,
            kind=body.type,
            destination_id=body.destination_id,
            upload_to_s3=body.upload_to_s3,
            actor=principal.actor,
            wait=wait,
        )
        return backups.backup_out(backup)


@router.get("/api/applications/{app_id}/backups")
def list_app_backups(
    app_id: int,
    status_filter: str | None = Query(default=None, alias="status"),
    runtime: Runtime = Depends(get_runtime),
) -> list[dict[str, Any]]:
    with runtime.store.session() as session:
        return [
            backups.backup_out(item)
            for item in backups.list_backups(session, app_id=app_id, status=status_filter)
        ]


@router.get("/api/backups")
def list_backups(
    status_filter: str | None = Query(default=None, alias="status"),
    limit: int = Query(default=100, ge=1, le=1000),
    destination_id: int | None = Query(default=None, alias="destinationId"),
    region_id: int | None = Query(default=None, alias="regionId"),
    runtime: Runtime = Depends(get_runtime),
) -> list[dict[str, Any]]:
    """List backups; with ``destinationId`` or ``regionId``, the succeeded backups readable there."""
    with runtime.store.session() as session:
        if destination_id is not None or region_id is not None:
            return [
                {**backups.backup_out(item), "availableFrom": replication.source_out(source)}
                for item, source in replication.available_backups(
                    session, destination_id=destination_id, region_id=region_id, limit=limit
                )
            ]
        return [
            backups.backup_out(item)
            for item in backups.list_backups(session, status=status_filter, limit=limit)
        ]


@router.get("/api/backups/{backup_id}")
def get_backup(backup_id: int, runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """Return the backup with its restore tests (``verifications``, newest first)."""
    with runtime.store.session() as session:
        backup = backups.get_backup(session, backup_id)
        replicas = [
            replication.replica_out(session, item) for item in replication.replicas_of(session, backup.id)
        ]
        return {
            **backups.backup_out(backup),
            "replicas": replicas,
            "verifications": [
                backup_verification.verification_out(row)
                for row in backup_verification.verifications_of(session, backup.id)
            ],
        }


@router.post("/api/backups/{backup_id}/verify")
def verify_backup(backup_id: int, runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """Restore-test the backup now: each part is restored somewhere harmless and compared."""
    with runtime.store.session() as session:
        row = backup_verification.verify_backup(session, runtime, backup_id)
        return backup_verification.verification_out(row)


@router.post("/api/backup-destinations/{destination_id}/check")
def check_destination(
    destination_id: int,
    read_data_percent: float | None = Query(default=None, alias="readDataPercent", gt=0, le=100),
    runtime: Runtime = Depends(get_runtime),
) -> dict[str, Any]:
    """Run ``restic check --read-data-subset`` on the destination's repository now."""
    with runtime.store.session() as session:
        row = backup_verification.check_destination(
            session, runtime, destination_id, percent=read_data_percent
        )
        return backup_verification.verification_out(row)


@router.post("/api/backups/{backup_id}/restore")
def restore_backup(
    backup_id: int,
    body: RestoreIn,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Restore a succeeded backup; ``replace`` refuses a volume in use unless ``stopApp`` is true."""
    with runtime.store.session() as session:
        restore = backup_restore.restore_backup(
            session,
            runtime,
            backup_id,
            mode=body.mode,
            target_server_id=body.target_server_id,
            target_region_id=body.target_region_id,
            source_destination_id=body.source_destination_id,
            stop_app=body.stop_app,
            actor=principal.actor,
        )
        return backup_restore.restore_out(restore)


@router.post("/api/applications/{app_id}/restore")
def restore_point_in_time(
    app_id: int,
    body: PointInTimeRestoreIn,
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Restore the newest succeeded backup of the app taken at or before ``at``."""
    at = body.at if body.at.tzinfo else body.at.replace(tzinfo=dt.UTC)
    with runtime.store.session() as session:
        backup = backups.backup_at(session, app_id, at)
        restore = backup_restore.restore_backup(
            session,
            runtime,
            backup.id,
            mode=body.mode,
            target_server_id=body.target_server_id,
            target_region_id=body.target_region_id,
            source_destination_id=body.source_destination_id,
            stop_app=body.stop_app,
            actor=principal.actor,
        )
        return backup_restore.restore_out(restore)
