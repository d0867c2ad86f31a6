"""Measure region failover: RTO cold and warm with a 100 MB volume, RTO of a PostgreSQL app, RPO.

The script brings up two lab regions, ``hbda`` (lab-a, 10.77.121.0/24) and ``hbdb`` (lab-b,
10.77.122.0/24), each 1 manager + 1 worker with its own registry and its own S3 server (moto)
on its bridge. HostCraft runs in this process: API on loopback and the engine loops (probes,
backup schedules, the DR loop that copies images to DR regions and seeds warm standbys). Backups
go to store-a in lab-a and are copied to store-b in lab-b.

Apps in lab-a, each pinned by its node-local volume to lab-a's worker:

- ``cold``: the lab's web app with a 100 MB volume (random data), DR mode cold;
- ``warm``: the same, DR mode warm (lab-b keeps its volume seeded and a 0-replica service);
- ``pg``: PostgreSQL 15 with a data volume and a table of ``--pg-rows`` rows, DR mode cold;
- ``rpo``: the web app with a full backup every minute while a writer stores the time every 0.5 s.

Measured, per repetition: a forced failover lab-a → lab-b (``POST /api/applications/{id}/failover``
with ``force``, since lab-a is healthy), whose run records RTO = run start → the app's probe URL
in lab-b responds. The app is then moved back the same way (timed too, reported apart). Before
each move the script waits until the copy fenced by the previous move has stopped. Next to
it, the bare tools do the same work in lab-b by hand: ``docker run`` of restic restoring the
same snapshot from store-b into a new volume, ``docker service create`` on it, and polling until
the app responds (PostgreSQL: ``docker service create``, wait for the server, then
``restic dump | pg_restore`` from this machine). For warm, the bare path pre-restores the volume
and creates the service at 0 replicas beforehand, and times scaling it to 1 until it responds.

Last, the RPO run: after the ``rpo`` app's scheduled backups have been copied to lab-b for a
few minutes, lab-a is lost (every node killed, its registry and S3 server stopped) at a random
moment of a backup cycle, ``rpo`` fails over without force, and the value it serves in lab-b
gives the data time. RPO achieved = time of the loss minus time of the newest write restored. From
the run's backup and copy timestamps, the script also computes the RPO a loss at every second
of the run would have had.

Needs root on Linux with the lab's programs, restic and moto installed:

    .venv/bin/python bench/dr.py --repetitions 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import httpx
import psycopg
import uvicorn

import hostcraft
from hostcraft.api.app import create_app
from hostcraft.config import Settings
from hostcraft.lab import (
    Lab,
    build_images,
    lab_down,
    lab_up,
    leftovers,
    node_client,
    push_backup_image,
    push_database_images,
    region_outage,
    s3_endpoint,
    start_s3_server,
)
from hostcraft.runtime import Runtime
from hostcraft.services.tokens import create_token

logger = logging.getLogger("bench.dr")

LABS = {"lab-a": ("hbda", "10.77.121.0/24"), "lab-b": ("hbdb", "10.77.122.0/24")}
VOLUME_MEGABYTES = 100
S3_BUCKET = "backups"
S3_KEYS = {"accessKey": "bench", "secretKey": "bench-secret-key"}
PG_PASSWORD = "bench-Secret-4711"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
API_TIMEOUT_SECONDS = 900.0
RTO_OBJECTIVE_SECONDS = 300
RPO_OBJECTIVE_SECONDS = 120
# The architecture document's recovery time objectives, shown next to the results.
OBJECTIVES = {"automatic": 60, "manual": 300, "region": 1800}
STOPPED_TASK_STATES = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}
PORTS = {"cold": 8081, "warm": 8082, "rpo": 8084, "pg": 5432, "bare": 8090, "bare-pg": 5433}
FILL_SCRIPT = (
    f"head -c {VOLUME_MEGABYTES * 1024 * 1024} /dev/urandom > /data/blob.bin && echo seeded > /data/value"
)
CHECKSUM_SCRIPT = "md5sum /data/blob.bin && stat -c %s /data/blob.bin"


class BenchError(Exception):
    pass


# The control plane and its API


class Api:
    """An admin client of the HostCraft API running in this process."""

    def __init__(self, base_url: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=API_TIMEOUT_SECONDS,
            trust_env=False,
        )

    def request(self, method: str, path: str, body: Any = None, *, expected: tuple[int, ...] = (200,)) -> Any:
        response = self.client.request(method, path, json=body)
        if response.status_code not in expected:
            raise BenchError(f"{method} {path} returned {response.status_code}: {response.text[:1500]}")
        return response.json()

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None, *, expected: tuple[int, ...] = (200, 201, 202)) -> Any:
        return self.request("POST", path, body, expected=expected)


@contextmanager
def control_plane(work: Path, backup_image: str) -> Iterator[Api]:
    """Run HostCraft (API and engine) in this process on a free loopback port; yield an admin client."""
    settings = Settings(
        data_dir=work / "hostcraft",
        backup_image=backup_image,
        server_health_interval_seconds=10,
        dr_standby_interval_seconds=10,
        backup_restore_test_interval_hours=0,
    )
    runtime = Runtime.create(settings)
    with runtime.store.session() as session:
        _, token = create_token(session, name="bench-admin", role="admin")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime, run_engine=True), log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="api", daemon=True)
    thread.start()
    api: Api | None = None
    try:
        wait_until(lambda: server.started, timeout=60, what="HostCraft's API to start")
        api = Api(f"http://127.0.0.1:{port}", token)
        yield api
    finally:
        if api is not None:
            api.client.close()
        server.should_exit = True
        thread.join(timeout=60)
        listener.close()
        runtime.close()


def wait_until(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except (httpx.HTTPError, psycopg.Error, docker.errors.APIError, OSError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# Regions


@dataclass
class Region:
    code: str
    lab: Lab
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def worker(self) -> Any:
        return next(node for node in self.lab.nodes if node.role == "worker")

    def client(self, timeout: int = 600) -> docker.DockerClient:
        return node_client(self.worker, timeout=timeout)

    def url(self, port: int, path: str = "/cgi-bin/health") -> str:
        return f"http://{self.worker.address}:{port}{path}"


def bring_up_regions() -> dict[str, Region]:
    regions = {}
    for code, (name, subnet) in LABS.items():
        lab_down(name)
        logger.info("bringing up %s (lab %s on %s)", code, name, subnet)
        lab = lab_up(name, managers=1, workers=1, subnet=subnet, swarm=False)
        start_s3_server(lab)
        regions[code] = Region(code, lab)
    source = regions["lab-a"].lab
    build_images(source)
    push_database_images(source, engines=("postgresql",))
    push_backup_image(source)
    return regions


def register(api: Api, regions: dict[str, Region]) -> None:
    """Create each region with its registry, register its nodes and form its swarm through the API."""
    for priority, region in enumerate(regions.values(), start=1):
        region.record = api.post(
            "/api/regions",
            {
                "name": f"Lab {region.lab.name}",
                "code": region.code,
                "priority": priority,
                "isPrimary": priority == 1,
                "imageRegistry": region.lab.registry,
            },
        )
        servers = {}
        for node in region.lab.nodes:
            servers[node.role] = api.post(
                "/api/servers",
                {"name": node.name, "endpoint": node.endpoint, "regionId": region.record["id"]},
            )
        manager = region.lab.nodes[0]
        api.post(
            f"/api/servers/{servers['manager']['id']}/swarm/init",
            {"advertiseAddress": manager.address, "dispatcherHeartbeatSeconds": 1},
        )
        api.post(f"/api/servers/{servers['worker']['id']}/swarm/join", {"asManager": False})


def add_destinations(api: Api, regions: dict[str, Region]) -> dict[str, dict[str, Any]]:
    stores: dict[str, dict[str, Any]] = {}
    for code, name, replicate_to in (("lab-b", "store-b", []), ("lab-a", "store-a", ["store-b"])):
        region = regions[code]
        stores[name] = api.post(
            "/api/backup-destinations",
            {
                "name": name,
                "kind": "s3",
                "endpoint": s3_endpoint(region.lab),
                "bucket": S3_BUCKET,
                **S3_KEYS,
                "regionId": region.record["id"],
                "replicateTo": [stores[item]["id"] for item in replicate_to],
            },
        )
        # The test creates the restic repository once, before the apps' first backups.
        tested = api.post(f"/api/backup-destinations/{stores[name]['id']}/test")
        if not tested["ok"]:
            raise BenchError(f"destination {name} failed its test: {tested}")
    return stores


# Apps


def app_document(name: str, image: str, regions: dict[str, Region], **fields: Any) -> dict[str, Any]:
    """Return the web app's document; each app is its own project, so volume names never collide."""
    port = PORTS[name]
    healthy = {code: region.url(port) for code, region in regions.items()}
    dr = {
        "regions": ["lab-b"],
        "mode": "warm" if name == "warm" else "cold",
        "rtoSeconds": RTO_OBJECTIVE_SECONDS,
        "rpoSeconds": RPO_OBJECTIVE_SECONDS,
        "healthCheckUrls": {"lab-b": healthy["lab-b"]},
    }
    return {
        "name": name,
        "project": name,
        "region": "lab-a",
        "image": image,
        "replicas": 1,
        "volumes": [{"name": "data", "target": "/data"}],
        "ports": [{"target": 80, "published": port, "mode": "host"}],
        "healthCheckUrl": healthy["lab-a"],
        "healthCheckIntervalSeconds": 2,
        "healthCheckTimeoutSeconds": 1,
        "backupDestination": "store-a",
        "backupReplicateTo": ["store-b"],
        "dr": dr,
        **fields,
    }


def pg_document(image: str, regions: dict[str, Region]) -> dict[str, Any]:
    addresses = {code: f"tcp://{region.worker.address}:{PORTS['pg']}" for code, region in regions.items()}
    return {
        "name": "pg",
        "project": "pg",
        "region": "lab-a",
        "image": image,
        "replicas": 1,
        "env": {"POSTGRES_PASSWORD": PG_PASSWORD, "POSTGRES_DB": "shop"},
        "volumes": [{"name": "pgdata", "target": "/var/lib/postgresql/data"}],
        "ports": [{"target": 5432, "published": PORTS["pg"], "mode": "host"}],
        "healthCheckUrl": addresses["lab-a"],
        "healthCheckIntervalSeconds": 2,
        "healthCheckTimeoutSeconds": 1,
        "backupDatabases": [
            {"name": "main", "engine": "postgresql", "database": "shop", "passwordEnv": "POSTGRES_PASSWORD"}
        ],
        "backupDestination": "store-a",
        "backupReplicateTo": ["store-b"],
        "dr": {
            "regions": ["lab-b"],
            "mode": "cold",
            "rtoSeconds": RTO_OBJECTIVE_SECONDS,
            "rpoSeconds": RPO_OBJECTIVE_SECONDS,
            "healthCheckUrls": {"lab-b": addresses["lab-b"]},
        },
    }


def deploy(api: Api, document: dict[str, Any]) -> dict[str, Any]:
    app = api.post("/api/applications", document)
    deployment = api.post(f"/api/applications/{app['id']}/deploy?wait=true")
    if deployment["status"] != "succeeded":
        raise BenchError(f"deploying {document['name']} failed: {deployment.get('message')}")
    return dict(api.get(f"/api/applications/{app['id']}"))


def fill_volume(region: Region, api: Api, app: dict[str, Any], busybox: str) -> str:
    """Write the 100 MB of random data into the app's volume; return the file's checksum line."""
    volume = api.get(f"/api/applications/{app['id']}/volumes")[0]["swarmName"]
    return run_in_volume(region, busybox, volume, FILL_SCRIPT + " && " + CHECKSUM_SCRIPT)


def run_in_volume(region: Region, image: str, volume: str, script: str) -> str:
    client = region.client()
    try:
        output = client.containers.run(
            image, ["sh", "-c", script], volumes={volume: {"bind": "/data", "mode": "rw"}}, remove=True
        )
    finally:
        client.close()
    return bytes(output).decode().strip()


def verify_volume(region: Region, api: Api, app: dict[str, Any], image: str, expected: str) -> None:
    """Check that the app's volume in ``region`` contains the 100 MB file as written in lab-a."""
    volume = api.get(f"/api/applications/{app['id']}/volumes")[0]["swarmName"]
    found = run_in_volume(region, image, volume, CHECKSUM_SCRIPT)
    if found != expected:
        raise BenchError(f"invalid data in {app['name']} in {region.code}: {found!r}, expected {expected!r}")


def pg_connect(address: str, port: int) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=address, port=port, user="postgres", password=PG_PASSWORD, dbname="shop", connect_timeout=2
    )


def pg_accepts(address: str, port: int) -> bool:
    with pg_connect(address, port) as connection:
        connection.execute("SELECT 1")
    return True


def fill_database(region: Region, rows: int) -> None:
    wait_until(
        lambda: pg_accepts(region.worker.address, PORTS["pg"]), timeout=180, what="PostgreSQL in lab-a"
    )
    with pg_connect(region.worker.address, PORTS["pg"]) as connection:
        connection.execute("CREATE TABLE items (id int PRIMARY KEY, note text)")
        connection.execute(
            "INSERT INTO items SELECT n, md5(n::text) || md5((n * 7)::text) FROM generate_series(1, %s) AS n",
            (rows,),
        )


def row_count(address: str, port: int) -> int:
    with pg_connect(address, port) as connection:
        row = connection.execute("SELECT count(*) FROM items").fetchone()
    return int(row[0]) if row else 0


def back_up(api: Api, app: dict[str, Any]) -> dict[str, Any]:
    """Take a full backup and wait until its copy to store-b is made; return the backup."""
    backup = api.post(f"/api/applications/{app['id']}/backups?wait=true", {"type": "full"})

    def copied() -> dict[str, Any] | None:
        current = api.get(f"/api/backups/{backup['id']}")
        replicas = current.get("replicas") or []
        # A failed copy is retried by the engine, so only a failed backup ends the run.
        if current["status"] == "failed":
            raise BenchError(f"backup {backup['id']} of {app['name']} failed: {current['message']}")
        done = (
            current["status"] == "succeeded"
            and replicas
            and all(r["status"] == "succeeded" for r in replicas)
        )
        return dict(current) if done else None

    return dict(wait_until(copied, timeout=600, what=f"backup {backup['id']} copied to store-b"))


def wait_standby(api: Api, app: dict[str, Any], backup_id: int) -> None:
    """Wait until the DR loop has a ready standby in lab-b seeded with ``backup_id``."""

    def ready() -> bool:
        report = api.get("/api/dr/report")
        entry = next(item for item in report["applications"] if item["applicationId"] == app["id"])
        return any(
            standby["region"] == "lab-b"
            and standby["status"] == "ready"
            and standby["seededBackupId"] == backup_id
            for standby in entry["standbys"]
        )

    wait_until(ready, timeout=600, what=f"a warm standby of {app['name']} in lab-b", interval=2)


def wait_images(api: Api, app: dict[str, Any]) -> None:
    """Wait until the DR loop has copied the app's images into lab-b's registry."""

    def ready() -> bool:
        report = api.get("/api/dr/report")
        entry = next(item for item in report["applications"] if item["applicationId"] == app["id"])
        return any(item["region"] == "lab-b" and item["status"] == "ready" for item in entry["standbys"])

    wait_until(ready, timeout=600, what=f"the images of {app['name']} in lab-b", interval=2)


# Failover through HostCraft


def wait_copy_stopped(region: Region, app: dict[str, Any]) -> None:
    """Wait until no task of the app's fenced copy in ``region`` runs any more.

    Back-to-back failovers would otherwise time the old copy's stop in the next restore step,
    which a real failover, long after the app left that region, does not wait for.
    """
    name = f"{app['project']}_{app['name']}"
    client = node_client(region.lab.nodes[0])
    try:

        def stopped() -> bool:
            tasks = client.api.tasks(filters={"service": name})
            return all(task["Status"]["State"] in STOPPED_TASK_STATES for task in tasks)

        wait_until(stopped, timeout=120, what=f"the fenced copy of {app['name']} in {region.code} to stop")
    finally:
        client.close()


def failover(api: Api, app: dict[str, Any], target: str, *, force: bool) -> dict[str, Any]:
    started = time.monotonic()
    run = api.post(
        f"/api/applications/{app['id']}/failover?wait=true",
        {"targetRegionId": target, "force": force},
        expected=(200, 202),
    )
    wall = time.monotonic() - started
    if run["status"] != "succeeded":
        raise BenchError(f"failover of {app['name']} to {target} {run['status']}: {run['message']}")
    steps = {step["name"]: step.get("durationSeconds") for step in run["steps"]}
    messages = {step["name"]: step.get("message") for step in run["steps"]}
    logger.info(
        "%s → %s: RTO %.1f s, RPO %.1f s, steps %s",
        app["name"],
        target,
        run["rtoSeconds"],
        run["rpoSeconds"],
        steps,
    )
    return {
        "runId": run["id"],
        "rtoSeconds": run["rtoSeconds"],
        "rpoSeconds": run["rpoSeconds"],
        "requestSeconds": wall,
        "steps": steps,
        "messages": messages,
        "backupId": run["backupId"],
    }


# The same work with the bare tools, in lab-b


@dataclass
class BareContext:
    region: Region
    repository: str
    password: str
    restic_image: str

    def restic_environment(self) -> dict[str, str]:
        return {
            "RESTIC_REPOSITORY": self.repository,
            "RESTIC_PASSWORD": self.password,
            "AWS_ACCESS_KEY_ID": S3_KEYS["accessKey"],
            "AWS_SECRET_ACCESS_KEY": S3_KEYS["secretKey"],
        }


def replica_part(backup: dict[str, Any], part: str) -> dict[str, Any]:
    replica = next(item for item in backup["replicas"] if item["destination"] == "store-b")
    return dict(next(item for item in replica["snapshots"] if item["part"] == part))


def pinned_image(api: Api, app: dict[str, Any]) -> str:
    """Return the image digest reference of the app's newest succeeded deployment."""
    deployments = api.get(f"/api/applications/{app['id']}/deployments")
    return str(next(item for item in deployments if item["status"] == "succeeded")["imageDigestReference"])


def in_region(image: str, region: Region) -> str:
    """Return ``image`` with its registry part swapped for the region's registry."""
    return f"{region.lab.registry}/{image.split('/', 1)[1]}"


def bare_restore(context: BareContext, snapshot: str, volume: str) -> None:
    """Run restic in a container on lab-b's worker, restoring a volume snapshot into ``volume``."""
    client = context.region.client()
    try:
        client.containers.run(
            context.restic_image,
            ["restic", "--no-cache", "restore", snapshot, "--target", "/"],
            environment=context.restic_environment(),
            volumes={volume: {"bind": "/data", "mode": "rw"}},
            remove=True,
        )
    finally:
        client.close()


def bare_service(
    context: BareContext,
    name: str,
    image: str,
    volume: str,
    *,
    port: int,
    target: int,
    replicas: int,
    mount_target: str = "/data",
    env: list[str] | None = None,
) -> str:
    """Create a service on lab-b's worker with ``volume`` mounted and a host-mode port, as by hand."""
    client = node_client(context.region.lab.nodes[0])
    try:
        service = client.services.create(
            image,
            name=name,
            env=env or [],
            mounts=[docker.types.Mount(target=mount_target, source=volume, type="volume")],
            endpoint_spec=docker.types.EndpointSpec(ports={port: (target, "tcp", "host")}),
            constraints=[f"node.hostname=={context.region.worker.name}"],
            mode=docker.types.ServiceMode("replicated", replicas=replicas),
        )
        return str(service.id)
    finally:
        client.close()


def remove_bare(context: BareContext, service_id: str, volume: str) -> None:
    manager = node_client(context.region.lab.nodes[0])
    try:
        manager.api.remove_service(service_id)
    finally:
        manager.close()
    worker = context.region.client()
    try:
        wait_until(
            lambda: (
                not worker.containers.list(
                    all=True, filters={"label": f"com.docker.swarm.service.id={service_id}"}
                )
            ),
            timeout=60,
            what="the bare service's containers to be removed",
        )
        worker.volumes.get(volume).remove(force=True)
    finally:
        worker.close()


def responds(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def bare_cold(context: BareContext, snapshot: str, image: str, index: int) -> float:
    volume = f"bare_cold_{index}"
    started = time.monotonic()
    bare_restore(context, snapshot, volume)
    service = bare_service(
        context, f"bare-cold-{index}", image, volume, port=PORTS["bare"], target=80, replicas=1
    )
    wait_until(
        lambda: responds(context.region.url(PORTS["bare"])),
        timeout=300,
        what="the bare service",
        interval=0.2,
    )
    seconds = time.monotonic() - started
    remove_bare(context, service, volume)
    return seconds


def bare_warm(context: BareContext, snapshot: str, image: str, index: int) -> float:
    volume = f"bare_warm_{index}"
    bare_restore(context, snapshot, volume)
    service = bare_service(
        context, f"bare-warm-{index}", image, volume, port=PORTS["bare"], target=80, replicas=0
    )
    manager = node_client(context.region.lab.nodes[0])
    try:
        started = time.monotonic()
        manager.services.get(service).scale(1)
        wait_until(
            lambda: responds(context.region.url(PORTS["bare"])),
            timeout=300,
            what="the bare service",
            interval=0.2,
        )
        seconds = time.monotonic() - started
    finally:
        manager.close()
    remove_bare(context, service, volume)
    return seconds


def bare_pg(context: BareContext, snapshot: str, image: str, index: int, rows: int) -> float:
    volume = f"bare_pg_{index}"
    address = context.region.worker.address
    started = time.monotonic()
    service = bare_service(
        context,
        f"bare-pg-{index}",
        image,
        volume,
        port=PORTS["bare-pg"],
        target=5432,
        replicas=1,
        mount_target="/var/lib/postgresql/data",
        env=[f"POSTGRES_PASSWORD={PG_PASSWORD}", "POSTGRES_DB=shop"],
    )
    wait_until(lambda: pg_accepts(address, PORTS["bare-pg"]), timeout=300, what="the bare PostgreSQL")
    dump = subprocess.Popen(
        ["restic", "--no-cache", "dump", snapshot, "/main.pgdump"],
        env={"PATH": os.environ["PATH"], **context.restic_environment()},
        stdout=subprocess.PIPE,
    )
    restored = subprocess.run(
        [
            "pg_restore",
            "--no-owner",
            "-h",
            address,
            "-p",
            str(PORTS["bare-pg"]),
            "-U",
            "postgres",
            "-d",
            "shop",
        ],
        stdin=dump.stdout,
        env={"PATH": os.environ["PATH"], "PGPASSWORD": PG_PASSWORD},
        capture_output=True,
        check=False,
    )
    if dump.wait() != 0 or restored.returncode != 0:
        raise BenchError(f"bare PostgreSQL restore failed: {restored.stderr.decode()[-800:]}")
    seconds = time.monotonic() - started
    count = row_count(address, PORTS["bare-pg"])
    if count != rows:
        raise BenchError(f"bare PostgreSQL restore has {count} rows, expected {rows}")
    remove_bare(context, service, volume)
    return seconds


# RPO with one-minute backups


class Writer(threading.Thread):
    """Stores the current time in the app every 0.5 s and remembers each write that succeeded."""

    def __init__(self, url: str) -> None:
        super().__init__(name="writer", daemon=True)
        self.url = url
        self.written: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while not self.stop.wait(0.5):
                now = time.time()
                try:
                    if client.get(self.url, params={"value": f"{now:.3f}"}).status_code == 200:
                        self.written.append(now)
                except httpx.HTTPError:
                    continue


def stamp_seconds(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def rpo_over_run(backups: list[dict[str, Any]], start: float, end: float) -> dict[str, float] | None:
    """Return the RPO a loss at each second of [start, end) would have had, as statistics.

    The RPO at a second is that second minus the data time of the newest copy in store-b. A backup
    counts from the moment its copy to store-b finished, with the time it started reading as its
    data time, which is what a failover to lab-b restores.
    """
    copies = sorted(
        (stamp_seconds(replica["copiedAt"]), stamp_seconds(backup["startedAt"]))
        for backup in backups
        if backup["status"] == "succeeded"
        for replica in backup.get("replicas") or []
        if replica["status"] == "succeeded" and replica["copiedAt"]
    )
    samples = []
    for second in range(int(start), int(end)):
        available = [data_at for copied_at, data_at in copies if copied_at <= second]
        if available:
            samples.append(second - max(available))
    return describe(samples)


def measure_rpo(api: Api, regions: dict[str, Region], image: str, cycles: int) -> dict[str, Any]:
    region_a, region_b = regions["lab-a"], regions["lab-b"]
    app = deploy(api, app_document("rpo", image, regions, backupSchedule="* * * * *"))
    writer = Writer(region_a.url(PORTS["rpo"], "/cgi-bin/data"))
    writer.start()
    began = time.time()
    wait_images(api, app)

    def copied_backups() -> list[dict[str, Any]]:
        rows = api.get(f"/api/applications/{app['id']}/backups")
        return [
            row
            for row in rows
            if row["status"] == "succeeded"
            and any(
                r["status"] == "succeeded" for r in api.get(f"/api/backups/{row['id']}").get("replicas") or []
            )
        ]

    wait_until(
        lambda: len(copied_backups()) >= cycles,
        timeout=cycles * 60 + 240,
        what="scheduled backups",
        interval=5,
    )
    time.sleep(random.uniform(0, 60))
    lost_at = time.time()
    region_outage(region_a.lab)
    writer.stop.set()
    writer.join()
    logger.info("lab-a lost at %s", dt.datetime.fromtimestamp(lost_at, dt.UTC).isoformat())
    backups = [
        api.get(f"/api/backups/{row['id']}") for row in api.get(f"/api/applications/{app['id']}/backups")
    ]
    run = failover(api, app, "lab-b", force=False)
    served = httpx.get(region_b.url(PORTS["rpo"], "/cgi-bin/data"), timeout=5, trust_env=False).text.strip()
    restored_at = float(served)
    if restored_at not in {round(item, 3) for item in writer.written} and not any(
        abs(item - restored_at) < 0.001 for item in writer.written
    ):
        raise BenchError(f"lab-b serves {served!r}, which the writer never wrote")
    return {
        "lostAt": lost_at,
        "restoredWriteAt": restored_at,
        "rpoAchievedSeconds": lost_at - restored_at,
        "lastWriteBeforeLoss": max(item for item in writer.written if item <= lost_at),
        "writesLost": sum(1 for item in writer.written if restored_at < item <= lost_at),
        "failover": run,
        "rpoOverRun": rpo_over_run(backups, began + 60, lost_at),
        "backups": [
            {
                "id": b["id"],
                "startedAt": b["startedAt"],
                "finishedAt": b["finishedAt"],
                "replicas": b.get("replicas"),
            }
            for b in backups
        ],
    }


# The run


def describe(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def bench(work: Path, options: argparse.Namespace) -> dict[str, Any]:
    regions = bring_up_regions()
    region_a, region_b = regions["lab-a"], regions["lab-b"]
    images = region_a.lab.images()
    postgres = region_a.lab.database_images()["postgresql"]
    results: dict[str, Any] = {"hostcraft": {}, "hostcraftBack": {}, "bare": {}}
    with control_plane(work, region_a.lab.backup_image()) as api:
        register(api, regions)
        add_destinations(api, regions)
        apps = {
            name: deploy(api, app_document(name, images["webapp:v1"], regions)) for name in ("cold", "warm")
        }
        apps["pg"] = deploy(api, pg_document(postgres, regions))
        checksums = {
            name: fill_volume(region_a, api, apps[name], images["busybox"]) for name in ("cold", "warm")
        }
        fill_database(region_a, options.pg_rows)
        backups = {name: back_up(api, app) for name, app in apps.items()}
        results["backups"] = {
            name: {key: backup[key] for key in ("id", "bytesAdded", "totalBytes", "durationSeconds")}
            for name, backup in backups.items()
        }
        for app in apps.values():
            wait_images(api, app)
        wait_standby(api, apps["warm"], backups["warm"]["id"])

        for name in ("cold", "warm", "pg"):
            results["hostcraft"][name] = []
            results["hostcraftBack"][name] = []
            for index in range(options.repetitions):
                if name == "warm":
                    wait_standby(api, apps[name], backups[name]["id"])
                results["hostcraft"][name].append(failover(api, apps[name], "lab-b", force=True))
                if name == "pg":
                    count = row_count(region_b.worker.address, PORTS["pg"])
                    if count != options.pg_rows:
                        raise BenchError(
                            f"pg in lab-b has {count} rows after failover, expected {options.pg_rows}"
                        )
                else:
                    served = httpx.get(region_b.url(PORTS[name], "/cgi-bin/data"), timeout=5, trust_env=False)
                    if served.text.strip() != "seeded":
                        raise BenchError(f"{name} in lab-b serves {served.text!r}, expected the seeded value")
                    # The app's own image has busybox, and it is in lab-b's registry now.
                    image_b = in_region(pinned_image(api, apps[name]), region_b)
                    verify_volume(region_b, api, apps[name], image_b, checksums[name])
                wait_copy_stopped(region_a, apps[name])
                results["hostcraftBack"][name].append(failover(api, apps[name], "lab-a", force=True))
                wait_copy_stopped(region_b, apps[name])
                logger.info("%s: repetition %d of %d done", name, index + 1, options.repetitions)

        store_b = api.get("/api/backup-destinations")
        store_b_id = next(item["id"] for item in store_b if item["name"] == "store-b")
        context = BareContext(
            region=region_b,
            repository=f"s3:{s3_endpoint(region_b.lab)}/{S3_BUCKET}",
            password=api.post(f"/api/backup-destinations/{store_b_id}/export-key")["password"],
            restic_image=in_region(region_a.lab.backup_image(), region_b),
        )
        pinned = {name: in_region(pinned_image(api, app), region_b) for name, app in apps.items()}
        results["bare"] = {"cold": [], "warm": [], "pg": []}
        for index in range(options.repetitions):
            snapshot = replica_part(backups["cold"], "volume:data")["snapshotId"]
            results["bare"]["cold"].append(bare_cold(context, snapshot, pinned["cold"], index))
            snapshot = replica_part(backups["warm"], "volume:data")["snapshotId"]
            results["bare"]["warm"].append(bare_warm(context, snapshot, pinned["warm"], index))
            snapshot = replica_part(backups["pg"], "database:main")["snapshotId"]
            results["bare"]["pg"].append(bare_pg(context, snapshot, pinned["pg"], index, options.pg_rows))
            logger.info("bare tools: repetition %d of %d done", index + 1, options.repetitions)

        results["rpo"] = measure_rpo(api, regions, images["webapp:v1"], options.rpo_cycles)
    return results


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in ("cold", "warm", "pg"):
        hostcraft_rto = describe([run["rtoSeconds"] for run in results["hostcraft"][name]])
        bare = describe(results["bare"][name])
        summary[name] = {
            "hostcraftRto": hostcraft_rto,
            "hostcraftBackRto": describe([run["rtoSeconds"] for run in results["hostcraftBack"][name]]),
            "bare": bare,
            "ratioOfMedians": hostcraft_rto["median"] / bare["median"] if hostcraft_rto and bare else None,
            "steps": {
                step: describe([run["steps"].get(step) or 0.0 for run in results["hostcraft"][name]])
                for step in results["hostcraft"][name][0]["steps"]
            },
        }
    return summary


def format_table(summary: dict[str, Any], rpo: dict[str, Any]) -> str:
    def cell(stats: dict[str, float] | None) -> str:
        if stats is None:
            return "n/a"
        return f"{stats['median']:.1f} ({stats['min']:.1f} to {stats['max']:.1f})"

    labels = {
        "cold": "cold failover, 100 MB volume",
        "warm": "warm failover, 100 MB volume",
        "pg": "PostgreSQL app (cold)",
    }
    lines = [
        "| scenario | HostCraft RTO, s | bare tools, s | HostCraft / bare | objective (manual / automatic) |",
        "|---|---|---|---|---|",
    ]
    for name, label in labels.items():
        row = summary[name]
        ratio = f"{row['ratioOfMedians']:.2f}" if row["ratioOfMedians"] else "n/a"
        objective = f"< {OBJECTIVES['manual']} s / < {OBJECTIVES['automatic']} s"
        lines.append(
            f"| {label} | {cell(row['hostcraftRto'])} | {cell(row['bare'])} | {ratio} | {objective} |"
        )
    run = rpo["failover"]
    lines.append(
        f"| region lost, cold failover of a small app | {run['rtoSeconds']:.1f} | n/a | n/a | "
        f"< {OBJECTIVES['manual']} s |"
    )
    over = rpo["rpoOverRun"]
    lines += [
        "",
        f"RPO with one-minute backups: achieved {rpo['rpoAchievedSeconds']:.1f} s at the region loss "
        f"({rpo['writesLost']} writes lost); HostCraft's run recorded RPO {run['rpoSeconds']:.1f} s.",
        "For a loss at any second of the run: "
        + (
            f"median {over['median']:.0f} s, max {over['max']:.0f} s ({over['n']} seconds)" if over else "n/a"
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repetitions", type=int, default=3, help="failovers per scenario (default 3)")
    parser.add_argument(
        "--pg-rows", type=int, default=200_000, help="rows in the PostgreSQL app (default 200000)"
    )
    parser.add_argument(
        "--rpo-cycles", type=int, default=3, help="scheduled backups before the loss (default 3)"
    )
    parser.add_argument("--keep-labs", action="store_true", help="leave both labs running at the end")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # HostCraft's own info logs (every probe, backup and job) would bury the benchmark's progress.
    logging.getLogger("hostcraft").setLevel(logging.WARNING)
    if os.geteuid() != 0:
        print("bench/dr.py needs root (it runs two labs)", file=sys.stderr)
        return 2
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="hostcraft-bench-dr-"))
    try:
        results = bench(work, options)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not options.keep_labs:
            for name, _ in LABS.values():
                lab_down(name)
                remaining = leftovers(name)
                if remaining:
                    print(f"lab {name} left behind: {', '.join(remaining)}", file=sys.stderr)
    summary = summarize(results)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
        check=False,
    ).stdout.strip()
    report = {
        "summary": summary,
        "results": results,
        "options": vars(options),
        "objectives": OBJECTIVES,
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "hostcraft": {"version": hostcraft.__version__, "commit": commit},
        "durationSeconds": time.time() - started,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"dr-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(summary, results["rpo"]))
    print(f"\nraw results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
