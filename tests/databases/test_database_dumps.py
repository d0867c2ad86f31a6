"""Dumps, restores and fingerprints against real PostgreSQL, MariaDB and Redis containers."""

from __future__ import annotations

import hashlib
import io
import socket
import subprocess
import time
from typing import Any

import docker
import pytest

from hostcraft.backup.databases import (
    DatabaseSource,
    database_fingerprint,
    dump_database,
    restore_database,
)
from hostcraft.backup.dump_formats import DumpIncomplete, checker_for
from hostcraft.errors import ConflictError, DumpFailed, RestoreFailed, ValidationError
from tests.database_fixtures import StartDatabase, run_sql, table_checksums

pytestmark = pytest.mark.docker

PG_COLUMNS = {"items": "", "notes": "", "empty_table": ""}
MARIADB_COLUMNS = {"items": "id, name, price", "notes": "id, body", "empty_table": "id"}

PG_SCHEMA = """
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10, 2), payload bytea);
INSERT INTO items SELECT g, 'Ware ' || g || ' — größe ø ✓ 日本', g * 1.25, decode(md5(g::text), 'hex')
  FROM generate_series(1, 500) g;
CREATE TABLE notes (id serial PRIMARY KEY, body text);
INSERT INTO notes (body) VALUES ('zürich'), ('naïve café'), (NULL), ('emoji 🚀');
CREATE TABLE empty_table (id int);
"""

MARIADB_SCHEMA = """
CREATE TABLE items (id int PRIMARY KEY, name varchar(200) NOT NULL, price decimal(10, 2));
INSERT INTO items SELECT seq, concat('Ware ', seq, ' — größe ø ✓ 日本'), seq * 1.25 FROM seq_1_to_500;
CREATE TABLE notes (id int AUTO_INCREMENT PRIMARY KEY, body text);
INSERT INTO notes (body) VALUES ('zürich'), ('naïve café'), (NULL), ('emoji 🚀');
CREATE TABLE empty_table (id int);
"""


def dump_bytes(docker_engine: docker.DockerClient, container: Any, source: DatabaseSource) -> bytes:
    sink = io.BytesIO()
    result = dump_database(docker_engine, container.id, source, sink)
    data = sink.getvalue()
    assert result.size_bytes == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    return data


def upload(container: Any, shell_command: str, content: bytes) -> None:
    """Run ``shell_command`` in the container with ``content`` on its stdin, and wait for it."""
    result = container.exec_run(["sh", "-c", shell_command], stdin=True, socket=True)
    connection = result.output._sock
    connection.sendall(content)
    connection.shutdown(socket.SHUT_WR)
    while connection.recv(4096):
        pass
    connection.close()


def replace_tool(container: Any, path: str, script: str) -> None:
    """Swap a dump tool in the container for a shell script (to imitate a misbehaving tool)."""
    install = f"mv {path} {path}.real && cat > {path} && chmod 755 {path}"
    upload(container, install, script.encode())
    for _ in range(50):
        if container.exec_run(["test", "-x", path]).exit_code == 0:
            return
    pytest.fail(f"failed to replace {path} in the container")


def scratch_databases(container: Any, source: DatabaseSource) -> list[str]:
    if source.engine == "postgresql":
        sql = "SELECT datname FROM pg_database WHERE datname LIKE '%\\_hc\\_%'"
        return run_sql(container, source, sql, database="postgres").split()
    return run_sql(container, source, "SHOW DATABASES LIKE '%\\_hc\\_%'", database="mysql").split()


# Round trips


def test_postgresql_round_trip_restores_identical_rows(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("postgresql")
    run_sql(container, source, PG_SCHEMA)
    fingerprint = database_fingerprint(docker_engine, container.id, source, "shop")
    checksums = table_checksums(container, source, PG_COLUMNS)
    dump = dump_bytes(docker_engine, container, source)

    run_sql(
        container, source, "DELETE FROM items WHERE id > 10; DROP TABLE notes; CREATE TABLE extra (id int)"
    )
    result = restore_database(docker_engine, container.id, source, io.BytesIO(dump), mode="replace")

    assert result.database == "shop"
    assert result.size_bytes == len(dump)
    assert database_fingerprint(docker_engine, container.id, source, "shop") == fingerprint
    assert fingerprint == {"public.items": 500, "public.notes": 4, "public.empty_table": 0}
    assert table_checksums(container, source, PG_COLUMNS) == checksums
    assert scratch_databases(container, source) == []


def test_pg_dumpall_round_trip_restores_roles(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("postgresql")
    run_sql(container, source, "CREATE ROLE reporter LOGIN PASSWORD 'reporter-pw'", database="postgres")
    run_sql(container, source, "ALTER DATABASE shop OWNER TO reporter", database="postgres")
    run_sql(container, source, PG_SCHEMA + "ALTER TABLE items OWNER TO reporter;")
    fingerprint = database_fingerprint(docker_engine, container.id, source, "shop")
    checksums = table_checksums(container, source, PG_COLUMNS)
    cluster = DatabaseSource(engine="postgresql", password=source.password)
    dump = dump_bytes(docker_engine, container, cluster)
    assert dump.startswith(b"--\n-- PostgreSQL database cluster dump")

    fresh, _ = start_database("postgresql", database=None)
    restore_database(docker_engine, fresh.id, cluster, io.BytesIO(dump), mode="new")

    assert database_fingerprint(docker_engine, fresh.id, cluster, "shop") == fingerprint
    assert table_checksums(fresh, source, PG_COLUMNS) == checksums
    owner = run_sql(fresh, source, "SELECT tableowner FROM pg_tables WHERE tablename = 'items'").strip()
    assert owner == "reporter"
    login = fresh.exec_run(
        ["psql", "-h", "127.0.0.1", "-U", "reporter", "-d", "shop", "-Atc", "SELECT current_user"],
        environment={"PGPASSWORD": "reporter-pw"},
    )
    assert login.exit_code == 0, login.output.decode()
    assert login.output.decode().strip() == "reporter"


def test_pg_dumpall_replace_is_rejected(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("postgresql")
    cluster = DatabaseSource(engine="postgresql", password=source.password)
    dump = dump_bytes(docker_engine, container, cluster)

    with pytest.raises(ValidationError) as raised:
        restore_database(docker_engine, container.id, cluster, io.BytesIO(dump), mode="replace")
    assert raised.value.field == "mode"


def test_mariadb_round_trip_restores_identical_rows(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("mariadb")
    run_sql(container, source, MARIADB_SCHEMA)
    fingerprint = database_fingerprint(docker_engine, container.id, source, "shop")
    checksums = table_checksums(container, source, MARIADB_COLUMNS)
    dump = dump_bytes(docker_engine, container, source)
    assert b"-- Dump completed" in dump[-200:]

    run_sql(
        container, source, "DELETE FROM items WHERE id > 10; DROP TABLE notes; CREATE TABLE extra (id int)"
    )
    result = restore_database(docker_engine, container.id, source, io.BytesIO(dump), mode="replace")

    assert result.database == "shop"
    assert fingerprint == {"items": 500, "notes": 4, "empty_table": 0}
    assert database_fingerprint(docker_engine, container.id, source, "shop") == fingerprint
    assert table_checksums(container, source, MARIADB_COLUMNS) == checksums
    assert scratch_databases(container, source) == []


def test_redis_round_trip_restores_every_key(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("redis")
    for database, keys in ((0, 300), (3, 7)):
        script = f'for i in $(seq 1 {keys}); do echo "SET key:$i wert-ü-$i"; done | redis-cli -n {database}'
        assert container.exec_run(["sh", "-c", script]).exit_code == 0
    container.exec_run(["redis-cli", "HSET", "hash:ø", "feld", "日本"])
    fingerprint = database_fingerprint(docker_engine, container.id, source, None)
    dump = dump_bytes(docker_engine, container, source)
    assert dump.startswith(b"REDIS")

    container.exec_run(["redis-cli", "FLUSHALL"])
    container.exec_run(["redis-cli", "SET", "only-after-dump", "1"])
    restore_database(docker_engine, container.id, source, io.BytesIO(dump), mode="replace")

    assert fingerprint == {"db0": 301, "db3": 7}
    assert database_fingerprint(docker_engine, container.id, source, None) == fingerprint
    value = container.exec_run(["redis-cli", "HGET", "hash:ø", "feld"]).output.decode().strip()
    assert value == "日本"
    assert container.exec_run(["redis-cli", "EXISTS", "only-after-dump"]).output.decode().strip() == "0"
    role = container.exec_run(["redis-cli", "ROLE"]).output.decode().split()[0]
    assert role == "master"


# C-07: a failed dump is never a success


def test_wrong_password_fails_postgresql_dump(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, _ = start_database("postgresql")
    wrong = DatabaseSource(engine="postgresql", password="Wrong-Password-123", database="shop")
    sink = io.BytesIO()

    with pytest.raises(DumpFailed) as raised:
        dump_database(docker_engine, container.id, wrong, sink)

    assert "password authentication failed" in raised.value.message
    assert "exited with code 1" in raised.value.message
    assert "Wrong-Password-123" not in raised.value.message
    assert "Wrong-Password-123" not in str(raised.value.details)
    assert sink.getvalue() == b""


def test_wrong_password_fails_mariadb_and_redis_dumps(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    mariadb, _ = start_database("mariadb")
    redis, _ = start_database("redis")
    redis.exec_run(["redis-cli", "CONFIG", "SET", "requirepass", "Right-Password-1"])

    for container, wrong in (
        (mariadb, DatabaseSource(engine="mariadb", password="Wrong-Password-123", database="shop")),
        (redis, DatabaseSource(engine="redis", password="Wrong-Password-123")),
    ):
        with pytest.raises(DumpFailed) as raised:
            dump_database(docker_engine, container.id, wrong, io.BytesIO())
        assert "exited with code" in raised.value.message
        assert "Wrong-Password-123" not in raised.value.message


@pytest.mark.parametrize(
    ("engine", "tool", "output", "expected"),
    [
        (
            "postgresql",
            "/usr/lib/postgresql/15/bin/pg_dump",
            "",
            "exited with code 0 but its dump is invalid",
        ),
        ("postgresql", "/usr/lib/postgresql/15/bin/pg_dump", "printf 'PGDMP'", "exited with code 0 but"),
        (
            "mariadb",
            "/usr/bin/mariadb-dump",
            "printf -- '-- MariaDB dump 10.19\\n--\\n'",
            "exited with code 0 but its dump is invalid",
        ),
        # redis-check-rdb rejects the file inside the container before it is sent.
        ("redis", "/usr/bin/redis-cli", "printf 'REDIS0010' > \"$rdb_file\"", "redis-check-rdb"),
    ],
    ids=["pg-empty", "pg-header-only", "mariadb-header-only", "redis-header-only"],
)
def test_empty_or_header_only_dump_fails(
    docker_engine: docker.DockerClient,
    start_database: StartDatabase,
    engine: str,
    tool: str,
    output: str,
    expected: str,
) -> None:
    container, source = start_database(engine)
    # The fake redis-cli finds the file name after --rdb; the others write to stdout.
    script = '#!/bin/sh\nrdb_file=""\nwhile [ $# -gt 0 ]; do [ "$1" = --rdb ] && rdb_file="$2"; shift; done\n'
    if "--version" not in output:
        script += f'case " $* " in *" --version "*) ;; esac\n{output}\nexit 0\n'
    replace_tool(container, tool, script)

    with pytest.raises(DumpFailed) as raised:
        dump_database(docker_engine, container.id, source, io.BytesIO())

    assert expected in raised.value.message


def test_failing_sink_fails_dump(docker_engine: docker.DockerClient, start_database: StartDatabase) -> None:
    container, source = start_database("postgresql")
    run_sql(container, source, PG_SCHEMA)

    class ClosedPipe:
        """A sink like restic's stdin after restic exited: every write fails."""

        def write(self, chunk: bytes) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

    with pytest.raises(DumpFailed) as raised:
        dump_database(docker_engine, container.id, source, ClosedPipe())  # type: ignore[arg-type]

    assert "failed to write the pg_dump dump to its destination after 0 bytes" in raised.value.message
    # The closed stream ends pg_dump with a broken pipe; it may take a moment to exit.
    list_processes = ["sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '"]
    for _ in range(100):
        if b"pg_dump" not in container.exec_run(list_processes).output:
            break
        time.sleep(0.1)
    assert b"pg_dump" not in container.exec_run(list_processes).output


def test_truncated_dump_stream_fails(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("postgresql")
    run_sql(container, source, PG_SCHEMA)
    dump = dump_bytes(docker_engine, container, source)
    upload(container, "cat > /tmp/full.dump", dump)
    # A pg_dump that exits 0 after writing only the first part of a real archive.
    half = len(dump) // 2
    replace_tool(
        container,
        "/usr/lib/postgresql/15/bin/pg_dump",
        f'#!/bin/sh\ncase "$*" in *--version*) echo "pg_dump (PostgreSQL) 15"; exit 0;; esac\n'
        f"head -c {half} /tmp/full.dump\nexit 0\n",
    )

    with pytest.raises(DumpFailed) as raised:
        dump_database(docker_engine, container.id, source, io.BytesIO())

    assert "truncated" in raised.value.message


@pytest.mark.parametrize("engine", ["postgresql", "pg_dumpall", "mariadb", "redis"])
def test_every_truncation_of_real_dump_is_detected(
    docker_engine: docker.DockerClient, start_database: StartDatabase, engine: str
) -> None:
    container, source = start_database("postgresql" if engine == "pg_dumpall" else engine)
    if engine in ("postgresql", "pg_dumpall"):
        run_sql(container, source, PG_SCHEMA)
    elif engine == "mariadb":
        run_sql(container, source, MARIADB_SCHEMA)
    else:
        container.exec_run(["sh", "-c", 'for i in $(seq 1 200); do echo "SET k$i v$i"; done | redis-cli'])
    if engine == "pg_dumpall":
        source = DatabaseSource(engine="postgresql", password=source.password)
    dump = dump_bytes(docker_engine, container, source)
    dump_format = {
        "postgresql": "pg_dump_custom",
        "pg_dumpall": "pg_dumpall_sql",
        "mariadb": "mysqldump_sql",
        "redis": "redis_rdb",
    }[engine]

    step = max(1, len(dump) // 300)
    cuts = sorted({*range(0, len(dump), step), *range(max(0, len(dump) - 64), len(dump))})
    for cut in cuts:
        checker = checker_for(dump_format)  # type: ignore[arg-type]
        checker.feed(dump[:cut])
        with pytest.raises(DumpIncomplete):
            checker.finish()
    whole = checker_for(dump_format)  # type: ignore[arg-type]
    for start in range(0, len(dump), 1000):
        whole.feed(dump[start : start + 1000])
    whole.finish()


def test_large_dump_streams_into_a_pipe_incrementally(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("postgresql")
    run_sql(
        container,
        source,
        "CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 3) AS body "
        "FROM generate_series(1, 550000) g",
    )
    cluster = DatabaseSource(engine="postgresql", password=source.password)
    # sha256sum replaces restic --stdin here: a child process reading the dump from a pipe.
    reader = subprocess.Popen(["sha256sum"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert reader.stdin is not None
    writes: list[int] = []

    class RecordingPipe:
        def write(self, chunk: bytes) -> int:
            writes.append(len(chunk))
            return reader.stdin.write(chunk)  # type: ignore[union-attr]

        def flush(self) -> None:
            reader.stdin.flush()  # type: ignore[union-attr]

    progress: list[int] = []
    result = dump_database(docker_engine, container.id, cluster, RecordingPipe(), progress=progress.append)  # type: ignore[arg-type]
    output, _ = reader.communicate(timeout=60)

    assert result.size_bytes > 50 * 1024 * 1024
    assert output.decode().split()[0] == result.sha256
    assert len(writes) > 100
    assert max(writes) <= 2 * 1024 * 1024
    assert progress == sorted(progress)
    assert progress[-1] == result.size_bytes


# C-08: a failed restore leaves the original data untouched


def test_truncated_postgresql_restore_leaves_original(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("postgresql")
    run_sql(container, source, PG_SCHEMA)
    dump = dump_bytes(docker_engine, container, source)
    run_sql(
        container, source, "DELETE FROM items WHERE id > 100; INSERT INTO notes (body) VALUES ('after dump')"
    )
    fingerprint = database_fingerprint(docker_engine, container.id, source, "shop")
    checksums = table_checksums(container, source, PG_COLUMNS)

    for cut in (len(dump) // 2, len(dump) - 10):
        with pytest.raises(RestoreFailed) as raised:
            restore_database(docker_engine, container.id, source, io.BytesIO(dump[:cut]), mode="replace")
        assert "'shop' is unchanged" in raised.value.message

    assert database_fingerprint(docker_engine, container.id, source, "shop") == fingerprint
    assert table_checksums(container, source, PG_COLUMNS) == checksums
    assert scratch_databases(container, source) == []


def test_restore_referencing_missing_role_leaves_original(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("postgresql")
    run_sql(container, source, "CREATE ROLE ghost", database="postgres")
    run_sql(container, source, "CREATE DATABASE haunted OWNER ghost", database="postgres")
    haunted = DatabaseSource(engine="postgresql", password=source.password, database="haunted")
    run_sql(container, haunted, "CREATE TABLE spirits (id int); ALTER TABLE spirits OWNER TO ghost")
    dump = dump_bytes(docker_engine, container, haunted)
    run_sql(container, source, "DROP DATABASE haunted", database="postgres")
    run_sql(container, source, "DROP ROLE ghost", database="postgres")
    run_sql(container, source, PG_SCHEMA)
    fingerprint = database_fingerprint(docker_engine, container.id, source, "shop")

    with pytest.raises(RestoreFailed) as raised:
        restore_database(
            docker_engine, container.id, haunted, io.BytesIO(dump), target_database="shop", mode="replace"
        )

    assert 'role "ghost" does not exist' in raised.value.message
    assert "'shop' is unchanged" in raised.value.message
    assert database_fingerprint(docker_engine, container.id, source, "shop") == fingerprint
    assert scratch_databases(container, source) == []


def test_truncated_mariadb_restore_leaves_original(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("mariadb")
    run_sql(container, source, MARIADB_SCHEMA)
    dump = dump_bytes(docker_engine, container, source)
    run_sql(container, source, "DELETE FROM items WHERE id > 100")
    fingerprint = database_fingerprint(docker_engine, container.id, source, "shop")
    checksums = table_checksums(container, source, MARIADB_COLUMNS)
    # Cut at a line end, so every statement parses and only the completion comment is missing.
    at_line_end = dump.rindex(b";\n", 0, len(dump) // 2) + 2

    for cut in (len(dump) // 2, at_line_end):
        with pytest.raises(RestoreFailed) as raised:
            restore_database(docker_engine, container.id, source, io.BytesIO(dump[:cut]), mode="replace")
        assert "'shop' is unchanged" in raised.value.message

    assert database_fingerprint(docker_engine, container.id, source, "shop") == fingerprint
    assert table_checksums(container, source, MARIADB_COLUMNS) == checksums
    assert scratch_databases(container, source) == []


def test_mariadb_restore_with_view_is_refused_before_swap(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("mariadb")
    run_sql(container, source, MARIADB_SCHEMA + "CREATE VIEW cheap AS SELECT * FROM items WHERE price < 10;")
    dump = dump_bytes(docker_engine, container, source)
    run_sql(container, source, "DELETE FROM items WHERE id > 100")
    fingerprint = database_fingerprint(docker_engine, container.id, source, "shop")

    with pytest.raises(RestoreFailed) as raised:
        restore_database(docker_engine, container.id, source, io.BytesIO(dump), mode="replace")

    assert "views" in raised.value.message
    assert database_fingerprint(docker_engine, container.id, source, "shop") == fingerprint
    assert scratch_databases(container, source) == []
    restore_database(
        docker_engine, container.id, source, io.BytesIO(dump), target_database="shop_restored", mode="new"
    )
    assert database_fingerprint(docker_engine, container.id, source, "shop_restored")["items"] == 500


def test_truncated_redis_restore_leaves_data(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("redis")
    container.exec_run(["sh", "-c", 'for i in $(seq 1 50); do echo "SET k$i v$i"; done | redis-cli'])
    dump = dump_bytes(docker_engine, container, source)
    container.exec_run(["redis-cli", "SET", "after-dump", "1"])
    fingerprint = database_fingerprint(docker_engine, container.id, source, None)

    with pytest.raises(RestoreFailed) as raised:
        restore_database(
            docker_engine, container.id, source, io.BytesIO(dump[: len(dump) - 5]), mode="replace"
        )

    assert "the data is unchanged" in raised.value.message
    assert database_fingerprint(docker_engine, container.id, source, None) == fingerprint == {"db0": 51}
    leftovers = container.exec_run(["sh", "-c", "ls -d /tmp/hostcraft-restore-* 2>/dev/null"]).output
    assert leftovers == b""


# Restoring under a new name


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_new_mode_keeps_original_untouched(
    docker_engine: docker.DockerClient, start_database: StartDatabase, engine: str
) -> None:
    container, source = start_database(engine)
    run_sql(container, source, PG_SCHEMA if engine == "postgresql" else MARIADB_SCHEMA)
    dumped = database_fingerprint(docker_engine, container.id, source, "shop")
    dump = dump_bytes(docker_engine, container, source)
    run_sql(container, source, "DELETE FROM items WHERE id > 10")
    current = database_fingerprint(docker_engine, container.id, source, "shop")

    result = restore_database(
        docker_engine, container.id, source, io.BytesIO(dump), target_database="shop_copy", mode="new"
    )

    assert result.database == "shop_copy"
    assert database_fingerprint(docker_engine, container.id, source, "shop_copy") == dumped
    assert database_fingerprint(docker_engine, container.id, source, "shop") == current
    with pytest.raises(ConflictError):
        restore_database(
            docker_engine, container.id, source, io.BytesIO(dump), target_database="shop", mode="new"
        )


def test_keep_previous_keeps_replaced_postgresql_database(
    docker_engine: docker.DockerClient, start_database: StartDatabase
) -> None:
    container, source = start_database("postgresql")
    run_sql(container, source, PG_SCHEMA)
    dump = dump_bytes(docker_engine, container, source)
    run_sql(container, source, "DELETE FROM items WHERE id > 10")

    result = restore_database(
        docker_engine, container.id, source, io.BytesIO(dump), mode="replace", keep_previous=True
    )

    assert result.previous_database is not None
    assert (
        database_fingerprint(docker_engine, container.id, source, result.previous_database)["public.items"]
        == 10
    )
    assert database_fingerprint(docker_engine, container.id, source, "shop")["public.items"] == 500
