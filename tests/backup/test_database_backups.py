"""Database and volume backups, restores and restore tests through the API on a lab swarm.

A one-node lab swarm runs PostgreSQL and MariaDB from HostCraft's locally built images,
pushed to the lab registry. HostCraft finds the app's running task, reaches the engine of its
node and streams the dump into real restic (local repository on this machine).
Scenarios: C-07 (a wrong password or a broken dump is never a success) and C-08 (a restore
from a truncated dump leaves the original data untouched).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hostcraft.backup.databases import DatabaseSource
from hostcraft.backup.image import build_restic_image
from hostcraft.services.alerts import find_open_alert
from hostcraft.services.backup_destinations import restic_for
from hostcraft.store.models import Backup, BackupDestination
from tests.conftest import Api, make_runtime
from tests.database_fixtures import run_sql
from tests.lab_fixtures import node_client, wait_for

pytestmark = [pytest.mark.lab]

LAB_NAME = "hbe"
LAB_SUBNET = "10.77.180.0/24"
PASSWORDS = {"postgresql": "pg-Secret-4711", "mariadb": "maria-Secret-4711"}
SOURCES = {
    engine: DatabaseSource(engine=engine, password=password, database="shop")  # type: ignore[arg-type]
    for engine, password in PASSWORDS.items()
}
SEED = {
    "postgresql": "CREATE TABLE items (id int PRIMARY KEY, name text); "
    "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g;",
    "mariadb": "CREATE TABLE items (id int PRIMARY KEY, name text); "
    "INSERT INTO items SELECT seq, concat('item ', seq) FROM seq_1_to_500;",
}


@dataclass
class Env:
    api: Api
    lab: Any
    images: dict[str, str]
    repo_root: Path
    busybox: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root: run them with scripts/test as root")
    from hostcraft.lab import build_images, lab_down, lab_up, push_database_images

    lab_down(LAB_NAME)
    lab = lab_up(LAB_NAME, managers=1, workers=0, subnet=LAB_SUBNET, swarm=False)
    images = push_database_images(lab)
    busybox = build_images(lab)["busybox"]
    backup_image = f"{lab.registry}/hostcraft/restic:0.14"
    builder = node_client(lab.nodes[0], timeout=300)
    build_restic_image(builder, backup_image)
    for line in builder.images.push(backup_image.rsplit(":", 1)[0], tag="0.14", stream=True, decode=True):
        assert "error" not in line, line
    builder.close()
    tmp = Path(tmp_path_factory.mktemp("database-backups"))
    for runtime in make_runtime("sqlite", tmp, backup_image=backup_image):
        api = Api(runtime)
        region = api.post(
            "/api/regions", {"name": "Lab", "code": "lab", "priority": 1, "isPrimary": True}
        ).json()
        node = lab.nodes[0]
        server = api.post(
            "/api/servers", {"name": node.name, "endpoint": node.endpoint, "regionId": region["id"]}
        )
        assert server.status_code == 201, server.text
        init = api.post(f"/api/servers/{server.json()['id']}/swarm/init", {"advertiseAddress": node.address})
        assert init.status_code == 200, init.text
        yield Env(api, lab, images, tmp, busybox)
        api.client.close()
    if not os.environ.get("HOSTCRAFT_KEEP_LAB"):
        lab_down(LAB_NAME)


def deploy_database(env: Env, name: str, engine: str, **fields: Any) -> dict[str, Any]:
    password = PASSWORDS[engine]
    if engine == "postgresql":
        app_env = {"POSTGRES_PASSWORD": password, "POSTGRES_DB": "shop"}
        entry = {"name": "main", "engine": engine, "database": "shop", "passwordEnv": "POSTGRES_PASSWORD"}
    else:
        app_env = {"MARIADB_ROOT_PASSWORD": password, "MARIADB_DATABASE": "shop"}
        entry = {"name": "main", "engine": engine, "database": "shop", "passwordEnv": "MARIADB_ROOT_PASSWORD"}
    body = {
        "name": name,
        "project": name,
        "image": env.images[engine],
        "env": app_env,
        "backupDatabases": [entry],
        **fields,
    }
    app = env.api.post("/api/applications", body)
    assert app.status_code == 201, app.text
    deployed = env.api.post(f"/api/applications/{app.json()['id']}/deploy?wait=true")
    assert deployed.json()["status"] == "succeeded", deployed.text
    result = dict(env.api.get(f"/api/applications/{app.json()['id']}").json())
    wait_for(lambda: _serves(env, result, engine), timeout=180, what=f"{engine} of {name} serving")
    run_sql(container(env, result), SOURCES[engine], SEED[engine])
    return result


def container(env: Env, app: dict[str, Any]) -> Any:
    client = node_client(env.lab.nodes[0])
    found = client.containers.list(filters={"label": f"com.docker.swarm.service.id={app['serviceId']}"})
    assert found, f"no container of {app['name']} runs"
    return found[0]


def _serves(env: Env, app: dict[str, Any], engine: str) -> bool:
    client = node_client(env.lab.nodes[0])
    found = client.containers.list(filters={"label": f"com.docker.swarm.service.id={app['serviceId']}"})
    if not found:
        return False
    if engine == "postgresql":
        command = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "shop", "-c", "SELECT 1"]
        environment = {"PGPASSWORD": PASSWORDS[engine]}
    else:
        command = ["mariadb", "-h", "127.0.0.1", "-u", "root", "-e", "SELECT 1", "shop"]
        environment = {"MYSQL_PWD": PASSWORDS[engine]}
    return bool(found[0].exec_run(command, environment=environment).exit_code == 0)


def count(env: Env, app: dict[str, Any], engine: str, database: str = "shop") -> int:
    return int(run_sql(container(env, app), SOURCES[engine], "SELECT count(*) FROM items", database=database))


def destination(env: Env, name: str) -> dict[str, Any]:
    body = {"name": name, "kind": "local", "path": str(env.repo_root / f"repo-{name}")}
    response = env.api.post("/api/backup-destinations", body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def backup(env: Env, app: dict[str, Any], target: dict[str, Any], kind: str = "database") -> dict[str, Any]:
    response = env.api.post(
        f"/api/applications/{app['id']}/backups?wait=true", {"type": kind, "destinationId": target["id"]}
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_database_restore_replace_and_new(env: Env, engine: str) -> None:
    app = deploy_database(env, f"db-{engine[:5]}", engine)
    done = backup(env, app, destination(env, f"db-{engine}"))

    assert done["status"] == "succeeded", done
    part = done["snapshots"][0]
    assert part["part"] == "database:main"
    assert part["engine"] == engine
    assert part["dumpBytes"] > 1000
    assert part["fingerprint"] == {"public.items" if engine == "postgresql" else "items": 500}
    assert done["node"] == env.lab.nodes[0].name

    run_sql(container(env, app), SOURCES[engine], "DELETE FROM items WHERE id > 100")
    assert count(env, app, engine) == 100
    replaced = env.api.post(f"/api/backups/{done['id']}/restore", {"mode": "replace"})
    assert replaced.status_code == 200, replaced.text
    assert count(env, app, engine) == 500

    renamed = env.api.post(f"/api/backups/{done['id']}/restore", {"mode": "new"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["restored"][0]["database"] == f"shop_restore{done['id']}"
    assert count(env, app, engine, database=f"shop_restore{done['id']}") == 500


def test_restore_waits_for_database_to_start(env: Env) -> None:
    app = deploy_database(env, "db-fresh", "postgresql")
    done = backup(env, app, destination(env, "fresh"))
    assert done["status"] == "succeeded", done
    for replicas in (0, 1):
        scaled = env.api.post(f"/api/applications/{app['id']}/scale?wait=true", {"replicas": replicas})
        assert scaled.json()["status"] == "succeeded", scaled.text

    # The new task initializes an empty data directory and turns clients away until it is done.
    restored = env.api.post(f"/api/backups/{done['id']}/restore", {"mode": "replace"})

    assert restored.status_code == 200, restored.text
    assert count(env, app, "postgresql") == 500


def test_wrong_password_fails_backup(env: Env) -> None:
    """A dump rejected by the server is a failed backup, an alert, and no snapshot kept."""
    app = deploy_database(
        env,
        "db-wrongpw",
        "postgresql",
        secrets=[{"name": "db-password", "value": "not-the-password"}],
        backupDatabases=[
            {"name": "main", "engine": "postgresql", "database": "shop", "passwordSecret": "db-password"}
        ],
    )
    target = destination(env, "wrongpw")
    done = backup(env, app, target)

    assert done["status"] == "failed", done
    assert "password authentication failed" in done["message"]
    assert done["snapshots"] == []
    with env.api.runtime.store.session() as session:
        alert = find_open_alert(session, f"app:{app['id']}:backup")
        assert alert is not None
        assert alert.trigger == "backup_failure"
        stored = session.get(BackupDestination, target["id"])
        assert stored is not None
        snapshots = restic_for(stored, env.api.runtime).snapshots(tags=[f"backup:{done['id']}"])
    assert snapshots == []


def test_truncated_dump_keeps_original(env: Env) -> None:
    """A restore whose dump ends half-way fails, and the database keeps its current rows."""
    app = deploy_database(env, "db-trunc", "postgresql")
    target = destination(env, "trunc")
    done = backup(env, app, target)
    assert done["status"] == "succeeded", done
    part = done["snapshots"][0]
    # The repository now contains a dump cut in half, and the backup record points at it.
    with env.api.runtime.store.session() as session:
        stored = session.get(BackupDestination, target["id"])
        assert stored is not None
        restic = restic_for(stored, env.api.runtime)
        whole = restic.read_file(part["snapshotId"], part["filename"])
        cut = restic.backup_stdin(
            io.BytesIO(whole[: len(whole) // 2]), filename=part["filename"], tags=["test"], host="test"
        )
        row = session.get(Backup, done["id"])
        assert row is not None
        row.parts = [{**part, "snapshotId": cut.snapshot_id}]
        session.commit()
    run_sql(container(env, app), SOURCES["postgresql"], "DELETE FROM items WHERE id > 321")

    failed = env.api.post(f"/api/backups/{done['id']}/restore", {"mode": "replace"})

    assert failed.status_code == 502, failed.text
    assert "left as it was" in failed.json()["error"]["message"]
    assert count(env, app, "postgresql") == 321
    databases = run_sql(container(env, app), SOURCES["postgresql"], "SELECT datname FROM pg_database")
    assert "hc_restore" not in databases


def test_full_backup_contains_database(env: Env) -> None:
    app = deploy_database(env, "db-full", "postgresql")
    done = backup(env, app, destination(env, "full"), kind="full")

    assert done["status"] == "succeeded", done
    assert [part["part"] for part in done["snapshots"]] == ["config", "database:main"]
    assert len(set(done["snapshotIds"])) == 2


def test_database_backup_needs_declaration(env: Env) -> None:
    body = {"name": "nodb", "project": "nodb", "image": env.images["redis"]}
    app = env.api.post("/api/applications", body).json()
    response = env.api.post(
        f"/api/applications/{app['id']}/backups", {"type": "database", "destinationId": 1}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == "type"


def test_database_verify_compares_row_counts(env: Env) -> None:
    app = deploy_database(env, "db-verify", "postgresql")
    done = backup(env, app, destination(env, "verify"))
    assert done["status"] == "succeeded", done

    verified = env.api.post(f"/api/backups/{done['id']}/verify")

    assert verified.status_code == 200, verified.text
    part = verified.json()["details"]["parts"][0]
    assert verified.json()["status"] == "passed", verified.json()
    assert part["compared"] == "dump SHA-256 and row counts"
    assert part["rows"] == {"public.items": 500}
    databases = run_sql(container(env, app), SOURCES["postgresql"], "SELECT datname FROM pg_database")
    assert "_hc_verify_" not in databases


# Fixed shell text: builds a small tree inside the volume mounted at /data.
FILL_SCRIPT = """
set -e
cd /data
mkdir -p "empty dir" nested
: > zero-bytes
echo hello > nested/hello.txt
ln -s nested/hello.txt link
head -c 200000 /dev/urandom > random.bin
"""


def run_on_node(env: Env, volume: str, script: str) -> str:
    client = node_client(env.lab.nodes[0], timeout=900)
    try:
        output = client.containers.run(
            env.busybox, ["sh", "-c", script], volumes={volume: {"bind": "/data", "mode": "rw"}}, remove=True
        )
    finally:
        client.close()
    return bytes(output).decode()


def deploy_volume_app(env: Env, name: str) -> tuple[dict[str, Any], str]:
    body = {
        "name": name,
        "project": name,
        "image": env.busybox,
        "command": ["sleep", "100000"],
        "volumes": [{"name": "data", "target": "/data"}],
    }
    app = env.api.post("/api/applications", body)
    assert app.status_code == 201, app.text
    deployed = env.api.post(f"/api/applications/{app.json()['id']}/deploy?wait=true")
    assert deployed.json()["status"] == "succeeded", deployed.text
    volume = env.api.get(f"/api/applications/{app.json()['id']}/volumes").json()[0]["swarmName"]
    return dict(env.api.get(f"/api/applications/{app.json()['id']}").json()), volume


def test_volume_verify_compares_manifest(env: Env) -> None:
    app, volume = deploy_volume_app(env, "vol-verify")
    run_on_node(env, volume, FILL_SCRIPT)
    done = backup(env, app, destination(env, "vol-verify"), kind="volume")
    assert done["status"] == "succeeded", done
    assert done["snapshots"][0]["files"] == 3

    verified = env.api.post(f"/api/backups/{done['id']}/verify").json()

    assert verified["status"] == "passed", verified
    assert verified["details"]["parts"][0]["compared"] == "checksum manifest"
    # A record whose manifest no longer matches the repository's tree fails the test and alerts.
    with env.api.runtime.store.session() as session:
        row = session.get(Backup, done["id"])
        assert row is not None
        row.parts = [{**row.parts[0], "manifestSha256": "0" * 64}]
        session.commit()
    mismatch = env.api.post(f"/api/backups/{done['id']}/verify").json()
    assert mismatch["status"] == "failed"
    assert "differs from the one backed up" in mismatch["message"]
    with env.api.runtime.store.session() as session:
        assert find_open_alert(session, f"app:{app['id']}:restore-test") is not None


# Fixed shell text: 1 GiB of random data in 4 files, then one checksum line per file.
BIG_FILL_SCRIPT = """
set -e
for part in 1 2 3 4; do head -c 268435456 /dev/urandom > /data/big-$part.bin; done
"""
SUMS_SCRIPT = "cd /data && md5sum big-*.bin"


@pytest.mark.slow
def test_one_gigabyte_volume_round_trip(env: Env) -> None:
    app, volume = deploy_volume_app(env, "vol-big")
    run_on_node(env, volume, BIG_FILL_SCRIPT)
    before = run_on_node(env, volume, SUMS_SCRIPT)
    done = backup(env, app, destination(env, "vol-big"), kind="volume")
    assert done["status"] == "succeeded", done
    assert done["totalBytes"] == 4 * 268435456

    restored = env.api.post(f"/api/backups/{done['id']}/restore", {"mode": "new"})

    assert restored.status_code == 200, restored.text
    new_volume = restored.json()["restored"][0]["volume"]
    assert run_on_node(env, new_volume, SUMS_SCRIPT) == before
    run_on_node(env, new_volume, "rm -f /data/big-*.bin")
    run_on_node(env, volume, "rm -f /data/big-*.bin")


def redis_cli(env: Env, app: dict[str, Any], *arguments: str) -> str:
    result = container(env, app).exec_run(["redis-cli", "-h", "127.0.0.1", *arguments])
    assert result.exit_code == 0, result.output
    return bytes(result.output).decode().strip()


def test_redis_backup_verify_and_replace(env: Env) -> None:
    body = {
        "name": "cache",
        "project": "cache",
        "image": env.images["redis"],
        "backupDatabases": [{"name": "cache", "engine": "redis"}],
    }
    created = env.api.post("/api/applications", body)
    assert created.status_code == 201, created.text
    deployed = env.api.post(f"/api/applications/{created.json()['id']}/deploy?wait=true")
    assert deployed.json()["status"] == "succeeded", deployed.text
    app = dict(env.api.get(f"/api/applications/{created.json()['id']}").json())
    wait_for(lambda: redis_cli(env, app, "ping") == "PONG", timeout=120, what="redis serving")
    for index in range(50):
        redis_cli(env, app, "set", f"key:{index}", f"value {index}")
    done = backup(env, app, destination(env, "redis"))
    assert done["status"] == "succeeded", done
    assert done["snapshots"][0]["fingerprint"] == {"db0": 50}

    verified = env.api.post(f"/api/backups/{done['id']}/verify").json()
    redis_cli(env, app, "flushall")
    restored = env.api.post(f"/api/backups/{done['id']}/restore", {"mode": "replace"})

    assert verified["status"] == "passed", verified
    assert verified["details"]["parts"][0]["compared"] == "dump SHA-256"
    assert restored.status_code == 200, restored.text
    assert redis_cli(env, app, "dbsize") == "50"
    assert redis_cli(env, app, "get", "key:7") == "value 7"
