"""Backups of HostCraft's own state: the store and the secret key, in a destination's restic repository.

One self-backup writes two ``--stdin`` snapshots tagged ``hostcraft-self`` and
``self-backup:<id>``: ``part:store`` contains ``hostcraft.db`` (a SQLite online backup) or
``hostcraft.pgdump`` (``pg_dump -Fc``), and ``part:key`` contains ``secret.key``, the Fernet key
that decrypts every stored secret. ``restore_self`` reads them back with restic alone, so a
new machine needs only the repository location and the destination's restic password.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from hostcraft.backup.restic import Repository, Restic, Snapshot
from hostcraft.crypto import KEY_FILE_NAME, load_or_create_key
from hostcraft.domain.backup_policy import decide
from hostcraft.errors import BackupError, ConflictError, HostCraftError, NotFound, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services.alerts import open_alert, resolve_alert
from hostcraft.services.backup_destinations import find_destination, restic_for
from hostcraft.services.events import record_event
from hostcraft.store.models import BackupDestination, BackupSchedule, SelfBackup, utcnow

logger = logging.getLogger(__name__)

SELF_TAG = "hostcraft-self"
SQLITE_FILENAME = "hostcraft.db"
POSTGRES_FILENAME = "hostcraft.pgdump"
SCHEDULE_KEY = "hostcraft-self"
ALERT_CAUSE = "hostcraft:self-backup"
PG_DUMP_MAGIC = b"PGDMP"

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="self-backup")


# Backing up


def start_self_backup(
    session: Session,
    runtime: Runtime,
    *,
    actor: str,
    destination_id: int | None = None,
    trigger: str = "manual",
    wait: bool = False,
) -> SelfBackup:
    """Record a self-backup and run it in the background (or now, with ``wait``)."""
    destination = _destination(session, runtime, destination_id)
    _fail_interrupted(session, runtime)
    running = session.scalar(select(SelfBackup).where(SelfBackup.status == "running").limit(1))
    if running is not None:
        raise ConflictError(
            f"self-backup {running.id} is still running: wait for it to finish",
            details={"selfBackupId": running.id},
        )
    row = SelfBackup(
        destination_id=destination.id,
        destination_name=destination.name,
        status="running",
        trigger=trigger,
        actor=actor,
        store_kind="sqlite" if runtime.store.url.startswith("sqlite") else "postgresql",
    )
    session.add(row)
    session.commit()
    if wait:
        run_self_backup(runtime, row.id)
        session.expire_all()
        return session.get(SelfBackup, row.id) or row
    _executor.submit(run_self_backup, runtime, row.id)
    return row


def _fail_interrupted(session: Session, runtime: Runtime) -> None:
    """Mark runs as failed that are still ``running`` past the job time limit (their process stopped)."""
    limit = utcnow() - dt.timedelta(seconds=runtime.settings.backup_job_timeout_seconds)
    stale = session.scalars(
        select(SelfBackup).where(SelfBackup.status == "running", SelfBackup.started_at < limit)
    )
    for row in stale:
        row.status = "failed"
        row.message = "interrupted: the HostCraft process running it stopped"
        row.finished_at = utcnow()
    session.flush()


def _destination(session: Session, runtime: Runtime, destination_id: int | None) -> BackupDestination:
    reference: str | int | None = destination_id
    if reference is None:
        reference = runtime.settings.self_backup_destination
    if reference is None:
        raise ValidationError(
            "no destination for the self-backup: pass destinationId or set "
            "HOSTCRAFT_SELF_BACKUP_DESTINATION to a destination id or name",
            field="destinationId",
        )
    try:
        return find_destination(session, reference)
    except NotFound as exc:
        raise ValidationError(exc.message, field="destinationId") from exc


def run_self_backup(runtime: Runtime, self_backup_id: int) -> None:
    """Write the store and the key into the destination's repository; every failure ends as ``failed``."""
    with runtime.store.session() as session:
        row = session.get(SelfBackup, self_backup_id)
        if row is None or row.status != "running":
            return
        destination = session.get(BackupDestination, row.destination_id) if row.destination_id else None
        if destination is None:
            row.status, row.finished_at = "failed", utcnow()
            row.message = f"backup destination {row.destination_name} was deleted before the run started"
            session.commit()
            return
        restic = restic_for(destination, runtime)
        written: list[dict[str, Any]] = []
        try:
            restic.ensure_initialised()
            with tempfile.TemporaryDirectory(dir=runtime.settings.data_dir, prefix="self-backup-") as folder:
                dump = _dump_store(runtime, Path(folder))
                written.append(_write_part(restic, row, "store", dump))
                key = Path(folder) / KEY_FILE_NAME
                key.write_bytes(load_or_create_key(runtime.settings.data_dir, runtime.settings.secret_key))
                written.append(_write_part(restic, row, "key", key))
            restic.check()
        except HostCraftError as exc:
            _fail(session, row, restic, written, exc.message)
            return
        except (OSError, sqlite3.Error) as exc:
            _fail(session, row, restic, written, f"failed to read the store: {exc}")
            return
        row.status = "succeeded"
        row.parts = written
        row.finished_at = utcnow()
        resolve_alert(session, cause=ALERT_CAUSE, message=f"self-backup {row.id} succeeded")
        _event(session, row, outcome="succeeded")
        session.commit()
        logger.info(
            "self-backup succeeded", extra={"self_backup_id": row.id, "destination": destination.name}
        )


def _write_part(restic: Restic, row: SelfBackup, part: str, path: Path) -> dict[str, Any]:
    tags = [SELF_TAG, f"self-backup:{row.id}", f"part:{part}"]
    with path.open("rb") as source:
        summary = restic.backup_stdin(source, filename=path.name, tags=tags, host=socket.gethostname())
    return {
        "part": part,
        "snapshotId": summary.snapshot_id,
        "filename": path.name,
        "bytes": path.stat().st_size,
    }


def _fail(
    session: Session, row: SelfBackup, restic: Restic, written: list[dict[str, Any]], message: str
) -> None:
    """Mark the run failed and forget its snapshots, so restore-self never picks half a backup."""
    if written:
        try:
            restic.forget([part["snapshotId"] for part in written], prune=False)
        except BackupError as exc:
            message += f"; failed to forget its snapshots ({exc.message})"
    row.status = "failed"
    row.message = message
    row.finished_at = utcnow()
    open_alert(
        session,
        trigger="backup_failure",
        cause=ALERT_CAUSE,
        title="Backup of HostCraft's own store failed",
        message=f"self-backup {row.id} to {row.destination_name} failed: {message}",
        details={"selfBackupId": row.id},
    )
    _event(session, row, outcome="failed", reason=message)
    session.commit()
    logger.warning("self-backup failed", extra={"self_backup_id": row.id, "error": message})


def _event(
    session: Session,
    row: SelfBackup,
    *,
    outcome: Literal["succeeded", "failed"],
    reason: str | None = None,
) -> None:
    record_event(
        session,
        actor=row.actor,
        action="self_backup.run",
        target_type="backup_destination",
        target_id=row.destination_id,
        target_name=row.destination_name,
        outcome=outcome,
        reason=reason,
        details={"selfBackupId": row.id, "trigger": row.trigger},
    )


def _dump_store(runtime: Runtime, folder: Path) -> Path:
    url = make_url(runtime.store.url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_online_backup(Path(str(url.database)), folder / SQLITE_FILENAME)
    return _pg_dump(url, folder / POSTGRES_FILENAME)


def _sqlite_online_backup(source: Path, target: Path) -> Path:
    """Copy a live SQLite database page by page; writers may continue meanwhile (SQLite backup API)."""
    with sqlite3.connect(source) as live, sqlite3.connect(target) as copy:
        live.backup(copy)
    return target


def _pg_dump(url: URL, target: Path) -> Path:
    """Dump the store database with ``pg_dump -Fc``; a non-zero exit or a file without the header fails."""
    command = ["pg_dump", "--format=custom", "--no-password", "--file", str(target), *_libpq_args(url)]
    result = _run_tool(command, url, action="dump the store with pg_dump")
    if not target.exists() or not target.read_bytes()[: len(PG_DUMP_MAGIC)] == PG_DUMP_MAGIC:
        raise BackupError(f"pg_dump wrote no custom-format dump ({result.strip()[:200]})", reason="failed")
    return target


def _libpq_args(url: URL) -> list[str]:
    args = ["--dbname", str(url.database)]
    if url.host:
        args += ["--host", url.host]
    if url.port:
        args += ["--port", str(url.port)]
    if url.username:
        args += ["--username", url.username]
    return args


def _run_tool(command: list[str], url: URL, *, action: str) -> str:
    if shutil.which(command[0]) is None:
        raise BackupError(
            f"failed to {action}: {command[0]} is not installed (install the postgresql-client package)",
            reason="failed",
        )
    environment = {
        key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "TMPDIR")
    }
    if url.password:
        environment["PGPASSWORD"] = str(url.password)
    result = subprocess.run(command, capture_output=True, env=environment, check=False)
    stderr = result.stderr.decode(errors="replace").strip()
    if result.returncode != 0:
        raise BackupError(
            f"failed to {action}: {stderr[-800:] or f'exit status {result.returncode}'}", reason="failed"
        )
    return stderr


# Schedule


def run_due_self_backup(
    runtime: Runtime, *, now: dt.datetime | None = None, wait: bool = False
) -> int | None:
    """Start the scheduled self-backup when due (``HOSTCRAFT_SELF_BACKUP_SCHEDULE``); return its id."""
    expression = runtime.settings.self_backup_schedule
    if not expression:
        return None
    now = now or utcnow()
    with runtime.store.session() as session:
        row = session.get(BackupSchedule, SCHEDULE_KEY)
        if row is None or row.expression != expression:
            first = decide(expression, "UTC", next_run_at=None, now=now)
            if row is None:
                row = BackupSchedule(key=SCHEDULE_KEY, expression=expression, timezone="UTC")
                session.add(row)
            row.expression, row.next_run_at = expression, first.next_run_at
            return None
        decision = decide(expression, "UTC", next_run_at=row.next_run_at, now=now)
        row.next_run_at = decision.next_run_at
        if not decision.run_now:
            return None
        row.last_run_at = now
        session.commit()
        try:
            started = start_self_backup(session, runtime, actor="engine", trigger="schedule", wait=wait)
        except HostCraftError as exc:
            logger.warning("failed to start the scheduled self-backup", extra={"error": exc.message})
            return None
        return started.id


# Reading


def self_backup_status(session: Session, runtime: Runtime, *, limit: int = 20) -> dict[str, Any]:
    runs = session.scalars(select(SelfBackup).order_by(SelfBackup.id.desc()).limit(limit))
    schedule = session.get(BackupSchedule, SCHEDULE_KEY)
    return {
        "schedule": runtime.settings.self_backup_schedule,
        "destination": runtime.settings.self_backup_destination,
        "nextRunAt": _stamp(schedule.next_run_at)
        if schedule and runtime.settings.self_backup_schedule
        else None,
        "runs": [self_backup_out(item) for item in runs],
    }


def self_backup_out(row: SelfBackup) -> dict[str, Any]:
    return {
        "id": row.id,
        "destinationId": row.destination_id,
        "destination": row.destination_name,
        "status": row.status,
        "trigger": row.trigger,
        "actor": row.actor,
        "store": row.store_kind,
        "snapshots": row.parts,
        "snapshotIds": [part["snapshotId"] for part in row.parts],
        "message": row.message,
        "startedAt": _stamp(row.started_at),
        "finishedAt": _stamp(row.finished_at),
    }


def _stamp(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


# Restoring on a new machine


@dataclass(frozen=True)
class SelfRestoreResult:
    snapshot_id: str
    taken_at: str
    hostname: str
    store: str  # sqlite | postgresql
    database_url: str
    key_file: Path


def restore_self(
    repository: Repository,
    *,
    data_dir: Path,
    snapshot: str = "latest",
    database_url: str | None = None,
    restic_binary: str = "restic",
    force: bool = False,
    progress: Any = None,
) -> SelfRestoreResult:
    """Restore the store and the key of a self-backup from ``repository``; no HostCraft needs to run.

    The store goes into ``data_dir/hostcraft.db`` (SQLite) or into the empty PostgreSQL
    database ``database_url``; the key goes to ``data_dir/secret.key``. Nothing present is
    overwritten unless ``force`` is true.
    """
    report = progress or (lambda message: None)
    restic = Restic(repository, binary=restic_binary)
    report("listing self-backup snapshots")
    store_snapshot, key_snapshot = _pick_snapshots(restic.snapshots(tags=[SELF_TAG]), snapshot)
    filename = Path(store_snapshot.paths[0] if store_snapshot.paths else SQLITE_FILENAME).name
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix="restore-self-") as folder:
        report(f"reading {filename} from snapshot {store_snapshot.id[:8]}")
        dump = Path(folder) / filename
        with dump.open("wb") as sink:
            restic.dump(store_snapshot.id, filename, sink)
        report("reading the secret key")
        key = restic.read_file(key_snapshot.id, KEY_FILE_NAME).strip()
        if filename == SQLITE_FILENAME:
            url = _restore_sqlite(dump, data_dir, database_url, force=force)
        elif filename == POSTGRES_FILENAME:
            report("restoring the PostgreSQL dump with pg_restore")
            url = _restore_postgres(dump, database_url, force=force)
        else:
            raise ValidationError(
                f"invalid snapshot {store_snapshot.id[:8]}: it contains {filename!r}, not a HostCraft store"
            )
        key_file = _write_key(data_dir, key, force=force)
    return SelfRestoreResult(
        snapshot_id=store_snapshot.id,
        taken_at=store_snapshot.time,
        hostname=store_snapshot.hostname,
        store="sqlite" if filename == SQLITE_FILENAME else "postgresql",
        database_url=url,
        key_file=key_file,
    )


def _pick_snapshots(snapshots: list[Snapshot], wanted: str) -> tuple[Snapshot, Snapshot]:
    """Return the store and key snapshots of one self-backup run: the newest, or the one ``wanted`` names."""
    stores = sorted((item for item in snapshots if "part:store" in item.tags), key=lambda item: item.time)
    if not stores:
        raise NotFound("no HostCraft self-backup found in the repository (no snapshot tagged hostcraft-self)")
    if wanted == "latest":
        chosen = stores[-1]
    else:
        matches = [item for item in snapshots if item.id.startswith(wanted)]
        if not matches:
            raise NotFound(f"snapshot {wanted} not found among the self-backup snapshots")
        chosen = matches[0]
    run = next((tag for tag in chosen.tags if tag.startswith("self-backup:")), None)
    store = next((item for item in stores if run in item.tags), None)
    key = next((item for item in snapshots if run in item.tags and "part:key" in item.tags), None)
    if store is None or key is None:
        raise NotFound(f"self-backup {run} lacks its store or key snapshot: pick another with --snapshot")
    return store, key


def _restore_sqlite(dump: Path, data_dir: Path, database_url: str | None, *, force: bool) -> str:
    url = make_url(database_url) if database_url else make_url(f"sqlite:///{data_dir / SQLITE_FILENAME}")
    if url.get_backend_name() != "sqlite":
        raise ValidationError(
            "this self-backup contains a SQLite store: restore it without --database-url, "
            "or give a sqlite:/// URL",
            field="databaseUrl",
        )
    target = Path(str(url.database))
    if target.exists() and not force:
        raise ConflictError(f"{target} already exists: move it away or pass --force to overwrite it")
    with sqlite3.connect(dump) as check:
        result = check.execute("PRAGMA integrity_check").fetchone()
    if not result or result[0] != "ok":
        raise BackupError(f"the restored SQLite store failed its integrity check: {result}", reason="failed")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in (target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
        stale.unlink(missing_ok=True)
    shutil.move(str(dump), target)
    return url.render_as_string(hide_password=False)


def _restore_postgres(dump: Path, database_url: str | None, *, force: bool) -> str:
    if not database_url or make_url(database_url).get_backend_name() != "postgresql":
        raise ValidationError(
            "this self-backup contains a PostgreSQL store: pass --database-url naming an empty "
            "PostgreSQL database",
            field="databaseUrl",
        )
    url = make_url(database_url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
    finally:
        engine.dispose()
    if tables and not force:
        raise ConflictError(
            f"database {url.database} is not empty ({len(tables)} tables): give an empty database, "
            "or pass --force to restore over it"
        )
    command = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--no-password"]
    command += ["--clean", "--if-exists"] if tables else []
    _run_tool([*command, *_libpq_args(url), str(dump)], url, action="restore the store with pg_restore")
    return url.render_as_string(hide_password=False)


def _write_key(data_dir: Path, key: bytes, *, force: bool) -> Path:
    path = data_dir / KEY_FILE_NAME
    if path.exists() and path.read_bytes().strip() != key and not force:
        raise ConflictError(
            f"{path} already exists with another key: move it away or pass --force to overwrite it"
        )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    os.chmod(path, 0o600)
    return path
