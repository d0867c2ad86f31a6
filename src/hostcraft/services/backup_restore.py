"""Restores of backups, to the same or another server or region.

``replace`` gives a volume exactly the backed-up tree: the snapshot is restored into a
staging folder inside the volume first, so a restore that fails leaves the old data in
place, and only then does the old content make way. A volume in use is refused unless the
caller asks to stop the app, which is then restarted with its replica count. ``new`` writes
into a new volume (``<volume>_restore<backup id>``) and never touches the original.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.backup.database_restores import wait_until_accepting
from hostcraft.backup.jobs import RESTORE_SCRIPT, VOLUME_MOUNT, VolumeMount, run_job
from hostcraft.backup.restic import error_summary
from hostcraft.errors import BackupError, ConflictError, HostCraftError, NotFound, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services import applications
from hostcraft.services.backup_destinations import restic_for
from hostcraft.services.backup_replication import restore_source
from hostcraft.services.backups import CONFIG_FILENAME, _live_tasks, get_backup, quiesced, remove_finished_job
from hostcraft.services.events import record_event
from hostcraft.services.managers import any_manager
from hostcraft.services.regions import image_for_region
from hostcraft.services.servers import get_server, list_servers
from hostcraft.store.models import (
    Application,
    AppVolume,
    Backup,
    BackupDestination,
    BackupRestore,
    Server,
    utcnow,
)

logger = logging.getLogger(__name__)

# How long a restore waits for a database that has just started (after a failover or a volume
# restore) to replay its log and accept clients. NOTE: an estimate, not measured on large databases.
DATABASE_READY_TIMEOUT_SECONDS = 180.0

Mode = Literal["replace", "new"]


@dataclass(frozen=True)
class Target:
    region_id: int
    server: Server | None


def restore_backup(
    session: Session,
    runtime: Runtime,
    backup_id: int,
    *,
    mode: str,
    actor: str,
    target_server_id: int | None = None,
    target_region_id: int | None = None,
    source_destination_id: int | None = None,
    stop_app: bool = False,
) -> BackupRestore:
    """Restore every part of a succeeded backup; raise BackupError (with the record kept) on failure."""
    backup = get_backup(session, backup_id)
    if backup.status != "succeeded":
        raise ConflictError(f"backup {backup.id} is {backup.status}: only a succeeded backup can be restored")
    if mode not in ("replace", "new"):
        raise ValidationError(f"invalid mode {mode!r}: expected 'replace' or 'new'", field="mode")
    app = session.get(Application, backup.application_id) if backup.application_id else None
    if app is None:
        raise NotFound(f"the application of backup {backup.id} no longer exists: restore its config first")
    target = _target(session, app, target_server_id=target_server_id, target_region_id=target_region_id)
    source = restore_source(
        session,
        runtime,
        backup,
        target_region_id=target.region_id,
        source_destination_id=source_destination_id,
    )
    restore = BackupRestore(
        backup_id=backup.id,
        mode=mode,
        status="running",
        target_server_id=target.server.id if target.server else None,
        target={"regionId": target.region_id, "sourceDestinationId": source.destination.id},
        actor=actor,
    )
    session.add(restore)
    session.commit()
    destination = source.destination
    restored: list[dict[str, Any]] = []
    try:
        for part in source.parts:
            if part["part"] == "config":
                restored.append(
                    _restore_config(
                        session,
                        runtime,
                        app,
                        backup,
                        destination,
                        part,
                        mode=mode,
                        actor=actor,
                        target_region_id=target.region_id,
                    )
                )
            elif part["part"].startswith("volume:"):
                restored.append(
                    _restore_volume(
                        session, runtime, app, backup, destination, part, target, mode=mode, stop_app=stop_app
                    )
                )
            elif part["part"].startswith("database:"):
                restored.append(
                    restore_database_part(session, runtime, app, backup, destination, part, mode=mode)
                )
    except HostCraftError as exc:
        _finish(session, restore, backup, app, status="failed", message=exc.message, restored=restored)
        exc.details.setdefault("restoreId", restore.id)
        raise
    _finish(session, restore, backup, app, status="succeeded", message=None, restored=restored)
    return restore


def _target(
    session: Session, app: Application, *, target_server_id: int | None, target_region_id: int | None
) -> Target:
    if target_server_id is not None:
        try:
            server = get_server(session, target_server_id)
        except NotFound as exc:
            raise ValidationError(exc.message, field="targetServerId") from exc
        if not server.swarm_node_id:
            raise ValidationError(
                f"server {server.name} is not a swarm node: validate it or join it to its region's swarm",
                field="targetServerId",
            )
        return Target(region_id=server.region_id, server=server)
    if target_region_id is not None:
        servers = [item for item in list_servers(session, region_id=target_region_id) if item.swarm_node_id]
        if not servers:
            raise ValidationError(
                f"region {target_region_id} has no swarm node to restore to", field="targetRegionId"
            )
        return Target(region_id=target_region_id, server=servers[0])
    return Target(region_id=app.region_id, server=None)


def _restore_volume(
    session: Session,
    runtime: Runtime,
    app: Application,
    backup: Backup,
    destination: BackupDestination,
    part: dict[str, Any],
    target: Target,
    *,
    mode: str,
    stop_app: bool,
) -> dict[str, Any]:
    name = part["part"].removeprefix("volume:")
    row = session.scalar(select(AppVolume).where(AppVolume.application_id == app.id, AppVolume.name == name))
    swarm_name = row.swarm_name if row else f"{app.project}_{name}"
    node_id = row.node_id if row else None
    if target.server is not None:
        node_id = target.server.swarm_node_id
    if node_id is None:
        raise ValidationError(
            f"volume {name} has no recorded node: pass targetServerId", field="targetServerId"
        )
    volume = swarm_name if mode == "replace" else f"{swarm_name}_restore{backup.id}"
    in_place = mode == "replace" and target.region_id == app.region_id and app.service_id is not None
    if in_place and _in_use(session, runtime, app) and not stop_app:
        raise ConflictError(
            f"volume {swarm_name} is in use by {app.project}/{app.name}: pass stopApp: true to stop the app "
            "during the restore (it is restarted afterwards), or restore with mode 'new'",
            details={"field": "stopApp", "volume": swarm_name},
        )
    quiesce = "stop" if in_place and stop_app else "none"
    with quiesced(session, runtime, app, mode=quiesce):
        run_restore_job(session, runtime, target.region_id, destination, part, node_id=node_id, volume=volume)
    return {"part": part["part"], "volume": volume, "nodeId": node_id, "snapshotId": part["snapshotId"]}


def _in_use(session: Session, runtime: Runtime, app: Application) -> bool:
    with any_manager(session, runtime, app.region_id, require_quorum=False) as (_, client):
        return bool(_live_tasks(client, str(app.service_id)))


def run_restore_job(
    session: Session,
    runtime: Runtime,
    region_id: int,
    destination: BackupDestination,
    part: dict[str, Any],
    *,
    node_id: str,
    volume: str,
) -> None:
    repository = restic_for(destination, runtime).repository
    with any_manager(session, runtime, region_id, require_quorum=True) as (_, client):
        result = run_job(
            client,
            image=image_for_region(session, region_id, runtime.settings.backup_image),
            node_id=node_id,
            repository=repository,
            script=RESTORE_SCRIPT,
            variables={
                "HC_TARGET": VOLUME_MOUNT,
                "HC_SNAPSHOT": part["snapshotId"],
                "HC_SNAPSHOT_PATH": VOLUME_MOUNT,
                "HC_RUN": uuid.uuid4().hex[:12],
            },
            mounts=[VolumeMount(volume=volume, target=VOLUME_MOUNT, read_only=False)],
            timeout=runtime.settings.backup_job_timeout_seconds,
            purpose="restore",
        )
    remove_finished_job(session, runtime, result)
    if result.state != "complete" or result.exit_code != 0 or "restored" not in result.output.splitlines():
        detail = error_summary(result.output) or result.error or f"job ended {result.state}"
        kept = (
            "the volume's data was left as it was"
            if result.exit_code in (1, 2)
            else "the volume may be partly replaced"
        )
        raise BackupError(
            f"failed to restore {part['part']} into {volume}: {detail}; {kept}", reason="failed"
        )


def restore_database_part(
    session: Session,
    runtime: Runtime,
    app: Application,
    backup: Backup,
    destination: BackupDestination,
    part: dict[str, Any],
    *,
    mode: str,
) -> dict[str, Any]:
    """Load a database dump into the app's running database: scratch database first, then swap.

    ``new`` loads into ``<database>_restore<backup id>`` and leaves the original alone.
    """
    from hostcraft.services import backup_databases as databases

    name = part["part"].removeprefix("database:")
    entry = databases.find_entry(app, name)
    source = databases.database_source(app, runtime, {**entry, "database": part.get("database")})
    target_database = source.database
    if mode == "new" and source.database is not None:
        target_database = f"{source.database}_restore{backup.id}"[:63]
    with databases.database_container(session, runtime, app) as target:
        wait_until_accepting(
            target.client, target.container_id, source, timeout=DATABASE_READY_TIMEOUT_SECONDS
        )
        result = databases.restore_from_restic(
            restic_for(destination, runtime),
            target,
            source,
            snapshot_id=part["snapshotId"],
            filename=part.get("filename") or databases.dump_filename(entry),
            target_database=target_database,
            mode=mode,
        )
    return {
        "part": part["part"],
        "database": result.database,
        "node": target.node,
        "snapshotId": part["snapshotId"],
        "bytes": result.size_bytes,
    }


def _restore_config(
    session: Session,
    runtime: Runtime,
    app: Application,
    backup: Backup,
    destination: BackupDestination,
    part: dict[str, Any],
    *,
    mode: str,
    actor: str,
    target_region_id: int | None = None,
) -> dict[str, Any]:
    """Put the backed-up spec and secrets back (replace) or store them as a new app (new)."""
    document = json.loads(restic_for(destination, runtime).read_file(part["snapshotId"], CONFIG_FILENAME))
    spec = dict(document["application"])
    spec.pop("id", None)
    region = spec.pop("region", None)
    values = document.get("secretValues") or {}
    spec["secrets"] = [
        {**secret, "value": values.get(secret["name"], "")} for secret in spec.get("secrets") or []
    ]
    if mode == "replace":
        applications.update_application(
            session, runtime, app.id, {**spec, "region": app.region_id}, actor=actor
        )
        return {"part": "config", "applicationId": app.id}
    spec["name"] = f"{spec['name']}-r{backup.id}"[:63]
    # The new app must not share the original's volumes: it gets the volumes a restore of this
    # backup creates (``<volume>_restore<id>``), in the region the restore targets.
    spec["volumes"] = [
        {**volume, "name": f"{volume['name']}_restore{backup.id}"} for volume in spec.get("volumes") or []
    ]
    created = applications.create_application(
        session, runtime, {**spec, "region": target_region_id or region}, actor=actor
    )
    return {"part": "config", "applicationId": created.id}


def _finish(
    session: Session,
    restore: BackupRestore,
    backup: Backup,
    app: Application,
    *,
    status: str,
    message: str | None,
    restored: list[dict[str, Any]],
) -> None:
    restore.status = status
    restore.message = message
    restore.target = {**restore.target, "restored": restored}
    restore.finished_at = utcnow()
    record_event(
        session,
        actor=restore.actor,
        action=f"backup.restore.{restore.mode}",
        target_type="application",
        target_id=app.id,
        target_name=f"{app.project}/{app.name}",
        outcome="succeeded" if status == "succeeded" else "failed",
        reason=message,
        details={"backupId": backup.id, "restoreId": restore.id},
    )
    session.commit()


def restore_out(restore: BackupRestore) -> dict[str, Any]:
    def stamp(value: dt.datetime | None) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {
        "id": restore.id,
        "backupId": restore.backup_id,
        "mode": restore.mode,
        "status": restore.status,
        "targetServerId": restore.target_server_id,
        "targetRegionId": restore.target.get("regionId"),
        "sourceDestinationId": restore.target.get("sourceDestinationId"),
        "restored": restore.target.get("restored", []),
        "message": restore.message,
        "actor": restore.actor,
        "createdAt": stamp(restore.created_at),
        "finishedAt": stamp(restore.finished_at),
    }
