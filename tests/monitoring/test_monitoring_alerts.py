"""Probes end to end: an incident reaches a real webhook once, and maintenance windows count."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from hostcraft.engine.probes import ProbeEngine
from hostcraft.services.alert_delivery import deliver_pending
from hostcraft.services.recovery import run_recovery
from hostcraft.store.models import Alert, AppHealth, Incident, RecoveryAction, utcnow
from tests.alert_receivers import WebhookReceiver
from tests.conftest import Api
from tests.monitoring.test_probes import SwitchableServer, add_monitored_app, probe_once, target_of


@pytest.fixture
def server() -> SwitchableServer:
    target = SwitchableServer()
    yield target  # type: ignore[misc]
    target.close()


def test_incident_sends_one_alert_and_one_resolve(
    api: Api, server: SwitchableServer, webhook: WebhookReceiver
) -> None:
    assert api.post("/api/alert-channels", {"name": "ops", "url": webhook.url()}).status_code == 201
    app_id = add_monitored_app(
        api.runtime,
        "web",
        healthCheckUrl=server.url,
        maxConsecutiveFailures=2,
        healthProbe={"successesToResolve": 1},
    )
    engine = ProbeEngine(api.runtime, recovery=False)
    target = target_of(api.runtime, app_id)
    server.mode = "error"
    for _ in range(8):
        probe_once(api.runtime, engine, target)
        deliver_pending(api.runtime)
    server.mode = "ok"
    probe_once(api.runtime, engine, target)
    deliver_pending(api.runtime)
    titles = webhook.titles()
    assert len(titles) == 2
    assert "default/web is failing its health checks" in titles[0]
    assert "default/web" in titles[1]


def window(api: Api, app_id: int, start: dt.datetime, end: dt.datetime) -> None:
    response = api.post(
        "/api/maintenance-windows",
        {
            "applicationId": app_id,
            "startsAt": start.isoformat(),
            "endsAt": end.isoformat(),
            "timezone": "UTC",
        },
    )
    assert response.status_code == 201, response.text


def test_maintenance_suppresses_alert_and_recovery(
    api: Api, server: SwitchableServer, webhook: WebhookReceiver
) -> None:
    assert api.post("/api/alert-channels", {"name": "ops", "url": webhook.url()}).status_code == 201
    app_id = add_monitored_app(api.runtime, "web", healthCheckUrl=server.url, maxConsecutiveFailures=1)
    now = utcnow()
    window(api, app_id, now - dt.timedelta(minutes=5), now + dt.timedelta(hours=1))
    engine = ProbeEngine(api.runtime, recovery=False)
    server.mode = "error"
    probe_once(api.runtime, engine, target_of(api.runtime, app_id))
    deliver_pending(api.runtime)

    from hostcraft.services.monitoring import maintenance_intervals_of

    decisions = run_recovery(api.runtime, maintenance=maintenance_intervals_of)
    assert [decision.action for _, decision in decisions] == ["none"]
    assert "maintenance window" in decisions[0][1].reason
    with api.runtime.store.session() as session:
        assert list(session.scalars(select(RecoveryAction))) == []
        alert = session.scalars(select(Alert).where(Alert.trigger == "service_health_failure")).one()
        assert alert.status == "suppressed"
    assert webhook.titles() == []


def test_uptime_excludes_maintenance(api: Api) -> None:
    app_id = add_monitored_app(api.runtime, "web")
    now = utcnow()
    with api.runtime.store.session() as session:
        session.add(AppHealth(application_id=app_id, status="up", monitored_since=now - dt.timedelta(days=2)))
        # Two hours down; the first of them was announced maintenance.
        session.add(
            Incident(
                application_id=app_id,
                status="resolved",
                began_at=now - dt.timedelta(hours=5),
                ended_at=now - dt.timedelta(hours=3),
            )
        )
        session.commit()
    window(api, app_id, now - dt.timedelta(hours=5), now - dt.timedelta(hours=4))
    body = api.get(f"/api/applications/{app_id}/uptime?window=24h").json()
    assert body["maintenanceSeconds"] == pytest.approx(3600, abs=2)
    assert body["downtimeSeconds"] == pytest.approx(3600, abs=2)
    assert body["measuredSeconds"] == pytest.approx(23 * 3600, abs=2)


def test_suppressed_alert_sent_when_window_ends(
    api: Api, server: SwitchableServer, webhook: WebhookReceiver
) -> None:
    assert api.post("/api/alert-channels", {"name": "ops", "url": webhook.url()}).status_code == 201
    app_id = add_monitored_app(api.runtime, "web", healthCheckUrl=server.url, maxConsecutiveFailures=1)
    now = utcnow()
    window(api, app_id, now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=10))
    server.mode = "error"
    probe_once(api.runtime, ProbeEngine(api.runtime, recovery=False), target_of(api.runtime, app_id))
    deliver_pending(api.runtime)
    assert webhook.titles() == []

    from hostcraft.services.monitoring import maintenance_intervals_of

    run_recovery(api.runtime, now=now + dt.timedelta(minutes=11), maintenance=maintenance_intervals_of)
    deliver_pending(api.runtime, now=now + dt.timedelta(minutes=11))
    with api.runtime.store.session() as session:
        alert = session.scalars(select(Alert).where(Alert.trigger == "service_health_failure")).one()
        assert alert.status == "open"
    assert len(webhook.titles()) == 1
    assert "default/web is failing its health checks" in webhook.titles()[0]
