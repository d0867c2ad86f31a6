"""Volume backups and restores on a real lab swarm (1 manager + 1 worker), real restic, real S3.

The app's volume lives on the worker, so its backup job must run there. Trees are compared
file by file (checksums, symlink targets, folders), including 0-byte files, empty folders,
symlinks and non-ASCII names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hostcraft.backup.image import build_restic_image
from tests.conftest import Api, make_runtime
from tests.lab_fixtures import node_client, wait_for
from tests.s3_server import S3Server, start_s3_server

pytestmark = [pytest.mark.lab]

LAB_NAME = "hbk"
LAB_SUBNET = "10.77.160.0/24"

# Fixed shell text: builds the test tree inside the volume mounted at /data.
FILL_SCRIPT = """
set -e
cd /data
mkdir -p "empty dir" nested/deeper "ünïcödé-日本"
: > zero-bytes
echo hello > nested/deeper/hello.txt
echo grüße > "ünïcödé-日本/straße.txt"
ln -s nested/deeper/hello.txt link-to-hello
ln -s /does/not/exist dangling-link
head -c 3000000 /dev/urandom > random.bin
echo .hidden > .dotfile
"""
LIST_SCRIPT = """
cd /data || exit 2
find . -type f -exec md5sum {} + | sort
find . -type l | sort | while read -r l; do echo "link $l -> $(readlink "$l")"; done
find . -type d | sort | sed 's/^/dir /'
"""


@dataclass
class Env:
    api: Api
    lab: Any
    s3: S3Server
    worker: Any
    manager_server: dict[str, Any]
    worker_server: dict[str, Any]
    busybox: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root: run them with scripts/test as root")
    from hostcraft.lab import build_images, lab_down, lab_up

    lab_down(LAB_NAME)
    lab = lab_up(LAB_NAME, managers=1, workers=1, subnet=LAB_SUBNET, swarm=False)
    images = build_images(lab)
    backup_image = f"{lab.registry}/hostcraft/restic:0.14"
    builder = node_client(lab.nodes[0], timeout=300)
    build_restic_image(builder, backup_image)
    for line in builder.images.push(backup_image.rsplit(":", 1)[0], tag="0.14", stream=True, decode=True):
        assert "error" not in line, line
    builder.close()
    # Jobs on lab nodes cannot reach loopback: the S3 server listens on the lab bridge.
    s3 = start_s3_server(lab.bridge_address)
    tmp = Path(tmp_path_factory.mktemp("volume-backups"))
    for runtime in make_runtime("sqlite", tmp, backup_image=backup_image):
        api = Api(runtime)
        region = api.post(
            "/api/regions", {"name": "Lab", "code": "lab", "priority": 1, "isPrimary": True}
        ).json()
        servers = {}
        for node in lab.nodes:
            response = api.post(
                "/api/servers", {"name": node.name, "endpoint": node.endpoint, "regionId": region["id"]}
            )
            assert response.status_code == 201, response.text
            servers[node.role] = response.json()
        manager, worker = lab.nodes[0], lab.nodes[1]
        init = api.post(
            f"/api/servers/{servers['manager']['id']}/swarm/init", {"advertiseAddress": manager.address}
        )
        assert init.status_code == 200, init.text
        joined = api.post(f"/api/servers/{servers['worker']['id']}/swarm/join", {"asManager": False})
        assert joined.status_code == 200, joined.text
        worker_server = api.get(f"/api/servers/{servers['worker']['id']}").json()
        yield Env(api, lab, s3, worker, servers["manager"], worker_server, images["busybox"])
        api.client.close()
    s3.stop()
    if not os.environ.get("HOSTCRAFT_KEEP_LAB"):
        lab_down(LAB_NAME)


def run_on_worker(env: Env, volume: str, script: str) -> str:
    client = node_client(env.worker)
    try:
        output = client.containers.run(
            env.busybox, ["sh", "-c", script], volumes={volume: {"bind": "/data", "mode": "rw"}}, remove=True
        )
    finally:
        client.close()
    return bytes(output).decode()


def deploy_app(env: Env, name: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "project": name,
        "image": env.busybox,
        "command": ["sleep", "100000"],
        "volumes": [{"name": "data", "target": "/data"}],
        "placement": {"constraints": ["node.role==worker"]},
        **fields,
    }
    app = env.api.post("/api/applications", body)
    assert app.status_code == 201, app.text
    deployed = env.api.post(f"/api/applications/{app.json()['id']}/deploy?wait=true")
    assert deployed.json()["status"] == "succeeded", deployed.text
    return dict(env.api.get(f"/api/applications/{app.json()['id']}").json())


def add_destination(env: Env, name: str, *, key: str = "admin", tmp: Path | None = None) -> dict[str, Any]:
    if tmp is not None:
        body: dict[str, Any] = {"name": name, "kind": "local", "path": str(tmp)}
    else:
        access, secret = env.s3.keys[key]
        bucket = env.s3.create_bucket()
        body = {
            "name": name,
            "kind": "s3",
            "endpoint": env.s3.url,
            "bucket": bucket,
            "accessKey": access,
            "secretKey": secret,
        }
    response = env.api.post("/api/backup-destinations", body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def backup(
    env: Env, app: dict[str, Any], destination: dict[str, Any], kind: str = "volume"
) -> dict[str, Any]:
    response = env.api.post(
        f"/api/applications/{app['id']}/backups?wait=true", {"type": kind, "destinationId": destination["id"]}
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def replicas(env: Env, app: dict[str, Any]) -> int:
    client = node_client(env.lab.nodes[0])
    try:
        spec = client.api.inspect_service(app["serviceId"])["Spec"]
    finally:
        client.close()
    return int(spec["Mode"]["Replicated"]["Replicas"])


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_volume_round_trip_is_exact(env: Env, kind: str, tmp_path: Path) -> None:
    app = deploy_app(env, f"exact-{kind}")
    volume = env.api.get(f"/api/applications/{app['id']}/volumes").json()[0]["swarmName"]
    run_on_worker(env, volume, FILL_SCRIPT)
    before = run_on_worker(env, volume, LIST_SCRIPT)
    destination = add_destination(env, f"vol-{kind}", tmp=tmp_path / "repo" if kind == "local" else None)

    done = backup(env, app, destination)

    assert done["status"] == "succeeded", done
    assert done["node"] == env.worker.name
    assert done["snapshots"][0]["part"] == "volume:data"
    assert done["bytesAdded"] > 3_000_000
    assert done["checkStatus"] == "passed"
    restored = env.api.post(
        f"/api/backups/{done['id']}/restore", {"mode": "new", "targetServerId": env.worker_server["id"]}
    )
    assert restored.status_code == 200, restored.text
    new_volume = restored.json()["restored"][0]["volume"]
    assert new_volume == f"{volume}_restore{done['id']}"
    assert run_on_worker(env, new_volume, LIST_SCRIPT) == before
    # Finished job containers carry the repository secrets in their environment: none is left.
    client = node_client(env.worker)
    try:
        leftovers = [
            container["Names"]
            for container in client.api.containers(all=True)
            if container["Labels"].get("com.docker.swarm.service.name", "").startswith("hostcraft-")
        ]
    finally:
        client.close()
    assert leftovers == []


def test_replace_refuses_volume_in_use_then_restores_exactly(env: Env) -> None:
    app = deploy_app(env, "replace")
    volume = env.api.get(f"/api/applications/{app['id']}/volumes").json()[0]["swarmName"]
    run_on_worker(env, volume, FILL_SCRIPT)
    before = run_on_worker(env, volume, LIST_SCRIPT)
    done = backup(env, app, add_destination(env, "replace-dest"))
    assert done["status"] == "succeeded", done
    run_on_worker(
        env, volume, "echo changed > /data/zero-bytes; echo stale > /data/stale-file; rm -r '/data/empty dir'"
    )

    refused = env.api.post(f"/api/backups/{done['id']}/restore", {"mode": "replace"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["details"]["field"] == "stopApp"
    assert "stale-file" in run_on_worker(env, volume, "ls /data")

    restored = env.api.post(f"/api/backups/{done['id']}/restore", {"mode": "replace", "stopApp": True})
    assert restored.status_code == 200, restored.text
    assert run_on_worker(env, volume, LIST_SCRIPT) == before
    assert replicas(env, app) == 1


def test_failed_quiesced_backup_restores_replicas(env: Env) -> None:
    """A stop-the-app backup to a read-only key fails, and the app is back at its replica count."""
    app = deploy_app(env, "quiesce", backupQuiesce="stop")
    bucket = env.s3.create_bucket()
    admin, reader = env.s3.keys["admin"], env.s3.keys["reader"]
    body = {
        "name": "c09",
        "kind": "s3",
        "endpoint": env.s3.url,
        "bucket": bucket,
        "accessKey": admin[0],
        "secretKey": admin[1],
    }
    destination = env.api.post("/api/backup-destinations", body).json()
    assert env.api.post(f"/api/backup-destinations/{destination['id']}/test").json()["ok"] is True
    # The repository now exists, so the backup gets as far as stopping the app and running the job.
    changed = env.api.put(
        f"/api/backup-destinations/{destination['id']}",
        {**body, "accessKey": reader[0], "secretKey": reader[1]},
    )
    assert changed.status_code == 200, changed.text

    done = backup(env, app, destination)

    assert done["status"] == "failed"
    assert "Access Denied" in done["message"]
    assert done["snapshotIds"] == []
    assert replicas(env, app) == 1
    wait_for(lambda: _running_tasks(env, app) == 1, timeout=60, what="the app's task to run again")
    with env.api.runtime.store.session() as session:
        from hostcraft.services.alerts import find_open_alert

        alert = find_open_alert(session, f"app:{app['id']}:backup")
        assert alert is not None and alert.trigger == "backup_failure"


def _running_tasks(env: Env, app: dict[str, Any]) -> int:
    client = node_client(env.lab.nodes[0])
    try:
        tasks = client.api.tasks(filters={"service": app["serviceId"], "desired-state": "running"})
    finally:
        client.close()
    return sum(1 for task in tasks if task["Status"]["State"] == "running")
