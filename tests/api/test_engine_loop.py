"""The engine: the server health loop and the lease that lets one process run it."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from hostcraft.engine.lease import acquire_lease, release_lease
from hostcraft.engine.loops import Engine
from hostcraft.runtime import Runtime
from tests.conftest import LOCAL_ENGINE, Api, create_region

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TTL = dt.timedelta(seconds=30)


def test_lease_is_held_by_one_holder_until_it_expires(runtime: Runtime) -> None:
    with runtime.store.session() as session:
        assert acquire_lease(session, holder="a", ttl=TTL, now=T0)
    with runtime.store.session() as session:
        assert not acquire_lease(session, holder="b", ttl=TTL, now=T0 + dt.timedelta(seconds=10))
    with runtime.store.session() as session:
        assert acquire_lease(session, holder="a", ttl=TTL, now=T0 + dt.timedelta(seconds=20))
    with runtime.store.session() as session:
        assert not acquire_lease(session, holder="b", ttl=TTL, now=T0 + dt.timedelta(seconds=45))
    with runtime.store.session() as session:
        assert acquire_lease(session, holder="b", ttl=TTL, now=T0 + dt.timedelta(seconds=51))


def test_released_lease_goes_to_next_holder(runtime: Runtime) -> None:
    with runtime.store.session() as session:
        assert acquire_lease(session, holder="a", ttl=TTL, now=T0)
    with runtime.store.session() as session:
        release_lease(session, holder="a")
    with runtime.store.session() as session:
        assert acquire_lease(session, holder="b", ttl=TTL, now=T0 + dt.timedelta(seconds=1))


@pytest.mark.docker
def test_health_loop_records_history_for_every_server(api: Api, docker_engine: object) -> None:
    region = create_region(api)
    local = api.post(
        "/api/servers", {"name": "local", "endpoint": LOCAL_ENGINE, "regionId": region["id"]}
    ).json()
    ghost = api.post(
        "/api/servers",
        {
            "name": "ghost",
            "endpoint": "unix:///run/hostcraft-none.sock",
            "regionId": region["id"],
            "skipValidation": True,
        },
    ).json()
    api.runtime.settings.server_health_interval_seconds = 0.5
    engine = Engine(api.runtime)
    engine.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            history = api.get(f"/api/servers/{local['id']}/health", params={"history": 10}).json()["history"]
            if len(history) >= 3:
                break
            time.sleep(0.5)
    finally:
        engine.stop()
    assert len(history) >= 3
    assert {check["status"] for check in history} <= {"healthy", "degraded"}
    assert all(check["resources"]["measured"] for check in history)
    ghost_report = api.get(f"/api/servers/{ghost['id']}/health").json()
    assert ghost_report["status"] == "unreachable"


@pytest.mark.docker
def test_second_engine_waits_while_first_holds_lease(api: Api, docker_engine: object) -> None:
    region = create_region(api)
    server = api.post(
        "/api/servers", {"name": "local", "endpoint": LOCAL_ENGINE, "regionId": region["id"]}
    ).json()
    api.runtime.settings.server_health_interval_seconds = 0.5
    first, second = Engine(api.runtime), Engine(api.runtime)
    with api.runtime.store.session() as session:
        assert acquire_lease(session, holder=first.holder, ttl=dt.timedelta(seconds=60))
    second.start()
    try:
        time.sleep(2)
        report = api.get(f"/api/servers/{server['id']}/health").json()
        assert report["status"] == "unknown"
    finally:
        second.stop()


def test_health_history_is_pruned_to_the_limit(api: Api) -> None:
    from hostcraft.services.health import prune_history
    from hostcraft.store.models import ServerHealthCheck

    region = create_region(api)
    server = api.post(
        "/api/servers",
        {
            "name": "ghost",
            "endpoint": "unix:///run/hostcraft-none.sock",
            "regionId": region["id"],
            "skipValidation": True,
        },
    ).json()
    with api.runtime.store.session() as session:
        for index in range(15):
            session.add(
                ServerHealthCheck(
                    server_id=server["id"],
                    status="unreachable",
                    reasons=[],
                    reachable=False,
                    checked_at=T0 + dt.timedelta(seconds=index),
                )
            )
    with api.runtime.store.session() as session:
        assert prune_history(session, server["id"], keep=10) == 5
    history = api.get(f"/api/servers/{server['id']}/health", params={"history": 100}).json()["history"]
    assert len(history) == 10
    assert history[-1]["checkedAt"].startswith("2026-01-01T00:00:05")
