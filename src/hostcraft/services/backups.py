"""Backups of applications: config documents and volumes, written to restic repositories.

A backup is ``queued``, then ``running``, then ``succeeded`` or ``failed`` (later ``expired``
by retention). Volumes are backed up by a job pinned to the node that stores them. A failed
backup forgets every snapshot it wrote, so no part of it ever counts as a good backup.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import docker
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.backup.jobs import (
    BACKUP_MANIFEST_SCRIPT,
    VOLUME_MOUNT,
    JobResult,
    VolumeMount,
    manifest_digest,
    remove_job_containers,
    run_job,
)
from hostcraft.backup.restic import (
    BackupSummary,
    Restic,
    classify,
    error_summary,
    lock_conflict,
    parse_summary,
    repository_lock,
    retry_while_locked,
)
from hostcraft.docker.swarm import list_tasks, update_service_spec, wait_until
from hostcraft.errors import BackupError, ConflictError, HostCraftError, NotFound, ValidationError
from hostcraft.metrics import BACKUP_RUNS
from hostcraft.runtime import Runtime
from hostcraft.services.alerts import open_alert, resolve_alert
from hostcraft.services.applications import get_application, secret_values
from hostcraft.services.backup_destinations import find_destination, list_destinations, restic_for
from hostcraft.services.backup_replication import plan_replicas, replicate_backup
from hostcraft.services.events import record_event
from hostcraft.services.managers import any_manager
from hostcraft.services.regions import image_for_region
from hostcraft.services.servers import engine_client
from hostcraft.store.models import (
    Application,
    AppVolume,
    Backup,
    BackupDestination,
    Deployment,
    Server,
    utcnow,
)

logger = logging.getLogger(__name__)

Kind = Literal["config", "volume", "database", "full"]
KINDS = ("config", "volume", "database", "full")
ACTIVE_STATES = ("queued", "running")
# Attempts and the wait between them of the check after a backup while another backup, check or
# copy holds a conflicting lock (restic 0.14 cannot wait for a lock itself).
POST_BACKUP_CHECK_ATTEMPTS = 6
POST_BACKUP_CHECK_WAIT_SECONDS = 3.0
CONFIG_FILENAME = "config.json"
CONFIG_FORMAT = "hostcraft.config/1"
QUIESCE_TIMEOUT_SECONDS = 120.0

_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="backup")
_app_locks_guard = threading.Lock()
_app_locks: dict[int, threading.Lock] = {}
_node_slots_guard = threading.Lock()
_node_slots: dict[str, threading.BoundedSemaphore] = {}


ProgressCallback = Callable[[str], None]


@dataclass
class Part:
    part: str
    snapshot_id: str
    bytes_added: int
    total_bytes: int
    node: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "snapshotId": self.snapshot_id,
            "bytesAdded": self.bytes_added,
            "totalBytes": self.total_bytes,
            "node": self.node,
            **self.extra,
        }


def start_backup(
    session: Session,
    runtime: Runtime,
    app_id: int,
    *,
    kind: str,
    actor: str,
    destination_id: int | None = None,
    upload_to_s3: bool | None = None,
    trigger: str = "manual",
    wait: bool = False,
) -> Backup:
    """Queue a backup of the app and run it in the background (or now, with ``wait``)."""
    app = get_application(session, app_id)
    if kind not in KINDS:
        raise ValidationError(f"invalid type {kind!r}: expected one of {', '.join(KINDS)}", field="type")
    if kind == "database" and not app.spec.get("backupDatabases"):
        raise ValidationError(
            f"{app.name} declares no database: add backupDatabases to its spec, or back up the "
            "database's volume with type 'volume'",
            field="type",
        )
    destination = choose_destination(session, app, destination_id=destination_id, upload_to_s3=upload_to_s3)
    with _app_lock(app.id):
        running = active_backup(session, app.id)
        if running is not None:
            raise ConflictError(
                f"backup {running.id} of {app.name} is {running.status}: backups of one application never "
                "overlap, so wait for it to finish",
                details={"backupId": running.id},
            )
        backup = Backup(
            application_id=app.id,
            application_name=f"{app.project}/{app.name}",
            destination_id=destination.id,
            kind=kind,
            status="queued",
            trigger=trigger,
            actor=actor,
            options={"quiesce": app.spec.get("backupQuiesce") or "none"},
        )
        session.add(backup)
        session.commit()
    backup_id = backup.id
    if wait:
        run_backup(runtime, backup_id)
        session.expire_all()
        return session.get(Backup, backup_id) or backup
    _executor.submit(run_backup, runtime, backup_id)
    return backup


def choose_destination(
    session: Session, app: Application, *, destination_id: int | None, upload_to_s3: bool | None
) -> BackupDestination:
    """Pick the request's destination, else the app's ``backupDestination``, else the only fitting one."""
    if destination_id is not None:
        try:
            return find_destination(session, destination_id)
        except NotFound as exc:
            raise ValidationError(exc.message, field="destinationId") from exc
    if app.spec.get("backupDestination"):
        try:
            chosen = find_destination(session, app.spec["backupDestination"])
        except NotFound as exc:
            raise ValidationError(exc.message, field="backupDestination") from exc
        return _in_active_region(session, app, chosen)
    candidates = list_destinations(session)
    if upload_to_s3 is not None:
        candidates = [item for item in candidates if (item.kind == "s3") == upload_to_s3]
    in_region = [item for item in candidates if item.region_id in (None, app.region_id)]
    if not in_region:
        wanted = "an S3 " if upload_to_s3 else "a local " if upload_to_s3 is False else "a "
        raise ValidationError(
            f"no backup destination fits: add {wanted}destination with 'hostcraft backup destination add'",
            field="destinationId",
        )
    return in_region[0]


def _in_active_region(session: Session, app: Application, chosen: BackupDestination) -> BackupDestination:
    """After a failover, back up into the replica destination of the region the app now runs in.

    The configured destination then belongs to the lost region; replication copies each new
    backup back to it once it responds again (see ``replica_destinations``).
    """
    if chosen.region_id in (None, app.region_id):
        return chosen
    # The replicas may be named by the app (backupReplicateTo) or by the destination (replicateTo).
    references: list[str | int] = [*(app.spec.get("backupReplicateTo") or []), *(chosen.replicate_to or [])]
    for reference in references:
        try:
            replica = find_destination(session, reference)
        except NotFound:
            continue
        if replica.region_id == app.region_id:
            return replica
    return chosen


def active_backup(session: Session, app_id: int) -> Backup | None:
    query = select(Backup).where(Backup.application_id == app_id, Backup.status.in_(ACTIVE_STATES))
    return session.scalar(query.limit(1))


@contextmanager
def _app_lock(app_id: int) -> Iterator[None]:
    with _app_locks_guard:
        lock = _app_locks.setdefault(app_id, threading.Lock())
    with lock:
        yield


@contextmanager
def node_slot(node_id: str, limit: int) -> Iterator[None]:
    """Hold one of ``limit`` backup slots of a node for this process.

    NOTE: the limit holds per HostCraft process; the engine runs scheduled backups in the one
    process that holds the lease, but a manual backup through another replica is not counted.
    """
    with _node_slots_guard:
        slot = _node_slots.setdefault(node_id, threading.BoundedSemaphore(limit))
    with slot:
        yield


def run_backup(runtime: Runtime, backup_id: int, *, progress: ProgressCallback | None = None) -> None:
    """Run a queued backup to its end; every failure ends as status ``failed`` with the reason."""
    report = progress or (lambda message: None)
    with runtime.store.session() as session:
        backup = session.get(Backup, backup_id)
        if backup is None or backup.status != "queued":
            return
        backup.status = "running"
        backup.started_at = utcnow()
        session.commit()
        app = session.get(Application, backup.application_id) if backup.application_id else None
        destination = session.get(BackupDestination, backup.destination_id)
        assert destination is not None
        restic = restic_for(destination, runtime)
        written: list[Part] = []
        try:
            if app is None:
                raise NotFound(f"application of backup {backup.id} no longer exists")
            restic.ensure_initialised()
            if backup.kind in ("config", "full"):
                report("backing up the configuration")
                written.append(_backup_config(session, runtime, app, backup, restic))
            if backup.kind in ("volume", "full"):
                written.extend(_backup_volumes(session, runtime, app, backup, destination, report))
            if backup.kind in ("database", "full"):
                _backup_databases(session, runtime, app, backup, restic, report, written)
            report("checking the repository")
            backup.check_status = _check_repository(restic, backup.id)
            backup.checked_at = utcnow()
        except HostCraftError as exc:
            _fail(session, backup, restic, written, exc.message, app)
            return
        except Exception as exc:
            logger.exception("backup failed unexpectedly", extra={"backup_id": backup.id})
            _fail(session, backup, restic, written, f"internal error ({type(exc).__name__}: {exc})", app)
            return
        # Pending replica rows first, so a reader who sees "succeeded" also sees the copies coming.
        plan_replicas(session, backup)
        _succeed(session, backup, written, app)
    # Copies to other regions never change the backup's own outcome; failures alert and are retried.
    replicate_backup(runtime, backup_id)


def _check_repository(restic: Restic, backup_id: int) -> str:
    """Run ``restic check`` after a backup; return "passed", or "skipped" while the repository stays locked.

    Apps that back up into one repository on the same schedule, and the copies to replicas, hold
    locks at the same time, and restic 0.14 cannot wait for one. A lock shows nothing wrong with the
    data just written, so the backup still succeeds, and the engine's scheduled check covers it
    later. Any other check failure fails the backup.
    """
    try:
        retry_while_locked(
            restic.check, attempts=POST_BACKUP_CHECK_ATTEMPTS, wait_seconds=POST_BACKUP_CHECK_WAIT_SECONDS
        )
    except BackupError as exc:
        if not lock_conflict(exc.message):
            raise
        logger.warning(
            "repository check skipped: the repository stayed locked", extra={"backup_id": backup_id}
        )
        return "skipped"
    return "passed"


def _succeed(session: Session, backup: Backup, parts: list[Part], app: Application | None) -> None:
    finished = utcnow()
    backup.status = "succeeded"
    backup.parts = [part.to_json() for part in parts]
    backup.bytes_added = sum(part.bytes_added for part in parts)
    backup.total_bytes = sum(part.total_bytes for part in parts)
    backup.node = ", ".join(sorted({part.node for part in parts if part.node})) or None
    backup.finished_at = finished
    backup.duration_seconds = (finished - (backup.started_at or finished)).total_seconds()
    backup.message = None
    _record(session, backup, outcome="succeeded")
    if app is not None:
        resolve_alert(session, cause=f"app:{app.id}:backup", message=f"backup {backup.id} succeeded")
    session.commit()


def _fail(
    session: Session,
    backup: Backup,
    restic: Restic,
    written: list[Part],
    message: str,
    app: Application | None,
) -> None:
    """Mark the backup failed and forget what it wrote, so nothing of it counts as good."""
    forgotten = ""
    if written:
        try:
            restic.forget([part.snapshot_id for part in written], prune=False)
        except BackupError as exc:
            forgotten = f"; failed to forget its snapshots ({exc.message}), they stay unrecorded"
    finished = utcnow()
    backup.status = "failed"
    backup.parts = []
    backup.message = message + forgotten
    backup.finished_at = finished
    backup.duration_seconds = (finished - (backup.started_at or finished)).total_seconds()
    _record(session, backup, outcome="failed", reason=backup.message)
    if app is not None:
        open_alert(
            session,
            trigger="backup_failure",
            cause=f"app:{app.id}:backup",
            title=f"Backup of {app.project}/{app.name} failed",
            message=f"backup {backup.id} ({backup.kind}) failed: {backup.message}",
            application_id=app.id,
            region_id=app.region_id,
            details={"backupId": backup.id},
        )
    session.commit()
    logger.warning("backup failed", extra={"backup_id": backup.id, "reason": backup.message})


def _record(
    session: Session, backup: Backup, *, outcome: Literal["succeeded", "failed"], reason: str | None = None
) -> None:
    BACKUP_RUNS.labels(application=backup.application_name or "", type=backup.kind, outcome=outcome).inc()
    record_event(
        session,
        actor=backup.actor,
        action=f"backup.{backup.kind}",
        target_type="application",
        target_id=backup.application_id,
        target_name=backup.application_name,
        outcome=outcome,
        reason=reason,
        details={"backupId": backup.id, "trigger": backup.trigger},
    )


def _tags(backup: Backup, part: str) -> list[str]:
    return ["hostcraft", f"app:{backup.application_id}", f"backup:{backup.id}", f"part:{part}"]


# Config


def config_document(session: Session, runtime: Runtime, app: Application) -> dict[str, Any]:
    """Return the app's spec, its running deployment and its env and secret values.

    Secret values are included because every restic repository is encrypted with the
    destination's password; they never appear in API responses.
    """
    deployment = session.scalars(
        select(Deployment)
        .where(Deployment.application_id == app.id, Deployment.status == "succeeded")
        .order_by(Deployment.id.desc())
        .limit(1)
    ).first()
    volumes = session.scalars(select(AppVolume).where(AppVolume.application_id == app.id)).all()
    return {
        "format": CONFIG_FORMAT,
        "application": {"id": app.id, "region": app.region.code, **app.spec},
        "deployment": None
        if deployment is None
        else {
            "id": deployment.id,
            "image": deployment.image,
            "imageDigestReference": deployment.image_digest_reference,
            "spec": deployment.spec,
        },
        "env": dict(app.spec.get("env") or {}),
        "secretValues": secret_values(app, runtime),
        "volumes": [
            {"name": row.name, "swarmName": row.swarm_name, "driver": row.driver, "nodeId": row.node_id}
            for row in volumes
        ],
    }


def _backup_config(
    session: Session, runtime: Runtime, app: Application, backup: Backup, restic: Restic
) -> Part:
    document = json.dumps(config_document(session, runtime, app), indent=2, sort_keys=True).encode()
    summary = restic.backup_stdin(
        io.BytesIO(document), filename=CONFIG_FILENAME, tags=_tags(backup, "config"), host=_host(app)
    )
    return Part("config", summary.snapshot_id, summary.data_added, summary.total_bytes_processed, None)


def _host(app: Application) -> str:
    return f"{app.project}.{app.name}"


# Volumes


def _backup_volumes(
    session: Session,
    runtime: Runtime,
    app: Application,
    backup: Backup,
    destination: BackupDestination,
    report: ProgressCallback,
) -> list[Part]:
    rows = {
        row.name: row for row in session.scalars(select(AppVolume).where(AppVolume.application_id == app.id))
    }
    parts = []
    for volume in app.spec.get("volumes") or []:
        row = rows.get(volume["name"])
        if row is None or row.node_id is None:
            raise BackupError(
                f"volume {volume['name']} of {app.name} has no recorded node: deploy the app before backing "
                "up its volumes",
                reason="failed",
            )
        report(f"backing up volume {row.name} on {row.node_hostname or row.node_id}")
        quiesce = str(backup.options.get("quiesce") or "none")
        with (
            node_slot(row.node_id, runtime.settings.backup_node_concurrency),
            quiesced(session, runtime, app, mode=quiesce),
        ):
            summary, output = _volume_job(session, runtime, app, backup, destination, row)
        manifest, files = manifest_digest(output)
        parts.append(
            Part(
                f"volume:{row.name}",
                summary.snapshot_id,
                summary.data_added,
                summary.total_bytes_processed,
                row.node_hostname or row.node_id,
                {"manifestSha256": manifest, "files": files, "nodeId": row.node_id},
            )
        )
    return parts


def _volume_job(
    session: Session,
    runtime: Runtime,
    app: Application,
    backup: Backup,
    destination: BackupDestination,
    row: AppVolume,
) -> tuple[BackupSummary, str]:
    """Run the volume's backup job on its node; return restic's summary and the job's output."""
    repository = restic_for(destination, runtime).repository
    with (
        repository_lock(repository.url).shared(),
        any_manager(session, runtime, app.region_id, require_quorum=True) as (_, client),
    ):
        result = run_job(
            client,
            image=image_for_region(session, app.region_id, runtime.settings.backup_image),
            node_id=str(row.node_id),
            repository=repository,
            script=BACKUP_MANIFEST_SCRIPT,
            variables={
                "HC_SOURCE": VOLUME_MOUNT,
                "HC_HOST": _host(app),
                "HC_TAGS": ",".join(_tags(backup, f"volume:{row.name}")),
            },
            mounts=[VolumeMount(volume=row.swarm_name, target=VOLUME_MOUNT, read_only=True)],
            timeout=runtime.settings.backup_job_timeout_seconds,
            purpose="backup",
        )
    remove_finished_job(session, runtime, result)
    if result.node_id is not None and result.node_id != row.node_id:
        raise BackupError(
            f"the backup job of {row.name} ran on node {result.node_id}, not {row.node_id}", reason="failed"
        )
    summary = parse_summary(result.output.splitlines())
    if result.state != "complete" or result.exit_code != 0 or summary is None:
        detail = error_summary(result.output) or result.error or f"job ended {result.state}"
        raise BackupError(
            f"failed to back up volume {row.name} on {row.node_hostname or row.node_id}: {detail}",
            reason=classify(result.output + (result.error or "")),
            details={"exitCode": result.exit_code},
        )
    return summary, result.output


# Databases


def _backup_databases(
    session: Session,
    runtime: Runtime,
    app: Application,
    backup: Backup,
    restic: Restic,
    report: ProgressCallback,
    written: list[Part],
) -> None:
    """Dump each of the app's ``backupDatabases`` into restic; append each part as it is written."""
    from hostcraft.services import backup_databases as databases

    for entry in databases.database_entries(app):
        source = databases.database_source(app, runtime, entry)
        report(f"dumping database {entry['name']} ({entry['engine']})")
        with databases.database_container(session, runtime, app) as target:
            summary, dump = databases.dump_into_restic(
                restic,
                target,
                source,
                filename=databases.dump_filename(entry),
                tags=_tags(backup, f"database:{entry['name']}"),
                host=_host(app),
            )
            details: dict[str, Any] = {
                "engine": source.engine,
                "database": source.database,
                "filename": databases.dump_filename(entry),
                "dumpBytes": dump.size_bytes,
                "dumpSha256": dump.sha256,
                "format": dump.format,
                "toolVersion": dump.tool_version,
            }
            written.append(
                Part(
                    f"database:{entry['name']}",
                    summary.snapshot_id,
                    summary.data_added,
                    summary.total_bytes_processed,
                    target.node,
                    details,
                )
            )
            try:
                details["fingerprint"] = databases.fingerprint(target, source, source.database)
            except HostCraftError as exc:
                # The dump is good; only the later restore test loses its reference counts.
                logger.warning("failed to fingerprint database", extra={"error": exc.message})
                details["fingerprint"] = None


# Quiescing


@contextmanager
def quiesced(session: Session, runtime: Runtime, app: Application, *, mode: str) -> Iterator[None]:
    """Stop the app's writers during the block (``stop``: scale to 0) and always restore them.

    Whatever the block raises, the service gets back its original replica count; a failure
    to restore it opens an alert and is raised after the block's own error is recorded.
    """
    if mode == "none" or not app.service_id:
        yield
        return
    if mode == "pause":
        # TODO(#6): pausing needs each node's engine; "pause" quiesces like "stop" until then.
        logger.warning("pause quiescing is done by scaling to 0", extra={"app": app.name})
    original = _scale(session, runtime, app, replicas=0, wait_for_stop=True)
    try:
        yield
    finally:
        try:
            _scale(session, runtime, app, replicas=original, wait_for_stop=False)
        except HostCraftError as exc:
            open_alert(
                session,
                trigger="backup_failure",
                cause=f"app:{app.id}:quiesce",
                title=f"{app.project}/{app.name} was left scaled to 0 by a backup",
                message=f"failed to restore {original} replicas after quiescing: {exc.message}",
                application_id=app.id,
                region_id=app.region_id,
            )
            session.commit()
            raise


def _scale(
    session: Session, runtime: Runtime, app: Application, *, replicas: int, wait_for_stop: bool
) -> int:
    """Set the service's replica count; return the count it had before."""
    service_id = str(app.service_id)
    with any_manager(session, runtime, app.region_id, require_quorum=True) as (_, client):
        before: list[int] = []

        def set_replicas(spec: dict[str, Any]) -> None:
            mode = spec.get("Mode") or {}
            if "Replicated" not in mode:
                raise ConflictError(
                    f"{app.name} is not a replicated service, so it cannot be stopped for a backup"
                )
            before.append(int(mode["Replicated"].get("Replicas", 0)))
            spec["Mode"] = {"Replicated": {"Replicas": replicas}}

        update_service_spec(client, service_id, set_replicas)
        if wait_for_stop and not wait_until(
            lambda: not _live_tasks(client, service_id), timeout=QUIESCE_TIMEOUT_SECONDS
        ):
            raise BackupError(
                f"{app.name} still had running tasks {QUIESCE_TIMEOUT_SECONDS:.0f} s after scaling to 0",
                reason="failed",
            )
    return before[0]


def _live_tasks(client: docker.DockerClient, service_id: str) -> list[dict[str, Any]]:
    return [
        task
        for task in list_tasks(client, service=service_id)
        if (task.get("Status") or {}).get("State")
        in ("new", "pending", "assigned", "accepted", "preparing", "starting", "running")
    ]


# Reading


def get_backup(session: Session, backup_id: int) -> Backup:
    backup = session.get(Backup, backup_id)
    if backup is None:
        raise NotFound(f"backup {backup_id} not found")
    return backup


def list_backups(
    session: Session, *, app_id: int | None = None, status: str | None = None, limit: int = 100
) -> list[Backup]:
    query = select(Backup).order_by(Backup.id.desc()).limit(limit)
    if app_id is not None:
        query = query.where(Backup.application_id == app_id)
    if status:
        query = query.where(Backup.status == status)
    return list(session.scalars(query))


def backup_at(session: Session, app_id: int, at: dt.datetime) -> Backup:
    """Return the newest succeeded backup of the app taken at or before ``at`` (point in time)."""
    query = (
        select(Backup)
        .where(Backup.application_id == app_id, Backup.status == "succeeded", Backup.started_at <= at)
        .order_by(Backup.started_at.desc(), Backup.id.desc())
        .limit(1)
    )
    backup = session.scalars(query).first()
    if backup is None:
        raise NotFound(f"application {app_id} has no succeeded backup taken at or before {at.isoformat()}")
    return backup


def backup_out(backup: Backup) -> dict[str, Any]:
    def stamp(value: dt.datetime | None) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {
        "id": backup.id,
        "applicationId": backup.application_id,
        "application": backup.application_name,
        "destinationId": backup.destination_id,
        "type": backup.kind,
        "status": backup.status,
        "trigger": backup.trigger,
        "actor": backup.actor,
        "snapshots": backup.parts,
        "snapshotIds": [part["snapshotId"] for part in backup.parts],
        "bytesAdded": backup.bytes_added,
        "totalBytes": backup.total_bytes,
        "durationSeconds": backup.duration_seconds,
        "node": backup.node,
        "message": backup.message,
        "checkedAt": stamp(backup.checked_at),
        "checkStatus": backup.check_status,
        "restoreTestedAt": stamp(backup.restore_tested_at),
        "restoreTestStatus": backup.restore_test_status,
        "replicatedTo": backup.replicated_to,
        "createdAt": stamp(backup.created_at),
        "startedAt": stamp(backup.started_at),
        "finishedAt": stamp(backup.finished_at),
    }


def remove_finished_job(session: Session, runtime: Runtime, result: JobResult) -> None:
    """Remove a finished job's containers on its node, which keep the repository secrets.

    Best effort: a node that does not respond keeps them until an operator removes them, and
    the backup's outcome does not depend on it.
    """
    if result.node_id is None or result.service_id is None:
        return
    server = session.scalars(select(Server).where(Server.swarm_node_id == result.node_id)).first()
    if server is None:
        logger.warning(
            "failed to remove a finished job's containers: no server for node", extra={"node": result.node_id}
        )
        return
    try:
        with engine_client(server, runtime) as node_client:
            remove_job_containers(node_client, result.service_id)
    except Exception as exc:
        logger.warning(
            "failed to remove a finished job's containers",
            extra={"node": result.node_id, "service_id": result.service_id, "reason": str(exc)},
        )
