"""Region failover on two real lab regions: manual, split-brain fence, failback, region-wide,
drills, a failover stopped at pre-flight, and automatic failover with the engine running.

Each test kills and restarts region A's nodes as it needs; region B stays up throughout.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.dr.conftest import TwoRegions, backup_now, service_replicas, web_app, write_page
from tests.lab_fixtures import node_client, wait_for

from hostcraft.store.models import Application, AppVolume, DrFence, DrRun, DrStandby

pytestmark = [pytest.mark.lab, pytest.mark.docker, pytest.mark.chaos]


def page(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=3, trust_env=False)
    except httpx.HTTPError:
        return None
    return response.text.strip() if response.status_code == 200 else None


def volume_of(env: TwoRegions, app_id: int) -> str:
    with env.runtime.store.session() as session:
        row = session.query(AppVolume).filter_by(application_id=app_id).one()
        return row.swarm_name


def run_of(env: TwoRegions, response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 202), response.text
    return dict(response.json())


@pytest.fixture
def env(regions: TwoRegions) -> Iterator[TwoRegions]:
    regions.start_region(regions.a)
    regions.receiver.requests.clear()
    yield regions
    # Each test starts from empty regions, so a region-wide failover moves only its own apps.
    regions.start_region(regions.a)
    for app in regions.api.get("/api/applications").json():
        response = regions.api.delete(f"/api/applications/{app['id']}")
        assert response.status_code in (200, 204), response.text


def test_failover_refused_while_region_is_healthy(env: TwoRegions) -> None:
    app = web_app(env, "calm", 8090)

    response = env.api.post(f"/api/applications/{app['id']}/failover", {})

    assert response.status_code == 409, response.text
    assert "has quorum" in response.json()["error"]["message"]
    assert response.json()["error"]["details"]["runId"] > 0
    runs = env.api.get(f"/api/dr/runs?applicationId={app['id']}").json()
    assert [run["status"] for run in runs] == ["refused"]
    assert env.api.get(f"/api/applications/{app['id']}").json()["region"] == env.a.code


def test_dry_run_changes_nothing(env: TwoRegions) -> None:
    app = web_app(env, "plan", 8091)
    write_page(env.a, env.busybox, volume_of(env, app["id"]), "planned")
    backup_now(env, app["id"])
    before = (_store_rows(env), _swarm_state(env))

    plan = env.api.post(f"/api/applications/{app['id']}/drills", {"mode": "dry-run"})

    assert plan.status_code == 200, plan.text
    body = plan.json()
    assert [step["name"] for step in body["steps"]] == [
        "preflight",
        "restore",
        "deploy",
        "switch-traffic",
        "fence",
    ]
    assert body["targetRegion"] == env.b.code
    assert body["estimatedRtoSeconds"] > 0
    assert 0 <= body["estimatedRpoSeconds"] < 600
    assert body["ready"] is True, body["problems"]
    assert (_store_rows(env), _swarm_state(env)) == before


def _store_rows(env: TwoRegions) -> dict[str, list[Any]]:
    from sqlalchemy import text

    tables = [
        "applications", "app_volumes", "deployments", "backups", "backup_restores", "backup_replicas",
        "dr_runs", "dr_fences", "dr_standbys", "events", "alerts", "regions", "servers",
    ]  # fmt: skip
    with env.runtime.store.session() as session:
        return {
            table: [
                tuple(map(str, row)) for row in session.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
            ]
            for table in tables
        }


def _swarm_state(env: TwoRegions) -> list[Any]:
    state = []
    for region in (env.a, env.b):
        for node in region.lab.nodes:
            client = node_client(node, timeout=10)
            try:
                state.append(sorted(volume.name for volume in client.volumes.list()))
                state.append(sorted(container.name for container in client.containers.list(all=True)))
                if node.role == "manager":
                    state.append(
                        sorted((s["Spec"]["Name"], s["Version"]["Index"]) for s in client.api.services())
                    )
            finally:
                client.close()
    return state


def test_live_drill_passes_and_cleans_up(env: TwoRegions) -> None:
    app = web_app(env, "rehearsed", 8092)
    write_page(env.a, env.busybox, volume_of(env, app["id"]), "rehearsed data")
    backup_now(env, app["id"])

    run = run_of(env, env.api.post(f"/api/applications/{app['id']}/drills?wait=true", {"mode": "live"}))

    assert run["status"] == "succeeded", run
    assert [step["name"] for step in run["steps"]] == ["preflight", "restore", "deploy", "verify", "teardown"]
    verify = next(step for step in run["steps"] if step["name"] == "verify")
    assert verify["details"]["checked"]["volume:rehearsed-data"]["compared"] == "checksum manifest"
    assert run["rtoSeconds"] > 0
    assert run["rpoSeconds"] >= 0
    names = [name for name, _ in _services(env.b)]
    assert not [name for name in names if "drill" in name]
    assert not [name for name in _volumes(env.b) if "drill" in name]
    assert [a["name"] for a in env.api.get("/api/applications").json() if "drill" in a["name"]] == []
    report = env.api.get("/api/dr/report").json()
    entry = next(item for item in report["applications"] if item["applicationId"] == app["id"])
    assert entry["lastDrill"]["runId"] == run["id"]
    assert entry["lastDrill"]["result"] == "pass"


def _services(region: Any) -> list[tuple[str, int]]:
    client = node_client(region.lab.nodes[0], timeout=10)
    try:
        return [(s["Spec"]["Name"], s["Version"]["Index"]) for s in client.api.services()]
    finally:
        client.close()


def _volumes(region: Any) -> list[str]:
    names = []
    for node in region.lab.nodes:
        client = node_client(node, timeout=10)
        try:
            names += [volume.name for volume in client.volumes.list()]
        finally:
            client.close()
    return names


def test_failover_fence_and_failback_keep_the_data(env: TwoRegions) -> None:
    app = web_app(env, "shop", 8093)
    volume = volume_of(env, app["id"])
    write_page(env.a, env.busybox, volume, "written in A")
    backup = backup_now(env, app["id"])
    assert page(env.a.url(8093, "/index.html")) == "written in A"
    env.kill_region(env.a)

    run = run_of(env, env.api.post(f"/api/applications/{app['id']}/failover?wait=true", {}))

    assert run["status"] == "succeeded", run
    assert [(step["name"], step["status"]) for step in run["steps"]] == [
        ("preflight", "succeeded"),
        ("restore", "succeeded"),
        ("deploy", "succeeded"),
        ("switch-traffic", "succeeded"),
        ("fence", "pending"),
    ]
    assert run["targetRegion"] == env.b.code
    assert run["backupId"] == backup["id"]
    assert 0 < run["rtoSeconds"] < 300
    assert run["rpoSeconds"] >= 0
    assert page(env.b.url(8093, "/index.html")) == "written in A"
    moved = env.api.get(f"/api/applications/{app['id']}").json()
    assert moved["region"] == env.b.code
    assert moved["healthCheckUrl"] == env.b.url(8093, "/index.html")
    events = [json.loads(item.body) for item in env.receiver.received()]
    assert [(e["event"], e["fromRegion"], e["toRegion"]) for e in events] == [("failover", "lab-a", "lab-b")]

    # Region A comes back: its old service restarts the app until the pending fence scales it to 0.
    env.start_region(env.a)
    from hostcraft.services.dr_engine import retry_fences

    fenced = retry_fences(env.runtime)

    assert len(fenced) == 1
    wait_for(lambda: service_replicas(env.a, "dr_shop") == (0, 0), timeout=60, what="no task of shop in A")
    assert page(env.b.url(8093, "/index.html")) == "written in A"

    # Data written in B goes home with the failback, which backs up in B first.
    write_page(env.b, env.busybox, volume, "written in B")
    back = run_of(env, env.api.post(f"/api/applications/{app['id']}/failback?wait=true", {}))

    assert back["status"] == "succeeded", back
    assert [step["name"] for step in back["steps"]][:2] == ["backup", "preflight"]
    assert back["targetRegion"] == env.a.code
    assert page(env.a.url(8093, "/index.html")) == "written in B"
    assert env.api.get(f"/api/applications/{app['id']}").json()["region"] == env.a.code
    wait_for(lambda: service_replicas(env.b, "dr_shop") == (0, 0), timeout=60, what="no task of shop in B")
    with env.runtime.store.session() as session:
        fences = {(f.region_id, f.status) for f in session.query(DrFence).filter_by(application_id=app["id"])}
    assert fences == {(env.b.record["id"], "fenced")}


def test_failover_stops_at_preflight_when_image_is_missing(env: TwoRegions) -> None:
    from hostcraft.lab.registry import start_registry, stop_registry

    app = web_app(env, "orphan", 8094, image=_push_only_to_a(env, "hostcraft/orphan:1"))
    write_page(env.a, env.busybox, volume_of(env, app["id"]), "orphan")
    backup_now(env, app["id"])
    stop_registry(env.a.lab)
    try:
        run = run_of(env, env.api.post(f"/api/applications/{app['id']}/failover?wait=true", {"force": True}))
    finally:
        start_registry(env.a.lab)

    assert run["status"] == "failed"
    assert [step["name"] for step in run["steps"]] == ["preflight"]
    missing = run["steps"][0]["details"]["missingImages"]
    wanted = f"{env.b.lab.registry}/hostcraft/orphan:1@sha256:"
    assert [image for image in missing if image.startswith(wanted)], missing
    assert "unreachable" in missing[next(image for image in missing if image.startswith(wanted))]
    assert "orphan" in run["message"]
    assert env.api.get(f"/api/applications/{app['id']}").json()["region"] == env.a.code
    assert service_replicas(env.b, "dr_orphan") == (None, 0)
    assert service_replicas(env.a, "dr_orphan") == (1, 1)


def _push_only_to_a(env: TwoRegions, repository_tag: str) -> str:
    reference = f"{env.a.lab.registry}/{repository_tag}"
    client = node_client(env.a.lab.nodes[0], timeout=120)
    try:
        client.images.get(env.busybox).tag(reference)
        for line in client.images.push(reference.rsplit(":", 1)[0], tag="1", stream=True, decode=True):
            assert "error" not in line, line
    finally:
        client.close()
    return reference


def test_region_failover_moves_three_apps_by_priority(env: TwoRegions) -> None:
    apps = [
        _stateless(env, name, priority) for name, priority in (("third", 30), ("first", 10), ("second", 20))
    ]

    parent = run_of(
        env,
        env.api.post(
            f"/api/regions/{env.a.record['id']}/failover?wait=true", {"force": True, "concurrency": 2}
        ),
    )

    assert parent["status"] == "succeeded", parent
    children = [env.api.get(f"/api/dr/runs/{child}").json() for child in parent["children"]]
    assert sorted(child["application"] for child in children) == ["dr/first", "dr/second", "dr/third"]
    assert all(child["status"] == "succeeded" for child in children), children
    assert [c["application"] for c in sorted(children, key=lambda c: c["id"])] == [
        "dr/first",
        "dr/second",
        "dr/third",
    ]
    for app in apps:
        assert env.api.get(f"/api/applications/{app['id']}").json()["region"] == env.b.code
        assert service_replicas(env.b, f"dr_{app['name']}") == (1, 1)
        name = f"dr_{app['name']}"
        wait_for(
            lambda name=name: service_replicas(env.a, name) == (0, 0), timeout=60, what=f"{name} fenced in A"
        )


def _stateless(env: TwoRegions, name: str, priority: int, **policy: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "project": "dr",
        "region": env.a.code,
        "image": env.busybox,
        "command": ["sleep", "100000"],
        "dr": {"regions": [env.b.code], "priority": priority, **policy},
    }
    created = env.api.post("/api/applications", body)
    assert created.status_code == 201, created.text
    deployed = env.api.post(f"/api/applications/{created.json()['id']}/deploy?wait=true")
    assert deployed.json()["status"] == "succeeded", deployed.json()
    return dict(created.json())


def test_automatic_failover_when_region_a_dies(env: TwoRegions) -> None:
    from hostcraft.engine.loops import Engine

    app = web_app(
        env,
        "auto",
        8095,
        healthCheckIntervalSeconds=2,
        healthCheckTimeoutSeconds=1,
        dr={"automatic": True, "gracePeriodSeconds": 5},
    )
    write_page(env.a, env.busybox, volume_of(env, app["id"]), "automatic")
    backup_now(env, app["id"])
    env.runtime.settings.dr_interval_seconds = 1.0
    env.runtime.settings.probe_refresh_seconds = 1.0
    env.runtime.settings.recovery_interval_seconds = 3600.0
    engine = Engine(env.runtime)
    engine.start()
    try:
        wait_for(lambda: _probed(env, app["id"]), timeout=60, what="the first probes of auto")
        killed_at = time.monotonic()
        env.kill_region(env.a)

        run = wait_for(
            lambda: _finished_automatic_run(env, app["id"]), timeout=240, what="automatic failover"
        )
        detected_after = time.monotonic() - killed_at
    finally:
        engine.stop()

    assert run.status == "succeeded", (run.message, run.steps)
    assert run.trigger == "automatic"
    assert detected_after > 5  # the grace period passed first
    assert env.api.get(f"/api/applications/{app['id']}").json()["region"] == env.b.code
    assert page(env.b.url(8095, "/index.html")) == "automatic"


def _probed(env: TwoRegions, app_id: int) -> bool:
    health = env.api.get(f"/api/applications/{app_id}/health").json()
    return health.get("status") == "up"


def _finished_automatic_run(env: TwoRegions, app_id: int) -> DrRun | None:
    with env.runtime.store.session() as session:
        run = (
            session.query(DrRun)
            .filter(
                DrRun.application_id == app_id, DrRun.trigger == "automatic", DrRun.finished_at.is_not(None)
            )
            .one_or_none()
        )
        if run is not None:
            session.expunge(run)
        return run


def test_isolated_control_plane_fails_nothing_over(env: TwoRegions) -> None:
    from hostcraft.services.dr_engine import DrWatch, automatic_failovers

    app = _stateless(env, "isolated", 50, automatic=True, gracePeriodSeconds=0)
    env.kill_region(env.a)
    env.kill_region(env.b)
    watch = DrWatch()
    try:
        started = automatic_failovers(env.runtime, watch, now=dt.datetime.now(dt.UTC))
    finally:
        env.start_region(env.b)

    assert started == []
    assert watch.region_down_since == {}
    with env.runtime.store.session() as session:
        assert session.query(DrRun).filter_by(application_id=app["id"]).count() == 0
        assert session.get(Application, app["id"]).region_id == env.a.record["id"]


def test_warm_standby_is_seeded_and_skips_the_restore(env: TwoRegions) -> None:
    from hostcraft.services.dr_engine import prepare_standbys

    app = web_app(env, "warmed", 8096, dr={"mode": "warm"})
    volume = volume_of(env, app["id"])
    write_page(env.a, env.busybox, volume, "kept warm")
    backup = backup_now(env, app["id"])

    prepare_standbys(env.runtime)

    with env.runtime.store.session() as session:
        standby = session.query(DrStandby).filter_by(application_id=app["id"]).one()
        assert (standby.status, standby.message) == ("ready", None)
        assert standby.seeded_backup_id == backup["id"]
    assert service_replicas(env.b, "dr_warmed") == (0, 0)
    assert _read_page(env, volume) == "kept warm"

    env.kill_region(env.a)
    run = run_of(env, env.api.post(f"/api/applications/{app['id']}/failover?wait=true", {}))

    assert run["status"] == "succeeded", run
    restore = next(step for step in run["steps"] if step["name"] == "restore")
    assert "already holds backup" in restore["message"]
    assert page(env.b.url(8096, "/index.html")) == "kept warm"


def _read_page(env: TwoRegions, volume: str) -> str:
    client = node_client(env.b.worker)
    try:
        # The seeding restore job left the backup image (restic and static busybox) on the worker.
        local = [
            image.id
            for image in client.images.list()
            if any("restic" in digest for digest in image.attrs["RepoDigests"])
        ]
        output = client.containers.run(
            local[0],
            ["/bin/cat", "/data/index.html"],
            entrypoint=[],
            volumes={volume: {"bind": "/data", "mode": "ro"}},
            remove=True,
        )
    finally:
        client.close()
    return bytes(output).decode().strip()


def test_scheduled_drill_runs_when_due(env: TwoRegions) -> None:
    from hostcraft.services.dr_engine import run_due_drills

    app = web_app(env, "drilled", 8097, dr={"drillSchedule": "0 4 * * *"})
    write_page(env.a, env.busybox, volume_of(env, app["id"]), "drilled")
    backup_now(env, app["id"])
    first = dt.datetime(2026, 12, 5, 3, 0, tzinfo=dt.UTC)

    assert run_due_drills(env.runtime, now=first) == []
    assert run_due_drills(env.runtime, now=first + dt.timedelta(minutes=30)) == []
    started = run_due_drills(env.runtime, now=first + dt.timedelta(hours=1, minutes=1))

    assert len(started) == 1
    run = wait_for(lambda: _finished(env, started[0]), timeout=240, what="the scheduled drill")
    assert (run["status"], run["trigger"], run["kind"]) == ("succeeded", "schedule", "drill"), run
    assert run_due_drills(env.runtime, now=first + dt.timedelta(hours=1, minutes=2)) == []


def _finished(env: TwoRegions, run_id: int) -> dict[str, Any] | None:
    run = env.api.get(f"/api/dr/runs/{run_id}").json()
    return dict(run) if run["status"] != "running" else None


# Serves /data like web_app, and on SIGTERM writes to its volume for a while before it exits, as
# PostgreSQL writes its shutdown checkpoint.
SLOW_STOP_SCRIPT = """
httpd -p 80 -h /data
trap 'sleep 4; echo stale > /data/index.html; exit 0' TERM
while true; do sleep 1; done
"""


def test_failover_waits_for_old_copy_to_stop(env: TwoRegions) -> None:
    app = web_app(env, "slowstop", 8098, command=["sh", "-c", SLOW_STOP_SCRIPT])
    volume = volume_of(env, app["id"])
    write_page(env.a, env.busybox, volume, "written in A")
    backup_now(env, app["id"])
    there = run_of(env, env.api.post(f"/api/applications/{app['id']}/failover?wait=true", {"force": True}))
    assert there["status"] == "succeeded", there
    home = run_of(
        env,
        env.api.post(
            f"/api/applications/{app['id']}/failover?wait=true", {"targetRegionId": env.a.code, "force": True}
        ),
    )
    assert home["status"] == "succeeded", home

    # The copy in B was just fenced and writes "stale" to its volume 4 s into its stop.
    again = run_of(env, env.api.post(f"/api/applications/{app['id']}/failover?wait=true", {"force": True}))

    assert again["status"] == "succeeded", again
    time.sleep(6)
    assert page(env.b.url(8098, "/index.html")) == "written in A"
    assert _read_page(env, volume) == "written in A"
