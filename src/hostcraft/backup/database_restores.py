"""Engine-specific restores and fingerprints behind ``hostcraft.backup.databases``.

Each restore loads into a scratch place first: a temporary database, schema or Redis server.
The original changes only in one atomic step after the load and its checks succeeded.
PostgreSQL renames two databases in one transaction, MariaDB and MySQL move every table with
one ``RENAME TABLE`` statement, and Redis copies the checked data set by replication.
"""

from __future__ import annotations

import logging
import secrets
import time

import docker

from hostcraft.backup.databases import (
    DatabaseSource,
    RestoreMode,
    last_lines,
    mysql_client,
    mysql_environment,
    postgresql_environment,
    redis_cli,
    redis_environment,
    scratch_name,
    scrub,
)
from hostcraft.backup.dump_formats import DumpChecker, DumpIncomplete, checker_for
from hostcraft.docker.container_exec import ByteSource, exec_in_container
from hostcraft.errors import ConflictError, RestoreFailed, ValidationError

logger = logging.getLogger(__name__)

_LOOPBACK = "127.0.0.1"
# A connection that arrives between terminating the others and the rename makes the rename
# fail. It is retried, and the original stays in place if every attempt fails.
_SWAP_ATTEMPTS = 5
_REPLICATION_TIMEOUT = 600.0
_READY_POLL_SECONDS = 1.0


class _SkipOwnRoleCreation:
    """Drop the ``CREATE ROLE`` of the restoring user from a pg_dumpall script as it streams.

    pg_dumpall writes ``CREATE ROLE`` for every role, including the connecting superuser, who
    exists in every target. With ON_ERROR_STOP that expected error would stop the restore,
    so the line is dropped. The ``ALTER ROLE`` line after it still applies the attributes.
    """

    def __init__(self, source: ByteSource, user: str) -> None:
        self._source = source
        self._skip = {f"CREATE ROLE {user};\n".encode(), f"CREATE ROLE {_quote_identifier(user)};\n".encode()}
        self._pending = b""
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        # An empty result means the end of the dump to the caller, so keep reading while
        # every complete line was dropped.
        while True:
            while not self._ended and b"\n" not in self._pending:
                chunk = self._source.read(size if size > 0 else 1024 * 1024)
                self._ended = not chunk
                self._pending += chunk
            if self._ended:
                complete, self._pending = self._pending, b""
            else:
                cut = self._pending.rindex(b"\n") + 1
                complete, self._pending = self._pending[:cut], self._pending[cut:]
            kept = b"".join(line for line in complete.splitlines(keepends=True) if line not in self._skip)
            if kept or self._ended:
                return kept


class _CheckedReader:
    """Feed everything read from ``source`` to a format checker on its way into a tool."""

    def __init__(self, source: ByteSource, checker: DumpChecker) -> None:
        self._source = source
        self._checker = checker

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size)
        self._checker.feed(chunk)
        return chunk


def _run(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    command: list[str],
    environment: dict[str, str],
    *,
    stdin: ByteSource | None = None,
) -> tuple[int, str, str]:
    output = bytearray()
    result = exec_in_container(
        client, container_id, command, on_stdout=output.extend, environment=environment, stdin=stdin
    )
    stdout = scrub(bytes(output), source.password)
    return result.exit_code, stdout, scrub(result.stderr, source.password)


def wait_until_accepting(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, *, timeout: float
) -> None:
    """Wait until the database server in the container accepts a query; raise RestoreFailed on timeout.

    A server that has just started may still be recovering (PostgreSQL replays its WAL after a
    restored data directory, for one) and turns clients away until it is consistent.
    """
    if source.engine == "postgresql":
        command = [
            "psql",
            "-X",
            "--no-password",
            "--quiet",
            f"--host={_LOOPBACK}",
            f"--port={source.effective_port}",
            f"--username={source.effective_user}",
            "--dbname=postgres",
            "--command",
            "SELECT 1",
        ]
        environment = postgresql_environment(source)
    elif source.engine in ("mysql", "mariadb"):
        command = [*mysql_client(source), "--execute", "SELECT 1"]
        environment = mysql_environment(source)
    else:
        command = [*redis_cli(source), "PING"]
        environment = redis_environment(source)
    deadline = time.monotonic() + timeout
    while True:
        code, stdout, stderr = _run(client, container_id, source, command, environment)
        # redis-cli exits 0 with an error reply, so its reply is read too.
        if code == 0 and "LOADING" not in stdout and "ERR" not in stdout:
            return
        if time.monotonic() > deadline:
            raise RestoreFailed(
                f"the {source.engine} server did not accept queries within {timeout:.0f} s: "
                f"{last_lines(stderr or stdout)}",
                details={"container": container_id},
            )
        time.sleep(_READY_POLL_SECONDS)


# PostgreSQL


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _psql(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, sql: str, *, database: str
) -> str:
    command = [
        "psql",
        "-X",
        "--no-password",
        "--quiet",
        "--tuples-only",
        "--no-align",
        "--field-separator=\t",
        "--set=ON_ERROR_STOP=1",
        f"--host={_LOOPBACK}",
        f"--port={source.effective_port}",
        f"--username={source.effective_user}",
        f"--dbname={database}",
        "--command",
        sql,
    ]
    code, stdout, stderr = _run(client, container_id, source, command, postgresql_environment(source))
    if code != 0:
        raise RestoreFailed(
            f"psql failed (exit code {code}): {last_lines(stderr)}",
            details={"container": container_id, "database": database},
        )
    return stdout


def restore_postgresql(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    dump: ByteSource,
    *,
    target: str | None,
    mode: RestoreMode,
    keep_previous: bool,
) -> tuple[str | None, str | None]:
    """Restore a pg_dump archive by load-then-swap, or a pg_dumpall script into a fresh cluster."""
    if source.database is None:
        _restore_postgresql_cluster(client, container_id, source, dump, mode=mode)
        return None, None
    name = target or source.database
    maintenance = "postgres" if name != "postgres" else "template1"
    row = _psql(
        client,
        container_id,
        source,
        "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype "
        f"FROM pg_database WHERE datname = {_quote_literal(name)}",
        database=maintenance,
    ).strip()
    if mode == "new" and row:
        raise ConflictError(
            f"database {name!r} already exists; choose another target_database or use mode='replace'",
            details={"database": name},
        )
    owner, encoding, collate, ctype = row.split("\t") if row else (source.effective_user or "", "", "", "")

    scratch = name if mode == "new" else scratch_name(name, "restore")
    options = f" OWNER {_quote_identifier(owner)} TEMPLATE template0"
    if encoding:
        options += (
            f" ENCODING {_quote_literal(encoding)} LC_COLLATE {_quote_literal(collate)}"
            f" LC_CTYPE {_quote_literal(ctype)}"
        )
    _psql(
        client,
        container_id,
        source,
        f"CREATE DATABASE {_quote_identifier(scratch)}{options}",
        database=maintenance,
    )
    try:
        _pg_restore(client, container_id, source, dump, scratch, original=name)
    except RestoreFailed:
        _drop_postgresql_database(client, container_id, source, scratch, maintenance)
        raise
    if mode == "new":
        return name, None
    if not row:
        _psql(
            client,
            container_id,
            source,
            f"ALTER DATABASE {_quote_identifier(scratch)} RENAME TO {_quote_identifier(name)}",
            database=maintenance,
        )
        return name, None

    previous = scratch_name(name, "previous")
    _swap_postgresql_databases(client, container_id, source, name, scratch, previous, maintenance)
    if keep_previous:
        return name, previous
    _drop_postgresql_database(client, container_id, source, previous, maintenance)
    return name, None


def _pg_restore(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    dump: ByteSource,
    database: str,
    *,
    original: str,
) -> None:
    checker = checker_for("pg_dump_custom")
    command = [
        "pg_restore",
        "--exit-on-error",
        "--single-transaction",
        "--no-password",
        f"--host={_LOOPBACK}",
        f"--port={source.effective_port}",
        f"--username={source.effective_user}",
        f"--dbname={database}",
    ]
    code, _, stderr = _run(
        client,
        container_id,
        source,
        command,
        postgresql_environment(source),
        stdin=_CheckedReader(dump, checker),
    )
    if code != 0:
        raise RestoreFailed(
            f"pg_restore failed (exit code {code}): {last_lines(stderr)}; database {original!r} is unchanged",
            details={"container": container_id, "database": original, "stderr": stderr[-4000:]},
        )
    try:
        checker.finish()
    except DumpIncomplete as exc:
        raise RestoreFailed(
            f"the dump is incomplete: {exc}; database {original!r} is unchanged; restore another backup",
            details={"container": container_id, "database": original},
        ) from exc


def _swap_postgresql_databases(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    name: str,
    scratch: str,
    previous: str,
    maintenance: str,
) -> None:
    quoted = _quote_identifier(name)
    terminate = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = {_quote_literal(name)} AND pid <> pg_backend_pid()"
    )
    # Both renames run in one transaction, so either both happen or neither does.
    swap = (
        f"BEGIN; ALTER DATABASE {quoted} RENAME TO {_quote_identifier(previous)}; "
        f"ALTER DATABASE {_quote_identifier(scratch)} RENAME TO {quoted}; COMMIT;"
    )
    _psql(
        client, container_id, source, f"ALTER DATABASE {quoted} ALLOW_CONNECTIONS false", database=maintenance
    )
    last_error: RestoreFailed | None = None
    for attempt in range(1, _SWAP_ATTEMPTS + 1):
        _psql(client, container_id, source, terminate, database=maintenance)
        try:
            _psql(client, container_id, source, swap, database=maintenance)
        except RestoreFailed as exc:
            last_error = exc
            logger.warning(
                "failed to swap databases, retrying",
                extra={"container": container_id, "database": name, "attempt": attempt},
            )
            time.sleep(0.5 * attempt)
            continue
        _psql(
            client,
            container_id,
            source,
            f"ALTER DATABASE {_quote_identifier(previous)} ALLOW_CONNECTIONS true",
            database=maintenance,
        )
        return
    _psql(
        client, container_id, source, f"ALTER DATABASE {quoted} ALLOW_CONNECTIONS true", database=maintenance
    )
    _drop_postgresql_database(client, container_id, source, scratch, maintenance)
    raise RestoreFailed(
        f"failed to swap the restored database into {name!r}: {last_error}; "
        f"database {name!r} is unchanged; stop the clients that reconnect and retry",
        details={"container": container_id, "database": name},
    )


def _drop_postgresql_database(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, name: str, maintenance: str
) -> None:
    try:
        _psql(
            client,
            container_id,
            source,
            f"DROP DATABASE IF EXISTS {_quote_identifier(name)} WITH (FORCE)",
            database=maintenance,
        )
    except RestoreFailed as exc:
        logger.warning(
            "failed to drop scratch database: %s",
            exc,
            extra={"container": container_id, "database": name},
        )


def _restore_postgresql_cluster(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    dump: ByteSource,
    *,
    mode: RestoreMode,
) -> None:
    if mode != "new":
        raise ValidationError(
            "a pg_dumpall dump cannot replace a running cluster in place; restore it with mode='new' "
            "into a fresh container, or restore single databases with mode='replace'",
            field="mode",
        )
    occupied = _psql(
        client,
        container_id,
        source,
        "SELECT string_agg(datname, ', ') FROM pg_database "
        "WHERE datname NOT IN ('postgres', 'template0', 'template1')",
        database="postgres",
    ).strip()
    if occupied:
        raise ConflictError(
            f"the cluster is not fresh: it already has database(s) {occupied}; restore a cluster dump "
            "into a container started without POSTGRES_DB",
            details={"container": container_id, "databases": occupied},
        )
    checker = checker_for("pg_dumpall_sql")
    command = [
        "psql",
        "-X",
        "--no-password",
        "--quiet",
        "--set=ON_ERROR_STOP=1",
        f"--host={_LOOPBACK}",
        f"--port={source.effective_port}",
        f"--username={source.effective_user}",
        "--dbname=postgres",
    ]
    code, _, stderr = _run(
        client,
        container_id,
        source,
        command,
        postgresql_environment(source),
        stdin=_SkipOwnRoleCreation(_CheckedReader(dump, checker), source.effective_user or "postgres"),
    )
    problem = f"psql exited with code {code}: {last_lines(stderr)}" if code != 0 else ""
    if not problem:
        try:
            checker.finish()
        except DumpIncomplete as exc:
            problem = f"the dump is incomplete: {exc}"
    if problem:
        raise RestoreFailed(
            f"failed to restore the cluster dump: {problem}; the new cluster is partly restored and no "
            "other data was touched; remove this container and its volume, then restore again",
            details={"container": container_id, "stderr": stderr[-4000:]},
        )


def postgresql_row_counts(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, database: str
) -> dict[str, int]:
    """Count the rows of every ordinary and partitioned table outside the system schemas."""
    sql = (
        "SELECT format('%s.%s', n.nspname, c.relname), (xpath('/row/c/text()', query_to_xml("
        "format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%' AND NOT c.relispartition ORDER BY 1"
    )
    output = _psql(client, container_id, source, sql, database=database)
    return _parse_counts(output)


def _parse_counts(output: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in output.splitlines():
        if not line.strip():
            continue
        table, count = line.rsplit("\t", 1)
        counts[table] = int(count)
    return counts


# MySQL and MariaDB


def _quote_mysql_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _quote_mysql_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _mysql(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    sql: str,
    *,
    database: str | None = None,
) -> str:
    command = [*mysql_client(source), "--batch", "--skip-column-names", "--execute", sql]
    if database is not None:
        command.append(f"--database={database}")
    code, stdout, stderr = _run(client, container_id, source, command, mysql_environment(source))
    if code != 0:
        raise RestoreFailed(
            f"the mysql client failed (exit code {code}): {last_lines(stderr)}",
            details={"container": container_id, "database": database},
        )
    return stdout


def restore_mysql(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    dump: ByteSource,
    *,
    target: str | None,
    mode: RestoreMode,
    keep_previous: bool,
) -> tuple[str | None, str | None]:
    """Load a single-database mysqldump into a scratch schema, then move its tables in at once."""
    if source.database is None:
        raise ValidationError(
            "restoring an --all-databases dump is not supported, because it rewrites the mysql system "
            "schema; back up and restore single databases",
            field="database",
        )
    name = target or source.database
    row = _mysql(
        client,
        container_id,
        source,
        "SELECT default_character_set_name, default_collation_name FROM information_schema.schemata "
        f"WHERE schema_name = {_quote_mysql_literal(name)}",
    ).strip()
    if mode == "new" and row:
        raise ConflictError(
            f"database {name!r} already exists; choose another target_database or use mode='replace'",
            details={"database": name},
        )
    options = ""
    if row:
        charset, collation = row.split("\t")
        options = f" CHARACTER SET {charset} COLLATE {collation}"

    scratch = name if mode == "new" else scratch_name(name, "restore")[:64]
    _mysql(client, container_id, source, f"CREATE DATABASE {_quote_mysql_identifier(scratch)}{options}")
    try:
        _load_mysql_dump(client, container_id, source, dump, scratch, original=name)
        if mode == "replace":
            _reject_unmovable_objects(client, container_id, source, scratch, original=name)
    except RestoreFailed:
        _drop_mysql_database(client, container_id, source, scratch)
        raise
    if mode == "new":
        return name, None

    previous = scratch_name(name, "previous")[:64]
    try:
        _swap_mysql_tables(client, container_id, source, name, scratch, previous, exists=bool(row))
    finally:
        _drop_mysql_database(client, container_id, source, scratch)
    if keep_previous:
        return name, previous
    _drop_mysql_database(client, container_id, source, previous)
    return name, None


def _load_mysql_dump(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    dump: ByteSource,
    database: str,
    *,
    original: str,
) -> None:
    checker = checker_for("mysqldump_sql")
    # The client stops at the first failing statement unless --force is given.
    command = [*mysql_client(source), "--batch", "--binary-mode", f"--database={database}"]
    code, _, stderr = _run(
        client,
        container_id,
        source,
        command,
        mysql_environment(source),
        stdin=_CheckedReader(dump, checker),
    )
    if code != 0:
        raise RestoreFailed(
            f"loading the dump failed (exit code {code}): {last_lines(stderr)}; "
            f"database {original!r} is unchanged",
            details={"container": container_id, "database": original, "stderr": stderr[-4000:]},
        )
    try:
        checker.finish()
    except DumpIncomplete as exc:
        raise RestoreFailed(
            f"the dump is incomplete: {exc}; database {original!r} is unchanged; restore another backup",
            details={"container": container_id, "database": original},
        ) from exc


def _reject_unmovable_objects(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, scratch: str, *, original: str
) -> None:
    literal = _quote_mysql_literal(scratch)
    found = _mysql(
        client,
        container_id,
        source,
        f"SELECT 'views', COUNT(*) FROM information_schema.views WHERE table_schema = {literal} "
        "UNION ALL SELECT 'triggers', COUNT(*) FROM information_schema.triggers "
        f"WHERE trigger_schema = {literal} "
        "UNION ALL SELECT 'routines', COUNT(*) FROM information_schema.routines "
        f"WHERE routine_schema = {literal} "
        f"UNION ALL SELECT 'events', COUNT(*) FROM information_schema.events WHERE event_schema = {literal}",
    )
    kinds = [
        line.split("\t")[0] for line in found.splitlines() if line.strip() and int(line.split("\t")[1]) > 0
    ]
    if kinds:
        raise RestoreFailed(
            f"the dump contains {', '.join(kinds)}, which cannot be moved between databases atomically; "
            f"database {original!r} is unchanged; restore with mode='new' under another name and switch "
            "the application over",
            details={"container": container_id, "database": original, "objects": kinds},
        )


def _swap_mysql_tables(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    name: str,
    scratch: str,
    previous: str,
    *,
    exists: bool,
) -> None:
    if not exists:
        _mysql(client, container_id, source, f"CREATE DATABASE {_quote_mysql_identifier(name)}")
    _mysql(client, container_id, source, f"CREATE DATABASE {_quote_mysql_identifier(previous)}")
    current = _base_tables(client, container_id, source, name)
    restored = _base_tables(client, container_id, source, scratch)
    moves = [
        f"{_quote_mysql_identifier(name)}.{_quote_mysql_identifier(table)} TO "
        f"{_quote_mysql_identifier(previous)}.{_quote_mysql_identifier(table)}"
        for table in current
    ] + [
        f"{_quote_mysql_identifier(scratch)}.{_quote_mysql_identifier(table)} TO "
        f"{_quote_mysql_identifier(name)}.{_quote_mysql_identifier(table)}"
        for table in restored
    ]
    if not moves:
        return
    # One RENAME TABLE statement is atomic: every table moves, or none does.
    try:
        _mysql(client, container_id, source, "RENAME TABLE " + ", ".join(moves))
    except RestoreFailed as exc:
        _drop_mysql_database(client, container_id, source, previous)
        raise RestoreFailed(
            f"failed to swap the restored tables into {name!r}: {exc}; database {name!r} is unchanged",
            details={"container": container_id, "database": name},
        ) from exc


def _base_tables(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, database: str
) -> list[str]:
    output = _mysql(
        client,
        container_id,
        source,
        "SELECT table_name FROM information_schema.tables "
        f"WHERE table_schema = {_quote_mysql_literal(database)} AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    return [line for line in output.splitlines() if line]


def _drop_mysql_database(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, name: str
) -> None:
    try:
        _mysql(client, container_id, source, f"DROP DATABASE IF EXISTS {_quote_mysql_identifier(name)}")
    except RestoreFailed as exc:
        logger.warning(
            "failed to drop scratch database: %s", exc, extra={"container": container_id, "database": name}
        )


def mysql_row_counts(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, database: str
) -> dict[str, int]:
    """Count the rows of every base table of ``database`` with exact ``COUNT(*)`` queries."""
    tables = _base_tables(client, container_id, source, database)
    if not tables:
        return {}
    counts = " UNION ALL ".join(
        f"SELECT {_quote_mysql_literal(table)}, COUNT(*) FROM "
        f"{_quote_mysql_identifier(database)}.{_quote_mysql_identifier(table)}"
        for table in tables
    )
    return _parse_counts(_mysql(client, container_id, source, counts))


# Redis


def restore_redis(
    client: docker.DockerClient,
    container_id: str,
    source: DatabaseSource,
    dump: ByteSource,
    *,
    mode: RestoreMode,
) -> tuple[str | None, str | None]:
    """Check the RDB in a scratch server in the container, then replicate it into the real one."""
    if mode != "replace":
        raise ValidationError(
            "Redis has no named databases to restore under a new name; restore into a new container "
            "with mode='replace'",
            field="mode",
        )
    token = secrets.token_hex(4)
    directory = f"/tmp/hostcraft-restore-{token}"  # noqa: S108 - a private directory inside the container
    port = 20000 + secrets.randbelow(40000)
    try:
        _upload_rdb(client, container_id, source, dump, directory)
        _start_scratch_redis(client, container_id, source, directory, port)
        _replicate_from(client, container_id, source, port)
    finally:
        _run(
            client,
            container_id,
            source,
            [
                "sh",
                "-c",
                'redis-cli -h 127.0.0.1 -p "$1" shutdown nosave >/dev/null 2>&1; rm -rf "$2"',
                "sh",
                str(port),
                directory,
            ],
            {},
        )
    return None, None


def _upload_rdb(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, dump: ByteSource, directory: str
) -> None:
    # redis-check-rdb below verifies the checksum much faster than Python could.
    checker = checker_for("redis_rdb", verify_checksum=False)
    code, _, stderr = _run(
        client,
        container_id,
        source,
        ["sh", "-c", 'umask 077 && mkdir -p "$1" && cat > "$1/dump.rdb"', "sh", directory],
        {},
        stdin=_CheckedReader(dump, checker),
    )
    if code != 0:
        raise RestoreFailed(
            f"failed to copy the RDB file into the container (exit code {code}): {last_lines(stderr)}; "
            "the data is unchanged; check the container's free disk space",
            details={"container": container_id},
        )
    try:
        checker.finish()
    except DumpIncomplete as exc:
        raise RestoreFailed(
            f"the dump is incomplete: {exc}; the data is unchanged; restore another backup",
            details={"container": container_id},
        ) from exc
    code, stdout, stderr = _run(
        client, container_id, source, ["redis-check-rdb", f"{directory}/dump.rdb"], {}
    )
    if code != 0:
        raise RestoreFailed(
            f"redis-check-rdb rejected the RDB file: {last_lines(stdout + stderr)}; the data is unchanged",
            details={"container": container_id},
        )


def _start_scratch_redis(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, directory: str, port: int
) -> None:
    command = [
        "redis-server",
        "--bind", _LOOPBACK,
        "--port", str(port),
        "--dir", directory,
        "--dbfilename", "dump.rdb",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "yes",
        "--logfile", f"{directory}/redis.log",
        "--pidfile", f"{directory}/redis.pid",
    ]  # fmt: skip
    code, _, stderr = _run(client, container_id, source, command, {})
    deadline = time.monotonic() + 120
    while code == 0:
        code, stdout, stderr = _run(
            client, container_id, source, ["redis-cli", "-h", _LOOPBACK, "-p", str(port), "ping"], {}
        )
        if stdout.strip() == "PONG":
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    _, log, _ = _run(
        client, container_id, source, ["sh", "-c", 'tail -n 5 "$1"', "sh", f"{directory}/redis.log"], {}
    )
    raise RestoreFailed(
        f"a scratch Redis server could not load the RDB file: {last_lines(stderr + log)}; "
        "the data is unchanged",
        details={"container": container_id},
    )


def _replicate_from(
    client: docker.DockerClient, container_id: str, source: DatabaseSource, port: int
) -> None:
    def redis(*arguments: str) -> str:
        code, stdout, stderr = _run(
            client, container_id, source, [*redis_cli(source), *arguments], redis_environment(source)
        )
        if code != 0 or stdout.startswith(("ERR", "NOAUTH", "WRONGPASS", "NOPERM")):
            raise RestoreFailed(
                f"redis-cli {arguments[0]} failed: {last_lines(stdout + stderr)}",
                details={"container": container_id},
            )
        return stdout

    # A replica keeps its data set until the full copy has arrived; it then swaps it in.
    redis("REPLICAOF", _LOOPBACK, str(port))
    deadline = time.monotonic() + _REPLICATION_TIMEOUT
    try:
        while True:
            info = _info_fields(redis("INFO", "replication"))
            if info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == "0":
                return
            if time.monotonic() > deadline:
                raise RestoreFailed(
                    "the Redis server did not finish copying the restored data within "
                    f"{_REPLICATION_TIMEOUT:.0f} s",
                    details={"container": container_id},
                )
            time.sleep(0.2)
    finally:
        redis("REPLICAOF", "NO", "ONE")


def _info_fields(output: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in output.splitlines():
        if ":" in line and not line.startswith("#"):
            key, value = line.strip().split(":", 1)
            fields[key] = value
    return fields


def redis_keyspace(client: docker.DockerClient, container_id: str, source: DatabaseSource) -> dict[str, int]:
    """Return the key count of every non-empty Redis database, keyed ``db0``, ``db1``, ..."""
    code, stdout, stderr = _run(
        client, container_id, source, [*redis_cli(source), "INFO", "keyspace"], redis_environment(source)
    )
    if code != 0 or stdout.startswith(("ERR", "NOAUTH", "WRONGPASS")):
        raise RestoreFailed(
            f"redis-cli INFO failed: {last_lines(stdout + stderr)}", details={"container": container_id}
        )
    counts: dict[str, int] = {}
    for key, value in _info_fields(stdout).items():
        if key.startswith("db"):
            counts[key] = int(value.split(",")[0].removeprefix("keys="))
    return counts
