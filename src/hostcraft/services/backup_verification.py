"""Verification of backups: repository checks and restore tests, on demand and on a schedule.

A ``check`` runs ``restic check --read-data-subset=N%`` on a destination's repository, so over
successive runs every pack file is read back and its hashes compared. A ``restore_test``
restores each part of one backup somewhere harmless and compares it with what was recorded
when the backup was taken:

- config: the document is read back and parsed;
- volume: a job on the volume's node restores the snapshot into a scratch volume and prints a
  checksum manifest, which must equal the manifest the backup job printed;
- database: the dump read back must have the SHA-256 recorded at backup time. A named
  PostgreSQL or MySQL/MariaDB database is also loaded into a throwaway database (mode ``new``),
  whose row counts must equal the fingerprint taken at backup time.

Every result is a row of ``backup_verifications``. A failure opens a ``backup_failure`` alert
for the app (restore test) or the destination (check); the next pass resolves it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import docker.errors
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hostcraft.backup.databases import drop_database, scratch_name
from hostcraft.backup.jobs import CHECKSUM_SCRIPT, VOLUME_MOUNT, VolumeMount, manifest_digest, run_job
from hostcraft.backup.restic import Restic, error_summary, lock_conflict
from hostcraft.errors import BackupError, ConflictError, HostCraftError
from hostcraft.metrics import register_store_collector
from hostcraft.runtime import Runtime
from hostcraft.services import backup_databases as databases
from hostcraft.services.alerts import open_alert, resolve_alert
from hostcraft.services.backup_destinations import find_destination, restic_for
from hostcraft.services.backups import CONFIG_FILENAME, CONFIG_FORMAT, get_backup, remove_finished_job
from hostcraft.services.managers import any_manager
from hostcraft.services.regions import image_for_region
from hostcraft.services.servers import engine_client
from hostcraft.store.models import (
    Application,
    Backup,
    BackupDestination,
    BackupVerification,
    Server,
    utcnow,
)

logger = logging.getLogger(__name__)

SCRATCH_MOUNT = "/scratch"


class _Mismatch(Exception):
    """A restored part differs from what was recorded at backup time."""


# Restore tests


def verify_backup(
    session: Session, runtime: Runtime, backup_id: int, *, trigger: str = "manual"
) -> BackupVerification:
    """Restore-test every part of a succeeded backup now and record the result."""
    backup = get_backup(session, backup_id)
    if backup.status != "succeeded":
        raise ConflictError(f"backup {backup.id} is {backup.status}: only a succeeded backup can be verified")
    destination = session.get(BackupDestination, backup.destination_id)
    assert destination is not None
    app = session.get(Application, backup.application_id) if backup.application_id else None
    restic = restic_for(destination, runtime)
    started = utcnow()
    results: list[dict[str, Any]] = []
    failure: str | None = None
    for part in backup.parts:
        try:
            results.append(
                {
                    "part": part["part"],
                    "status": "passed",
                    **_test_part(session, runtime, app, restic, destination, part),
                }
            )
        except (_Mismatch, HostCraftError, ValueError) as exc:
            message = exc.message if isinstance(exc, HostCraftError) else str(exc) or type(exc).__name__
            results.append({"part": part["part"], "status": "failed", "message": message})
            failure = failure or f"{part['part']}: {message}"
            logger.warning(
                "restore test failed", extra={"backup_id": backup.id, "part": part["part"], "error": message}
            )
    status = "failed" if failure else "passed"
    row = BackupVerification(
        kind="restore_test",
        backup_id=backup.id,
        application_id=backup.application_id,
        destination_id=backup.destination_id,
        status=status,
        trigger=trigger,
        message=failure,
        details={"parts": results},
        started_at=started,
        finished_at=utcnow(),
    )
    session.add(row)
    backup.restore_tested_at = row.finished_at
    backup.restore_test_status = status
    cause = f"app:{backup.application_id}:restore-test"
    if failure:
        open_alert(
            session,
            trigger="backup_failure",
            cause=cause,
            title=f"Restore test of {backup.application_name} failed",
            message=f"backup {backup.id} could not be restored as recorded: {failure}",
            application_id=backup.application_id,
            region_id=app.region_id if app else None,
            details={"backupId": backup.id},
        )
    else:
        resolve_alert(session, cause=cause, message=f"restore test of backup {backup.id} passed")
    session.commit()
    return row


def _test_part(
    session: Session,
    runtime: Runtime,
    app: Application | None,
    restic: Restic,
    destination: BackupDestination,
    part: dict[str, Any],
) -> dict[str, Any]:
    if part["part"] == "config":
        document = json.loads(restic.read_file(part["snapshotId"], CONFIG_FILENAME))
        if document.get("format") != CONFIG_FORMAT:
            raise _Mismatch(f"the config document has format {document.get('format')!r}, not {CONFIG_FORMAT}")
        return {"compared": "format"}
    if app is None:
        raise _Mismatch("the application no longer exists, so there is nothing to restore into")
    if part["part"].startswith("volume:"):
        return _test_volume(session, runtime, app, destination, part)
    if part["part"].startswith("database:"):
        return _test_database(session, runtime, app, restic, part)
    raise _Mismatch(f"unknown part {part['part']!r}")


def _test_volume(
    session: Session, runtime: Runtime, app: Application, destination: BackupDestination, part: dict[str, Any]
) -> dict[str, Any]:
    node_id = part.get("nodeId") or _node_id(session, part.get("node"))
    if node_id is None:
        raise _Mismatch(f"the node of {part['part']} is not a registered server any more")
    scratch = f"hostcraft-verify-{uuid.uuid4().hex[:10]}"
    repository = restic_for(destination, runtime).repository
    try:
        with any_manager(session, runtime, app.region_id, require_quorum=True) as (_, client):
            result = run_job(
                client,
                image=image_for_region(session, app.region_id, runtime.settings.backup_image),
                node_id=node_id,
                repository=repository,
                script=CHECKSUM_SCRIPT,
                variables={"HC_SNAPSHOT": part["snapshotId"], "HC_SNAPSHOT_PATH": VOLUME_MOUNT},
                mounts=[VolumeMount(volume=scratch, target=SCRATCH_MOUNT, read_only=False)],
                timeout=runtime.settings.backup_job_timeout_seconds,
                purpose="verify",
            )
        # The job's container still uses the scratch volume, and it keeps the repository secrets.
        remove_finished_job(session, runtime, result)
    finally:
        _remove_volume(session, runtime, node_id, scratch)
    if result.state != "complete" or result.exit_code != 0:
        detail = error_summary(result.output) or result.error or f"job ended {result.state}"
        raise BackupError(
            f"failed to restore {part['part']} into a scratch volume: {detail}", reason="failed"
        )
    digest, files = manifest_digest(result.output)
    recorded = part.get("manifestSha256")
    if recorded is None:
        return {"compared": "restore only (no manifest recorded at backup time)", "files": files}
    if digest != recorded or files != part.get("files"):
        raise _Mismatch(
            f"the restored tree differs from the one backed up: {files} files and manifest {digest[:12]} "
            f"restored, {part.get('files')} files and manifest {recorded[:12]} recorded"
        )
    return {"compared": "checksum manifest", "files": files}


def _node_id(session: Session, hostname: str | None) -> str | None:
    if hostname is None:
        return None
    server = session.scalar(select(Server).where(Server.name == hostname))
    return server.swarm_node_id if server is not None else None


def _remove_volume(session: Session, runtime: Runtime, node_id: str, name: str) -> None:
    server = session.scalar(select(Server).where(Server.swarm_node_id == node_id))
    if server is None:
        return
    try:
        with engine_client(server, runtime) as client:
            client.volumes.get(name).remove(force=True)
    except (docker.errors.DockerException, HostCraftError, OSError) as exc:
        logger.warning(
            "failed to remove scratch volume", extra={"volume": name, "node": node_id, "error": str(exc)}
        )


def _test_database(
    session: Session, runtime: Runtime, app: Application, restic: Restic, part: dict[str, Any]
) -> dict[str, Any]:
    name = part["part"].removeprefix("database:")
    entry = databases.find_entry(app, name)
    filename = part.get("filename") or databases.dump_filename(entry)
    digest = hashlib.sha256()

    class _Hasher:
        def write(self, chunk: bytes) -> int:
            digest.update(chunk)
            return len(chunk)

        def flush(self) -> None:
            return None

    restic.dump(part["snapshotId"], filename, _Hasher())  # type: ignore[arg-type]
    if part.get("dumpSha256") and digest.hexdigest() != part["dumpSha256"]:
        raise _Mismatch(
            f"the dump read back has SHA-256 {digest.hexdigest()[:12]}, not {part['dumpSha256'][:12]}"
        )
    source = databases.database_source(app, runtime, {**entry, "database": part.get("database")})
    if source.engine == "redis" or source.database is None:
        return {"compared": "dump SHA-256"}
    throwaway = scratch_name(source.database, "verify")
    with databases.database_container(session, runtime, app) as target:
        try:
            databases.restore_from_restic(
                restic,
                target,
                source,
                snapshot_id=part["snapshotId"],
                filename=filename,
                target_database=throwaway,
                mode="new",
            )
            counts = databases.fingerprint(target, source, throwaway)
        finally:
            drop_database(target.client, target.container_id, source, throwaway)
    recorded = part.get("fingerprint")
    if recorded is None:
        return {"compared": "dump SHA-256 and a load into a throwaway database", "rows": counts}
    if counts != recorded:
        raise _Mismatch(
            f"the restored row counts {counts} differ from those recorded at backup time {recorded}"
        )
    return {"compared": "dump SHA-256 and row counts", "rows": counts}


# Repository checks


CHECK_LOCK_ATTEMPTS = 4
CHECK_LOCK_WAIT_SECONDS = 15.0


def check_destination(
    session: Session,
    runtime: Runtime,
    destination_id: int,
    *,
    percent: float | None = None,
    trigger: str = "manual",
) -> BackupVerification:
    """Run ``restic check --read-data-subset=N%`` on the destination's repository and record it."""
    destination = find_destination(session, destination_id)
    share = percent if percent is not None else runtime.settings.backup_check_read_data_percent
    subset = f"{share:g}%"
    started = utcnow()
    failure: str | None = None
    locked = False
    for attempt in range(CHECK_LOCK_ATTEMPTS):
        try:
            restic_for(destination, runtime).check(read_data_subset=subset)
            failure, locked = None, False
            break
        except BackupError as exc:
            failure = exc.message
            # restic 0.14 cannot wait for a lock, so a backup writing to the repository makes the
            # check fail at once. That tells nothing about the data: the check waits and retries.
            locked = lock_conflict(failure)
            if not locked:
                break
            if attempt + 1 < CHECK_LOCK_ATTEMPTS:
                time.sleep(CHECK_LOCK_WAIT_SECONDS)
    if failure:
        logger.warning(
            "repository check failed",
            extra={"destination_id": destination.id, "error": failure, "locked": locked},
        )
    status = "passed"
    if failure:
        status = "skipped" if locked else "failed"
    row = BackupVerification(
        kind="check",
        destination_id=destination.id,
        status=status,
        trigger=trigger,
        message=failure,
        details={"readDataSubset": subset},
        started_at=started,
        finished_at=utcnow(),
    )
    session.add(row)
    cause = f"destination:{destination.id}:check"
    # A check skipped because another operation held the repository raises no alert, because
    # the next pass checks again.
    if failure and not locked:
        open_alert(
            session,
            trigger="backup_failure",
            cause=cause,
            title=f"Repository check of backup destination {destination.name} failed",
            message=f"restic check --read-data-subset={subset} failed: {failure}",
            region_id=destination.region_id,
            details={"destinationId": destination.id},
        )
    elif not failure:
        resolve_alert(session, cause=cause, message=f"repository check of {destination.name} passed")
    session.commit()
    return row


# Schedule

_verifier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup-verify")
_pending_guard = threading.Lock()
_pending: list[Future[list[int]]] = []


def start_due_verifications(runtime: Runtime) -> bool:
    """Run ``run_due_verifications`` in the background unless a pass is still running.

    A restore test of a large volume takes minutes, so the engine tick must not wait for it.
    Returns whether a new pass was started.
    """
    with _pending_guard:
        if _pending and not _pending[0].done():
            return False
        _pending[:] = [_verifier.submit(_run_logged, runtime)]
    return True


def _run_logged(runtime: Runtime) -> list[int]:
    try:
        return run_due_verifications(runtime)
    except Exception:
        logger.exception("failed to run due backup verifications")
        return []


def run_due_verifications(runtime: Runtime, *, now: dt.datetime | None = None) -> list[int]:
    """Run each check and restore test whose interval has passed; return the verification ids.

    The last run's time comes from ``backup_verifications``, so a restart loses no schedule and
    a pass after downtime runs each overdue verification once.
    """
    now = now or utcnow()
    settings = runtime.settings
    done: list[int] = []
    with runtime.store.session() as session:
        if settings.backup_check_interval_hours > 0:
            interval = dt.timedelta(hours=settings.backup_check_interval_hours)
            for destination in session.scalars(select(BackupDestination).order_by(BackupDestination.id)):
                last = _last(session, "check", BackupVerification.destination_id == destination.id)
                if _has_backups(session, destination.id) and (last is None or now - last >= interval):
                    done.append(check_destination(session, runtime, destination.id, trigger="schedule").id)
        if settings.backup_restore_test_interval_hours > 0:
            interval = dt.timedelta(hours=settings.backup_restore_test_interval_hours)
            for app in session.scalars(select(Application).order_by(Application.id)):
                newest = _newest_good(session, app.id)
                last = _last(session, "restore_test", BackupVerification.application_id == app.id)
                if newest is not None and (last is None or now - last >= interval):
                    done.append(verify_backup(session, runtime, newest.id, trigger="schedule").id)
    return done


def _last(session: Session, kind: str, condition: Any) -> dt.datetime | None:
    query = select(func.max(BackupVerification.finished_at)).where(
        BackupVerification.kind == kind, BackupVerification.status != "skipped", condition
    )
    return session.scalar(query)


def _has_backups(session: Session, destination_id: int) -> bool:
    query = select(Backup.id).where(Backup.destination_id == destination_id, Backup.status == "succeeded")
    return session.scalar(query.limit(1)) is not None


def _newest_good(session: Session, app_id: int) -> Backup | None:
    query = (
        select(Backup)
        .where(Backup.application_id == app_id, Backup.status == "succeeded")
        .order_by(Backup.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


# Metrics


@register_store_collector
def backup_metrics(session: Session) -> Iterable[Metric]:
    """Yield the age of each app's newest good backup and the outcome of its last verifications."""
    age = GaugeMetricFamily(
        "hostcraft_backup_newest_good_age_seconds",
        "Seconds since the newest succeeded backup of the application finished.",
        labels=["application"],
    )
    verified = GaugeMetricFamily(
        "hostcraft_backup_last_verification_ok",
        "1 when the newest verification passed, 0 when it failed (restore_test per application, "
        "check per destination).",
        labels=["kind", "target"],
    )
    now = utcnow()
    newest = session.execute(
        select(Backup.application_name, func.max(Backup.finished_at))
        .where(Backup.status == "succeeded", Backup.application_id.is_not(None))
        .group_by(Backup.application_name)
    )
    for name, finished in newest:
        if finished is not None:
            age.add_metric([name or ""], (now - finished).total_seconds())
    latest = (
        select(func.max(BackupVerification.id))
        .group_by(
            BackupVerification.kind, BackupVerification.application_id, BackupVerification.destination_id
        )
        .scalar_subquery()
    )
    rows = session.scalars(select(BackupVerification).where(BackupVerification.id.in_(latest)))
    names = {row.id: row.name for row in session.scalars(select(BackupDestination))}
    apps = {row.id: f"{row.project}/{row.name}" for row in session.scalars(select(Application))}
    newest_by_target: dict[tuple[str, str], BackupVerification] = {}
    for row in sorted(rows, key=lambda item: item.id):
        if row.kind == "check":
            target = names.get(row.destination_id or 0, str(row.destination_id))
        else:
            target = apps.get(row.application_id or 0, str(row.application_id))
        newest_by_target[(row.kind, target)] = row
    for (kind, target), row in newest_by_target.items():
        verified.add_metric([kind, target], 1.0 if row.status == "passed" else 0.0)
    return [age, verified]


# Reading


def verifications_of(session: Session, backup_id: int) -> list[BackupVerification]:
    query = select(BackupVerification).where(BackupVerification.backup_id == backup_id)
    return list(session.scalars(query.order_by(BackupVerification.id.desc())))


def verification_out(row: BackupVerification) -> dict[str, Any]:
    def stamp(value: dt.datetime | None) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {
        "id": row.id,
        "kind": row.kind,
        "backupId": row.backup_id,
        "applicationId": row.application_id,
        "destinationId": row.destination_id,
        "status": row.status,
        "trigger": row.trigger,
        "message": row.message,
        "details": row.details,
        "startedAt": stamp(row.started_at),
        "finishedAt": stamp(row.finished_at),
    }
