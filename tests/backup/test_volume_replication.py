"""A volume backup copied to a second S3 bucket and restored from it after the primary is lost.

Real lab swarm (1 manager + 1 worker), real restic jobs on the worker, moto on the lab bridge.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostcraft.backup.image import build_restic_image
from tests.backup.test_volume_backups import FILL_SCRIPT, LIST_SCRIPT, Env, deploy_app, run_on_worker
from tests.conftest import Api, make_runtime
from tests.lab_fixtures import node_client
from tests.s3_server import start_s3_server

pytestmark = [pytest.mark.lab]

LAB_NAME = "hbf"
LAB_SUBNET = "10.77.190.0/24"


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
    tmp = Path(tmp_path_factory.mktemp("volume-replication"))
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
        init = api.post(
            f"/api/servers/{servers['manager']['id']}/swarm/init", {"advertiseAddress": lab.nodes[0].address}
        )
        assert init.status_code == 200, init.text
        joined = api.post(f"/api/servers/{servers['worker']['id']}/swarm/join", {"asManager": False})
        assert joined.status_code == 200, joined.text
        worker_server = api.get(f"/api/servers/{servers['worker']['id']}").json()
        yield Env(api, lab, s3, lab.nodes[1], servers["manager"], worker_server, images["busybox"])
        api.client.close()
    s3.stop()
    if not os.environ.get("HOSTCRAFT_KEEP_LAB"):
        lab_down(LAB_NAME)


def s3_destination(env: Env, name: str, **fields: Any) -> dict[str, Any]:
    access, secret = env.s3.keys["admin"]
    body = {
        "name": name,
        "kind": "s3",
        "endpoint": env.s3.url,
        "bucket": env.s3.create_bucket(),
        "accessKey": access,
        "secretKey": secret,
        **fields,
    }
    response = env.api.post("/api/backup-destinations", body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def empty_bucket(env: Env, bucket: str) -> None:
    client = env.s3.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])


def test_volume_restored_from_replica_after_primary_lost(env: Env) -> None:
    app = deploy_app(env, "replicated")
    volume = env.api.get(f"/api/applications/{app['id']}/volumes").json()[0]["swarmName"]
    run_on_worker(env, volume, FILL_SCRIPT)
    before = run_on_worker(env, volume, LIST_SCRIPT)
    replica = s3_destination(env, "copy-b")
    primary = s3_destination(env, "primary-a", replicateTo=[replica["id"]])

    response = env.api.post(
        f"/api/applications/{app['id']}/backups?wait=true", {"type": "volume", "destinationId": primary["id"]}
    )
    done = env.api.get(f"/api/backups/{response.json()['id']}").json()
    assert done["status"] == "succeeded", done
    assert done["replicas"][0]["status"] == "succeeded", done["replicas"]
    empty_bucket(env, primary["bucket"])

    restored = env.api.post(
        f"/api/backups/{done['id']}/restore", {"mode": "new", "targetServerId": env.worker_server["id"]}
    )

    assert restored.status_code == 200, restored.text
    assert restored.json()["sourceDestinationId"] == replica["id"]
    new_volume = restored.json()["restored"][0]["volume"]
    assert new_volume == f"{volume}_restore{done['id']}"
    assert run_on_worker(env, new_volume, LIST_SCRIPT) == before
