"""Real PostgreSQL, MariaDB and Redis containers from HostCraft's locally built images.

Import ``database_images`` and ``start_database`` into a ``conftest.py`` to use them.

The images come from ``ensure_database_images`` once per session: the first run on a machine
builds them with debootstrap (a few minutes), later runs find them or import the cached root
file systems. Each test starts its own containers, named ``hc-dbtest-...``, and removes them.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from hostcraft.backup.databases import DatabaseSource
from tests.conftest import LOCAL_ENGINE

CONTAINER_PREFIX = "hc-dbtest-"
READY_TIMEOUT = 120.0

PASSWORDS = {"postgresql": "pg-Secret-4711", "mariadb": "maria-Secret-4711", "redis": None}


@pytest.fixture(scope="session")
def database_images(docker_engine: docker.DockerClient) -> dict[str, str]:
    """Image references keyed by engine, built or loaded into the root-namespace engine."""
    from hostcraft.lab.database_images import ensure_database_images

    if os.geteuid() != 0:
        if os.environ.get("CI") or os.environ.get("HOSTCRAFT_REQUIRE_DOCKER"):
            pytest.fail("database image tests need root (debootstrap, chroot): run scripts/test as root")
        pytest.skip("database image tests need root")
    client = docker.DockerClient(base_url=LOCAL_ENGINE, version="1.41", timeout=900)
    try:
        return ensure_database_images(client)
    finally:
        client.close()


StartDatabase = Callable[..., tuple[Any, DatabaseSource]]


@pytest.fixture
def start_database(
    docker_engine: docker.DockerClient, database_images: dict[str, str]
) -> Iterator[StartDatabase]:
    """Start a database container and wait until it serves; returns it with its source."""
    started: list[Any] = []

    def start(
        engine: str, *, database: str | None = "shop", environment: dict[str, str] | None = None
    ) -> tuple[Any, DatabaseSource]:
        password = PASSWORDS[engine]
        env = dict(environment or {})
        if engine == "postgresql":
            env.setdefault("POSTGRES_PASSWORD", password or "")
            if database is not None:
                env.setdefault("POSTGRES_DB", database)
        elif engine == "mariadb":
            env.setdefault("MARIADB_ROOT_PASSWORD", password or "")
            if database is not None:
                env.setdefault("MARIADB_DATABASE", database)
        container = docker_engine.containers.run(
            database_images[engine],
            name=f"{CONTAINER_PREFIX}{engine}-{uuid.uuid4().hex[:8]}",
            environment=env,
            detach=True,
            network_mode="none",
        )
        started.append(container)
        source = DatabaseSource(engine=engine, password=password, database=database)  # type: ignore[arg-type]
        _wait_ready(container, engine, password)
        return container, source

    yield start
    for container in started:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)


def _wait_ready(container: Any, engine: str, password: str | None) -> None:
    if engine == "postgresql":
        command, environment = (
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", "SELECT 1"],
            {"PGPASSWORD": password},
        )
    elif engine == "mariadb":
        command, environment = (
            ["mariadb-admin", "-h", "127.0.0.1", "-u", "root", "ping"],
            {"MYSQL_PWD": password},
        )
    else:
        command, environment = ["redis-cli", "-h", "127.0.0.1", "ping"], {}
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            pytest.fail(f"{engine} container exited during start-up:\n{container.logs().decode()[-2000:]}")
        result = container.exec_run(command, environment=environment)
        if result.exit_code == 0:
            return
        time.sleep(0.5)
    pytest.fail(
        f"{engine} container did not serve within {READY_TIMEOUT:.0f} s:\n{container.logs().decode()[-2000:]}"
    )


def run_sql(container: Any, source: DatabaseSource, sql: str, *, database: str | None = None) -> str:
    """Run SQL with the engine's client in the container; fail the test when it fails."""
    if source.engine == "postgresql":
        command = [
            "psql",
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database or source.database or "postgres",
            "-c",
            sql,
        ]
        environment = {"PGPASSWORD": source.password}
    else:
        command = [
            "mariadb",
            "--default-character-set=utf8mb4",
            "-N",
            "-B",
            "-h",
            "127.0.0.1",
            "-u",
            "root",
            "-e",
            sql,
        ]
        if database or source.database:
            command.append(database or source.database)
        environment = {"MYSQL_PWD": source.password}
    result = container.exec_run(command, environment=environment)
    output = result.output.decode()
    assert result.exit_code == 0, f"SQL failed: {sql}\n{output}"
    return output


def table_checksums(
    container: Any, source: DatabaseSource, columns: dict[str, str], *, database: str | None = None
) -> dict[str, str]:
    """Return an MD5 over each table's rows in a fixed order, to compare contents exactly.

    ``columns`` maps each table to its column list, which MariaDB needs to build row texts.
    """
    checksums = {}
    for table, column_list in columns.items():
        if source.engine == "postgresql":
            sql = f"SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), 'empty') FROM {table} t"
        else:
            sql = (
                "SET SESSION group_concat_max_len = 1073741824; "
                "SELECT coalesce(md5(group_concat(concat_ws(',', "
                f"{column_list}) ORDER BY concat_ws(',', {column_list}) SEPARATOR '|')), 'empty') "
                f"FROM {table}"
            )
        checksums[table] = run_sql(container, source, sql, database=database).strip()
    return checksums
