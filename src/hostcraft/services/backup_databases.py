"""Database backups and restores of applications, streamed between a container and restic.

Each entry of the app's ``backupDatabases`` is dumped with the database's own tools inside a
running task of the app's service, on the node that runs it. The dump streams into
``restic backup --stdin`` without touching the disk of the HostCraft machine. A dump that
fails, is empty or is truncated makes the backup fail, and the snapshot restic wrote from the
partial stream is forgotten at once. Restores stream ``restic dump`` into the database's
restore tools, which load into a scratch database and swap only after the load succeeded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import docker
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.backup.databases import (
    DatabaseSource,
    DumpResult,
    RestoreResult,
    database_fingerprint,
    dump_database,
    restore_database,
)
from hostcraft.backup.restic import BackupSummary, Restic
from hostcraft.docker.swarm import list_tasks
from hostcraft.errors import BackupError, DumpFailed, HostCraftError, RestoreFailed, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services.applications import secret_values
from hostcraft.services.managers import any_manager
from hostcraft.services.servers import engine_client
from hostcraft.store.models import Application, Server

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatabaseTarget:
    """A running container of the app, reached through the engine of the node that runs it."""

    client: docker.DockerClient
    container_id: str
    node: str


def database_entries(app: Application) -> list[dict[str, Any]]:
    return list(app.spec.get("backupDatabases") or [])


def database_source(app: Application, runtime: Runtime, entry: dict[str, Any]) -> DatabaseSource:
    """Build the connection of one ``backupDatabases`` entry, with its password resolved."""
    password: str | None = None
    if entry.get("passwordSecret"):
        values = secret_values(app, runtime)
        if entry["passwordSecret"] not in values:
            raise ValidationError(
                f"secret {entry['passwordSecret']!r} of {app.name} has no stored value",
                field="backupDatabases.passwordSecret",
            )
        password = values[entry["passwordSecret"]]
    elif entry.get("passwordEnv"):
        password = (app.spec.get("env") or {}).get(entry["passwordEnv"])
    return DatabaseSource(
        engine=entry["engine"],
        user=entry.get("user"),
        password=password,
        database=entry.get("database"),
        port=entry.get("port"),
    )


def find_entry(app: Application, name: str) -> dict[str, Any]:
    for entry in database_entries(app):
        if entry["name"] == name:
            return entry
    raise ValidationError(
        f"{app.name} no longer declares database {name!r} in backupDatabases: add it back to restore it",
        field="backupDatabases",
    )


@contextmanager
def database_container(session: Session, runtime: Runtime, app: Application) -> Iterator[DatabaseTarget]:
    """Yield a running task's container of the app, through the engine of its node."""
    if not app.service_id:
        raise BackupError(f"{app.name} is not deployed, so no database of it runs", reason="failed")
    with any_manager(session, runtime, app.region_id, require_quorum=False) as (_, manager):
        tasks = list_tasks(manager, service=str(app.service_id), **{"desired-state": "running"})
    running = [
        task
        for task in tasks
        if (task.get("Status") or {}).get("State") == "running"
        and ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
    ]
    if not running:
        raise BackupError(
            f"{app.name} has no running task, so its databases cannot be dumped: start the app and retry",
            reason="failed",
        )
    task = sorted(running, key=lambda item: str(item.get("ID")))[0]
    node_id = str(task.get("NodeID"))
    server = session.scalar(select(Server).where(Server.swarm_node_id == node_id))
    if server is None:
        raise BackupError(
            f"the task of {app.name} runs on swarm node {node_id}, which is not a registered server: "
            "add the node with 'hostcraft server add' so HostCraft can reach its engine",
            reason="failed",
        )
    container_id = str(task["Status"]["ContainerStatus"]["ContainerID"])
    with engine_client(server, runtime) as client:
        yield DatabaseTarget(client=client, container_id=container_id, node=server.name)


def dump_into_restic(
    restic: Restic,
    target: DatabaseTarget,
    source: DatabaseSource,
    *,
    filename: str,
    tags: list[str],
    host: str,
    progress: Callable[[int], None] | None = None,
) -> tuple[BackupSummary, DumpResult]:
    """Stream a dump into ``restic backup --stdin`` and forget the snapshot when the dump fails."""
    read_fd, write_fd = os.pipe()
    reader, writer = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
    outcome: dict[str, Any] = {}

    def run_restic() -> None:
        try:
            outcome["summary"] = restic.backup_stdin(reader, filename=filename, tags=tags, host=host)
        except HostCraftError as exc:
            outcome["error"] = exc
        finally:
            reader.close()

    thread = threading.Thread(target=run_restic, name="restic-stdin", daemon=True)
    thread.start()
    dump_error: DumpFailed | None = None
    result: DumpResult | None = None
    try:
        result = dump_database(target.client, target.container_id, source, writer, progress=progress)
    except DumpFailed as exc:
        dump_error = exc
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            writer.close()
        thread.join()
    summary: BackupSummary | None = outcome.get("summary")
    if dump_error is not None or result is None:
        if summary is not None:
            # restic read the end of a partial stream and wrote a snapshot of it, so forget it.
            restic.forget([summary.snapshot_id], prune=False)
        restic_error = outcome.get("error")
        assert dump_error is not None
        # When restic stopped first, the dump failed only to write, so restic's error is the cause.
        if restic_error is not None and "failed to write" in dump_error.message:
            raise restic_error
        raise BackupError(
            dump_error.message, reason="dump_failed", details={**dump_error.details, "kind": "dump"}
        ) from dump_error
    if "error" in outcome:
        raise outcome["error"]
    if summary is None:
        raise BackupError(f"failed to back up {filename}: restic printed no snapshot id", reason="failed")
    return summary, result


def restore_from_restic(
    restic: Restic,
    target: DatabaseTarget,
    source: DatabaseSource,
    *,
    snapshot_id: str,
    filename: str,
    target_database: str | None,
    mode: str,
) -> RestoreResult:
    """Stream ``restic dump`` into ``restore_database``, which leaves the original as it was on failure."""
    read_fd, write_fd = os.pipe()
    reader, writer = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
    outcome: dict[str, Any] = {}

    def run_restic() -> None:
        try:
            restic.dump(snapshot_id, filename, writer)
        except HostCraftError as exc:
            outcome["error"] = exc
        except (BrokenPipeError, OSError) as exc:
            outcome["error"] = BackupError(f"the restore stopped reading {filename}: {exc}", reason="failed")
        finally:
            with contextlib.suppress(BrokenPipeError, OSError):
                writer.close()

    thread = threading.Thread(target=run_restic, name="restic-dump", daemon=True)
    thread.start()
    try:
        result = restore_database(
            target.client,
            target.container_id,
            source,
            reader,
            target_database=target_database,
            mode=mode,  # type: ignore[arg-type]
        )
    except RestoreFailed as exc:
        reader.close()
        thread.join()
        cause = f" (reading the backup failed too: {outcome['error'].message})" if "error" in outcome else ""
        raise BackupError(
            f"{exc.message}{cause}; the original database was left as it was",
            reason="restore_failed",
            details=exc.details,
        ) from exc
    finally:
        if not reader.closed:
            reader.close()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return result


def fingerprint(
    target: DatabaseTarget, source: DatabaseSource, database: str | None
) -> dict[str, int] | None:
    """Return the row counts (Redis: key counts) of the database, or None when it has no name."""
    if source.engine != "redis" and database is None:
        return None
    return database_fingerprint(target.client, target.container_id, source, database)


def dump_filename(entry: dict[str, Any]) -> str:
    """Return the file name of the entry's dump in its snapshot, by the format its tool writes."""
    if entry["engine"] == "postgresql":
        extension = "pgdump" if entry.get("database") else "sql"
    elif entry["engine"] == "redis":
        extension = "rdb"
    else:
        extension = "sql"
    return f"{entry['name']}.{extension}"
