"""Two lab regions for the DR tests: each a swarm of 1 manager + 1 worker with its own registry
and its own S3 server on its bridge. The control plane (the test process) sits outside both.

The tests kill and restart region A's nodes, and the ``env`` fixture of the test module starts
them again before and after each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.alert_receivers import WebhookReceiver, serve_webhook
from tests.conftest import Api, make_runtime
from tests.lab_fixtures import node_client, wait_for
from tests.s3_server import S3Server, start_s3_server

from hostcraft.backup.image import build_restic_image
from hostcraft.runtime import Runtime

LABS = {"a": ("hra", "10.77.210.0/24"), "b": ("hrb", "10.77.211.0/24")}
SHARED_S3_KEY = ("hostcraft-dr-test", "hostcraft-dr-test-secret")


@dataclass
class Region:
    """One lab region as the tests see it: its lab, API record, servers and storage."""

    key: str
    lab: Any
    record: dict[str, Any]
    servers: dict[str, dict[str, Any]]
    s3: S3Server
    destination: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.record["code"])

    @property
    def worker(self) -> Any:
        return next(node for node in self.lab.nodes if node.role == "worker")

    def url(self, port: int, path: str = "/") -> str:
        return f"http://{self.worker.address}:{port}{path}"


@dataclass
class TwoRegions:
    api: Api
    runtime: Runtime
    a: Region
    b: Region
    busybox: str
    receiver: WebhookReceiver

    def kill_region(self, region: Region) -> None:
        from hostcraft.lab import kill_node

        for node in region.lab.nodes:
            kill_node(region.lab, node.name)

    def start_region(self, region: Region) -> None:
        from hostcraft.lab import node_running, start_node

        for node in region.lab.nodes:
            if not node_running(region.lab, node.name):
                start_node(region.lab, node.name)
        wait_for(lambda: _has_quorum(region), timeout=90, what=f"quorum in {region.code}")


def _has_quorum(region: Region) -> bool:
    client = node_client(region.lab.nodes[0], timeout=5)
    try:
        nodes = client.api.nodes()
        return all(node["Status"]["State"] == "ready" for node in nodes)
    except Exception:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoRegions]:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root: run them with scripts/test as root")
    from hostcraft.lab import build_images, lab_down, lab_up

    labs = {}
    for key, (name, subnet) in LABS.items():
        lab_down(name)
        labs[key] = lab_up(name, managers=1, workers=1, subnet=subnet, swarm=False)
    images = build_images(labs["a"])
    backup_image = f"{labs['a'].registry}/hostcraft/restic:0.14"
    builder = node_client(labs["a"].nodes[0], timeout=300)
    build_restic_image(builder, backup_image)
    for line in builder.images.push(backup_image.rsplit(":", 1)[0], tag="0.14", stream=True, decode=True):
        assert "error" not in line, line
    builder.close()
    # restic 0.14 copies between two S3 repositories only when both take the same key.
    storage = {
        key: start_s3_server(lab.bridge_address, shared_key=SHARED_S3_KEY) for key, lab in labs.items()
    }
    tmp = Path(tmp_path_factory.mktemp("dr"))
    with ExitStack() as cleanup:
        for server in storage.values():
            cleanup.callback(server.stop)
        if not os.environ.get("HOSTCRAFT_KEEP_LAB"):
            for name, _ in LABS.values():
                cleanup.callback(lab_down, name)
        receiver = cleanup.enter_context(serve_webhook())
        for runtime in make_runtime(
            "sqlite", tmp, backup_image=backup_image, dr_standby_interval_seconds=3600
        ):
            api = Api(runtime)
            b = _form_region(api, "b", labs["b"], storage["b"], priority=2, replicate_to=None)
            a = _form_region(api, "a", labs["a"], storage["a"], priority=1, replicate_to=b.destination["id"])
            yield TwoRegions(api, runtime, a, b, images["busybox"], receiver)
            api.client.close()


def _form_region(
    api: Api, key: str, lab: Any, s3: S3Server, *, priority: int, replicate_to: int | None
) -> Region:
    record = api.post(
        "/api/regions",
        {
            "name": f"Lab {key.upper()}",
            "code": f"lab-{key}",
            "priority": priority,
            "imageRegistry": lab.registry,
        },
    )
    assert record.status_code == 201, record.text
    region = record.json()
    servers = {}
    for node in lab.nodes:
        response = api.post(
            "/api/servers", {"name": node.name, "endpoint": node.endpoint, "regionId": region["id"]}
        )
        assert response.status_code == 201, response.text
        servers[node.role] = response.json()
    init = api.post(
        f"/api/servers/{servers['manager']['id']}/swarm/init",
        {"advertiseAddress": lab.nodes[0].address, "dispatcherHeartbeatSeconds": 1},
    )
    assert init.status_code == 200, init.text
    joined = api.post(f"/api/servers/{servers['worker']['id']}/swarm/join", {"asManager": False})
    assert joined.status_code == 200, joined.text
    access, secret = s3.keys["admin"]
    body: dict[str, Any] = {
        "name": f"store-{key}",
        "kind": "s3",
        "endpoint": s3.url,
        "bucket": s3.create_bucket(),
        "accessKey": access,
        "secretKey": secret,
        "regionId": region["id"],
    }
    if replicate_to is not None:
        body["replicateTo"] = [replicate_to]
    destination = api.post("/api/backup-destinations", body)
    assert destination.status_code == 201, destination.text
    return Region(key, lab, region, servers, s3, destination.json())


def web_app(env: TwoRegions, name: str, port: int, **fields: Any) -> dict[str, Any]:
    """Create and deploy in region A a web server serving its volume, with a DR policy to B."""
    body = {
        "name": name,
        "project": "dr",
        "region": env.a.code,
        "image": env.busybox,
        "command": ["httpd", "-f", "-p", "80", "-h", "/data"],
        "volumes": [{"name": f"{name}-data", "target": "/data"}],
        "ports": [{"target": 80, "published": port, "mode": "host"}],
        "placement": {"constraints": ["node.role==worker"]},
        "healthCheckUrl": env.a.url(port, "/index.html"),
        "backupDestination": "store-a",
        "backupReplicateTo": ["store-b"],
        "dr": {
            "regions": [env.b.code],
            "healthCheckUrls": {env.b.code: env.b.url(port, "/index.html")},
            "trafficSwitch": {"type": "webhook", "url": env.receiver.url("dr").replace("json://", "http://")},
            **fields.pop("dr", {}),
        },
        **fields,
    }
    created = env.api.post("/api/applications", body)
    assert created.status_code == 201, created.text
    app = created.json()
    deployed = env.api.post(f"/api/applications/{app['id']}/deploy?wait=true")
    assert deployed.status_code in (200, 202), deployed.text
    assert deployed.json()["status"] == "succeeded", deployed.json()
    return dict(app)


def write_page(region: Region, busybox: str, volume: str, text: str) -> None:
    """Write index.html into the app's volume on the region's worker."""
    client = node_client(region.worker)
    try:
        # After a failover the worker has the image only under the digest it was deployed with.
        local = [
            image.id
            for image in client.images.list()
            if any("busybox" in tag for tag in image.attrs["RepoDigests"] + image.tags)
        ]
        client.containers.run(
            local[0] if local else busybox,
            ["sh", "-c", f"echo '{text}' > /data/index.html"],
            volumes={volume: {"bind": "/data", "mode": "rw"}},
            remove=True,
        )
    finally:
        client.close()


def backup_now(env: TwoRegions, app_id: int) -> dict[str, Any]:
    response = env.api.post(f"/api/applications/{app_id}/backups?wait=true", {"type": "volume"})
    assert response.status_code in (200, 202), response.text
    done = env.api.get(f"/api/backups/{response.json()['id']}").json()
    assert done["status"] == "succeeded", done
    assert [replica["status"] for replica in done["replicas"]] == ["succeeded"], [
        r.get("error") for r in done["replicas"]
    ]
    return dict(done)


def service_replicas(region: Region, name: str) -> tuple[int | None, int]:
    """Return the service's desired replicas (None when absent) and its running tasks in the region."""
    client = node_client(region.lab.nodes[0], timeout=10)
    try:
        services = [item for item in client.api.services() if item["Spec"]["Name"] == name]
        if not services:
            return None, 0
        service = services[0]
        desired = service["Spec"]["Mode"]["Replicated"]["Replicas"]
        running = [
            task
            for task in client.api.tasks(filters={"service": service["ID"]})
            if task["Status"]["State"] == "running"
        ]
        return int(desired), len(running)
    finally:
        client.close()
