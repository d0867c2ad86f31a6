"""HostCraft's own backups: ``GET /api/self-backup`` and ``POST /api/self-backup/run``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, status

from hostcraft.api.auth import Principal, current_principal, get_runtime, require_admin
from hostcraft.api.schemas import Body
from hostcraft.runtime import Runtime
from hostcraft.services import self_backup

router = APIRouter(prefix="/api/self-backup", tags=["backups"], dependencies=[Depends(current_principal)])


class SelfBackupRunIn(Body):
    destination_id: int | None = None


@router.get("")
def get_self_backup(
    limit: int = Query(default=20, ge=1, le=500), runtime: Runtime = Depends(get_runtime)
) -> dict[str, Any]:
    """Return the schedule, the configured destination and the last runs, newest first."""
    with runtime.store.session() as session:
        return self_backup.self_backup_status(session, runtime, limit=limit)


@router.post("/run", status_code=status.HTTP_202_ACCEPTED)
def run_self_backup(
    body: SelfBackupRunIn | None = None,
    wait: bool = Query(default=False),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """Back up the store and the secret key now; poll ``GET /api/self-backup`` or pass wait=true."""
    with runtime.store.session() as session:
        row = self_backup.start_self_backup(
            session,
            runtime,
            actor=principal.actor,
            destination_id=body.destination_id if body else None,
            wait=wait,
        )
        return self_backup.self_backup_out(row)
