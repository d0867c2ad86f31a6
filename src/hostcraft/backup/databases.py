"""Dump, restore and fingerprint databases with their own tools, inside their containers.

Every tool runs through the Docker exec API in the database's container and connects to the
server over TCP on 127.0.0.1, so the password is checked. Passwords travel only in the exec's
environment (PGPASSWORD, MYSQL_PWD, REDISCLI_AUTH), never on a command line, and are scrubbed
from every message. Dumps stream to a caller's sink (for example restic's stdin) and are
checked for completeness on the way. Restores load into a temporary database first and swap
only after the load succeeded, so a failed restore leaves the original data as it was.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

import docker

from hostcraft.backup.dump_formats import DumpChecker, DumpFormat, DumpIncomplete, checker_for
from hostcraft.docker.container_exec import ByteSource, ExecResult, exec_in_container
from hostcraft.errors import DumpFailed, ValidationError

logger = logging.getLogger(__name__)

Engine = Literal["postgresql", "mysql", "mariadb", "redis"]
RestoreMode = Literal["replace", "new"]

ENGINES: tuple[Engine, ...] = ("postgresql", "mysql", "mariadb", "redis")
DEFAULT_PORTS: dict[Engine, int] = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "redis": 6379}
DEFAULT_USERS: dict[Engine, str | None] = {
    "postgresql": "postgres",
    "mysql": "root",
    "mariadb": "root",
    "redis": None,
}
_LOOPBACK = "127.0.0.1"
_SCRUBBED = "******"

# MariaDB 11 images contain only mariadb-dump and mariadb, MySQL images only mysqldump and mysql.
_MYSQL_DUMP_TOOL = (
    'if command -v mariadb-dump >/dev/null 2>&1; then exec mariadb-dump "$@"; fi; exec mysqldump "$@"'
)
# redis-cli 7.0 leaves the 40-byte end marker of a diskless transfer at the end of the RDB
# when it writes to stdout, because it cannot truncate a pipe. Into a file it removes it.
# redis-check-rdb then checks the whole file at C speed, checksum included. The file's
# SHA-256 on stderr lets the caller check that the copy it received is the same.
_REDIS_DUMP_TOOL = (
    'rdb="$(mktemp)" || exit 1; trap \'rm -f "$rdb"\' EXIT; '
    'redis-cli "$@" --rdb "$rdb" >&2 || exit $?; '
    'redis-check-rdb "$rdb" >&2 || { echo "redis-check-rdb rejected the RDB file" >&2; exit 3; }; '
    'cat "$rdb" || exit $?; '
    'echo "hostcraft-rdb-sha256 $(sha256sum "$rdb" | cut -d " " -f 1)" >&2'
)
_RDB_DIGEST_LINE = re.compile(r"^hostcraft-rdb-sha256 ([0-9a-f]{64})$", re.MULTILINE)
_MYSQL_CLIENT_TOOL = 'if command -v mariadb >/dev/null 2>&1; then exec mariadb "$@"; fi; exec mysql "$@"'


@dataclass(frozen=True)
class DatabaseSource:
    """How to reach one database server inside its container.

    ``database`` None means every database: ``pg_dumpall`` (roles included) for PostgreSQL,
    ``--all-databases`` for MySQL and MariaDB. Redis always dumps the whole server. ``user``
    and ``port`` default to the engine's usual superuser and port.
    """

    engine: Engine
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValidationError(
                f"invalid engine {self.engine!r}: expected one of {', '.join(ENGINES)}", field="engine"
            )
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValidationError(f"invalid port {self.port}: expected 1 to 65535", field="port")
        if self.database is not None:
            check_database_name(self.database, field_name="database")
        if self.user is not None and not self.user.strip():
            raise ValidationError("invalid user: must not be blank", field="user")

    @property
    def effective_user(self) -> str | None:
        return self.user if self.user is not None else DEFAULT_USERS[self.engine]

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.engine]


@dataclass(frozen=True)
class DumpResult:
    """A finished, checked dump: its size, SHA-256, format and the tool that wrote it."""

    size_bytes: int
    sha256: str
    format: DumpFormat
    tool_version: str
    duration_seconds: float
    warnings: str = ""


@dataclass(frozen=True)
class RestoreResult:
    """A finished restore: the database that now contains the data and the fate of the old one."""

    engine: Engine
    database: str | None
    mode: RestoreMode
    size_bytes: int
    duration_seconds: float
    previous_database: str | None = None


def dump_database(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    sink: BinaryIO,
    *,
    progress: Callable[[int], None] | None = None,
) -> DumpResult:
    """Stream a dump of ``source`` from inside the container into ``sink``, and check it.

    ``progress`` receives the number of bytes written so far. The sink is flushed, not
    closed. Raises DumpFailed when the tool exits non-zero or the dump is empty, truncated
    or not in its format. The caller must then discard whatever reached the sink.
    """
    plan = _dump_plan(source)
    tool_version = _tool_version(client, container_id, plan.version_command)
    checker = checker_for(plan.format, verify_checksum=False)
    digest = hashlib.sha256()
    written = 0
    started = time.monotonic()

    def on_stdout(chunk: bytes) -> None:
        nonlocal written
        try:
            sink.write(chunk)
        except (OSError, ValueError) as exc:
            raise _SinkFailed(str(exc)) from exc
        checker.feed(chunk)
        digest.update(chunk)
        written += len(chunk)
        if progress is not None:
            progress(written)

    context: dict[str, object] = {
        "container": container_id,
        "engine": source.engine,
        "database": source.database,
    }
    try:
        result = exec_in_container(
            client, container_id, plan.command, on_stdout=on_stdout, environment=plan.environment
        )
        sink.flush()
    except _SinkFailed as exc:
        raise DumpFailed(
            f"failed to write the {plan.tool} dump to its destination after {written} bytes: {exc}; "
            "check the backup destination and retry",
            details={**context, "bytes": written},
        ) from exc
    except (OSError, ValueError) as exc:
        raise DumpFailed(
            f"failed to flush the {plan.tool} dump to its destination: {exc}; check the backup destination",
            details=context,
        ) from exc
    stderr = scrub(result.stderr, source.password)
    _check_dump(plan, result, checker, stderr, written, context)
    if plan.format == "redis_rdb":
        _check_rdb_digest(stderr, digest.hexdigest(), context)

    duration = time.monotonic() - started
    logger.info(
        "database dump finished",
        extra={**context, "bytes": written, "duration_seconds": round(duration, 3)},
    )
    return DumpResult(
        size_bytes=written,
        sha256=digest.hexdigest(),
        format=plan.format,
        tool_version=tool_version,
        duration_seconds=duration,
        warnings=stderr.strip(),
    )


def restore_database(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    dump: ByteSource,
    *,
    target_database: str | None = None,
    mode: RestoreMode = "replace",
    keep_previous: bool = False,
) -> RestoreResult:
    """Restore ``dump`` (written by ``dump_database`` for ``source``) inside the container.

    ``mode="replace"`` loads into a temporary database and swaps it with ``target_database``
    (default: ``source.database``) only after the load succeeded; the replaced database is
    dropped unless ``keep_previous``. ``mode="new"`` loads into ``target_database``, which must
    not exist. Raises RestoreFailed, and leaves the original data unchanged, when the load fails.
    """
    if mode not in ("replace", "new"):
        raise ValidationError(f"invalid mode {mode!r}: expected 'replace' or 'new'", field="mode")
    if target_database is not None:
        check_database_name(target_database, field_name="target_database")
    # Imported here because each engine module imports this one for the shared helpers.
    from hostcraft.backup import database_restores

    started = time.monotonic()
    counter = _CountingReader(dump)
    if source.engine == "postgresql":
        name, previous = database_restores.restore_postgresql(
            client,
            container_id,
            source,
            counter,
            target=target_database,
            mode=mode,
            keep_previous=keep_previous,
        )
    elif source.engine in ("mysql", "mariadb"):
        name, previous = database_restores.restore_mysql(
            client,
            container_id,
            source,
            counter,
            target=target_database,
            mode=mode,
            keep_previous=keep_previous,
        )
    else:
        name, previous = database_restores.restore_redis(client, container_id, source, counter, mode=mode)
    duration = time.monotonic() - started
    logger.info(
        "database restore finished",
        extra={"container": container_id, "engine": source.engine, "database": name, "mode": mode},
    )
    return RestoreResult(
        engine=source.engine,
        database=name,
        mode=mode,
        size_bytes=counter.size,
        duration_seconds=duration,
        previous_database=previous,
    )


def database_fingerprint(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, database: str | None
) -> dict[str, int]:
    """Count the rows of every table in ``database`` (``schema.table`` keys for PostgreSQL).

    For Redis, ``database`` is ignored and the keys are ``db0``, ``db1``, ... with their key
    counts. Restore tests and drills compare two fingerprints to see that data came back.
    """
    from hostcraft.backup import database_restores

    if source.engine == "redis":
        return database_restores.redis_keyspace(client, container_id, source)
    if database is None:
        raise ValidationError("a fingerprint needs a database name", field="database")
    check_database_name(database, field_name="database")
    if source.engine == "postgresql":
        return database_restores.postgresql_row_counts(client, container_id, source, database)
    return database_restores.mysql_row_counts(client, container_id, source, database)


@dataclass(frozen=True)
class _DumpPlan:
    tool: str
    command: list[str]
    version_command: list[str]
    environment: dict[str, str]
    format: DumpFormat


def _dump_plan(source: DatabaseSource) -> _DumpPlan:
    port = str(source.effective_port)
    user = source.effective_user
    if source.engine == "postgresql":
        connection = [f"--host={_LOOPBACK}", f"--port={port}", f"--username={user}", "--no-password"]
        if source.database is None:
            return _DumpPlan(
                tool="pg_dumpall",
                command=["pg_dumpall", *connection],
                version_command=["pg_dumpall", "--version"],
                environment=postgresql_environment(source),
                format="pg_dumpall_sql",
            )
        return _DumpPlan(
            tool="pg_dump",
            command=["pg_dump", "--format=custom", *connection, f"--dbname={source.database}"],
            version_command=["pg_dump", "--version"],
            environment=postgresql_environment(source),
            format="pg_dump_custom",
        )
    if source.engine in ("mysql", "mariadb"):
        selection = ["--all-databases"] if source.database is None else ["--", source.database]
        arguments = [
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            f"--host={_LOOPBACK}",
            f"--port={port}",
            f"--user={user}",
            *selection,
        ]
        return _DumpPlan(
            tool="mysqldump",
            command=["sh", "-c", _MYSQL_DUMP_TOOL, "mysqldump", *arguments],
            version_command=["sh", "-c", _MYSQL_DUMP_TOOL, "mysqldump", "--version"],
            environment=mysql_environment(source),
            format="mysqldump_sql",
        )
    return _DumpPlan(
        tool="redis-cli",
        command=["sh", "-c", _REDIS_DUMP_TOOL, "redis-cli", *redis_cli(source)[1:]],
        version_command=["redis-cli", "--version"],
        environment=redis_environment(source),
        format="redis_rdb",
    )


def _check_dump(
    plan: _DumpPlan,
    result: ExecResult,
    checker: DumpChecker,
    stderr: str,
    written: int,
    context: dict[str, object],
) -> None:
    if result.exit_code != 0:
        logger.warning(
            "failed to dump database: %s exited with code %d",
            plan.tool,
            result.exit_code,
            extra={**context, "bytes": written},
        )
        raise DumpFailed(
            f"{plan.tool} exited with code {result.exit_code}: {last_lines(stderr)}; "
            "the dump is not valid; check the database credentials and that the server is running",
            details={**context, "exit_code": result.exit_code, "stderr": stderr[-4000:]},
        )
    try:
        checker.finish()
    except DumpIncomplete as exc:
        logger.warning("failed to dump database: %s", exc, extra={**context, "bytes": written})
        raise DumpFailed(
            f"{plan.tool} exited with code 0 but its dump is invalid: {exc}; the dump is not valid; "
            "check the container's disk space and the tool's output, then retry",
            details={**context, "bytes": written, "stderr": stderr[-4000:]},
        ) from exc


def _check_rdb_digest(stderr: str, received: str, context: dict[str, object]) -> None:
    match = _RDB_DIGEST_LINE.search(stderr)
    if match is None or match.group(1) != received:
        raise DumpFailed(
            "the RDB file received differs from the one redis-check-rdb checked in the container "
            f"(SHA-256 {received} vs {match.group(1) if match else 'missing'}); the dump is not valid; retry",
            details=dict(context),
        )


def _tool_version(client: docker.DockerClient, container_id: str, command: list[str]) -> str:
    output = bytearray()
    result = exec_in_container(client, container_id, command, on_stdout=output.extend)
    if result.exit_code != 0:
        raise DumpFailed(
            f"{command[0]} is not available in container {container_id} (exit code {result.exit_code}): "
            f"{last_lines(result.stderr.decode('utf-8', errors='replace'))}; "
            "use the database's own image, which contains its dump tool",
            details={"container": container_id, "command": command[0]},
        )
    return output.decode("utf-8", errors="replace").strip().splitlines()[0] if output.strip() else ""


class _SinkFailed(Exception):
    pass


class _CountingReader:
    """A binary reader that counts what passes through it."""

    def __init__(self, source: ByteSource) -> None:
        self._source = source
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size)
        self.size += len(chunk)
        return chunk


def postgresql_environment(source: DatabaseSource) -> dict[str, str]:
    environment = {"PGAPPNAME": "hostcraft", "PGCONNECT_TIMEOUT": "15"}
    if source.password is not None:
        environment["PGPASSWORD"] = source.password
    return environment


def mysql_environment(source: DatabaseSource) -> dict[str, str]:
    return {} if source.password is None else {"MYSQL_PWD": source.password}


def redis_environment(source: DatabaseSource) -> dict[str, str]:
    return {} if source.password is None else {"REDISCLI_AUTH": source.password}


def redis_cli(source: DatabaseSource, *, port: int | None = None) -> list[str]:
    command = ["redis-cli", "-h", _LOOPBACK, "-p", str(port or source.effective_port)]
    if source.user is not None:
        command += ["--user", source.user]
    return command


def mysql_client(source: DatabaseSource) -> list[str]:
    return [
        "sh",
        "-c",
        _MYSQL_CLIENT_TOOL,
        "mysql",
        f"--host={_LOOPBACK}",
        f"--port={source.effective_port}",
        f"--user={source.effective_user}",
        "--default-character-set=utf8mb4",
    ]


def scratch_name(name: str, purpose: str) -> str:
    """Return a unique name derived from ``name`` that fits PostgreSQL's 63-byte identifiers."""
    suffix = f"_hc_{purpose}_{secrets.token_hex(4)}"
    prefix = name.encode()[: 63 - len(suffix)].decode("utf-8", errors="ignore")
    return prefix + suffix


def scrub(raw: bytes | str, password: str | None) -> str:
    """Decode ``raw`` and replace every occurrence of ``password`` with asterisks."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    if password:
        text = text.replace(password, _SCRUBBED)
    return text


def last_lines(text: str, count: int = 3) -> str:
    """Return the last ``count`` non-empty lines of ``text`` joined on one line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-count:]) if lines else "no error output"


_NAME_PATTERN = re.compile(r"^[^\x00/\\.\s][^\x00/\\]{0,62}$")


def check_database_name(name: str, *, field_name: str) -> None:
    if not _NAME_PATTERN.match(name) or name != name.strip() or len(name.encode()) > 63:
        raise ValidationError(
            f"invalid {field_name} {name!r}: expected 1 to 63 bytes without NUL, slashes, "
            "backslashes, or a leading dot or space",
            field=field_name,
        )


def drop_database(client: docker.DockerClient, container_id: str, source: DatabaseSource, name: str) -> None:
    """Drop the database ``name`` if it exists (PostgreSQL, MySQL, MariaDB); log a failure."""
    from hostcraft.backup import database_restores

    check_database_name(name, field_name="database")
    if source.engine == "postgresql":
        maintenance = "postgres" if name != "postgres" else "template1"
        database_restores._drop_postgresql_database(client, container_id, source, name, maintenance)
    elif source.engine in ("mysql", "mariadb"):
        database_restores._drop_mysql_database(client, container_id, source, name)
