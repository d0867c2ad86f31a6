"""The engine raises and delivers cluster and server alerts while it holds the lease."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy import select

from hostcraft.engine.loops import Engine
from hostcraft.services.cluster_alerts import check_cluster_alerts
from hostcraft.store.models import Alert, ServerHealthCheck
from tests.alert_receivers import WebhookReceiver
from tests.conftest import LOCAL_ENGINE, Api, create_region


def _wait_for(condition: Callable[[], bool], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return condition()


def _ghost(api: Api, region_id: int) -> dict[str, object]:
    return dict(
        api.post(
            "/api/servers",
            {
                "name": "ghost",
                "endpoint": "unix:///run/hostcraft-none.sock",
                "regionId": region_id,
                "skipValidation": True,
            },
        ).json()
    )


@pytest.mark.docker
def test_engine_alerts_and_resolves_through_webhook(
    api: Api, docker_engine: object, webhook: WebhookReceiver
) -> None:
    region = create_region(api)
    local = api.post(
        "/api/servers", {"name": "local", "endpoint": LOCAL_ENGINE, "regionId": region["id"]}
    ).json()
    ghost = _ghost(api, int(region["id"]))  # type: ignore[call-overload]
    api.post("/api/alert-channels", {"name": "ops", "url": webhook.url()})
    settings = api.runtime.settings
    settings.server_health_interval_seconds = 0.5
    settings.alert_delivery_interval_seconds = 0.2
    # Any real disk has less than 99.9 % free: the local server must raise disk_space_low.
    settings.alert_disk_free_ratio = 0.999
    engine = Engine(api.runtime)
    engine.start()
    try:
        assert _wait_for(
            lambda: (
                {"[CRITICAL] Node ghost is unreachable", "[WARNING] Disk space low on local"}
                <= set(webhook.titles())
            )
        )
        settings.alert_disk_free_ratio = 0.000001
        assert _wait_for(lambda: "[RESOLVED] Disk space low on local" in webhook.titles())
    finally:
        engine.stop()

    titles = webhook.titles()
    assert titles.count("[CRITICAL] Node ghost is unreachable") == 1
    assert titles.count("[WARNING] Disk space low on local") == 1
    assert titles.count("[RESOLVED] Disk space low on local") == 1
    alerts = api.get("/api/alerts", params={"trigger": "node_unreachable"}).json()
    assert [(alert["serverId"], alert["status"]) for alert in alerts] == [(ghost["id"], "open")]
    assert alerts[0]["occurrences"] >= 1
    assert local["id"] != ghost["id"]


def test_failing_step_does_not_stop_the_tick(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    region = create_region(api)
    ghost = _ghost(api, int(region["id"]))  # type: ignore[call-overload]
    with api.runtime.store.session() as session:
        for _ in range(2):
            session.add(
                ServerHealthCheck(
                    server_id=ghost["id"], status="unreachable", reasons=[], reachable=False, error="gone"
                )
            )
    engine = Engine(api.runtime)

    def broken() -> None:
        raise RuntimeError("health check bug")

    monkeypatch.setattr(engine, "check_all_servers", broken)
    engine.tick()

    with api.runtime.store.session() as session:
        causes = list(session.scalars(select(Alert.cause)))
    assert causes == [f"server:{ghost['id']}:unreachable"]


def test_cluster_alert_check_without_swarm_raises_nothing(api: Api) -> None:
    region = create_region(api)
    _ghost(api, int(region["id"]))  # type: ignore[call-overload]

    check_cluster_alerts(api.runtime)

    assert api.get("/api/alerts").json() == []
