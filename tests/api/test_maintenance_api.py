"""Maintenance windows: validation, and no alert messages while one is active, across DST."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from hostcraft.services.alert_delivery import deliver_pending
from hostcraft.services.alerts import notify_once, open_alert, resolve_alert
from hostcraft.services.maintenance import in_maintenance, maintenance_intervals
from tests.alert_receivers import WebhookReceiver
from tests.conftest import Api, create_region

IMAGE = "127.0.0.1:5000/hostcraft/webapp:v1"


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _window(api: Api, **fields: Any) -> dict[str, Any]:
    response = api.post("/api/maintenance-windows", fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _app(api: Api) -> dict[str, Any]:
    response = api.post("/api/applications", {"name": "web", "image": IMAGE})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _open(api: Api, at: dt.datetime, **fields: Any) -> dict[str, Any]:
    with api.runtime.store.session() as session:
        alert = open_alert(
            session,
            trigger="node_unreachable",
            cause="server:1:unreachable",
            title="Node down",
            message="m",
            now=at,
            **fields,
        )
        return {"id": alert.id, "status": alert.status}


def test_dst_spanning_window_suppresses_alerts(api: Api, webhook: WebhookReceiver) -> None:
    region = create_region(api)
    api.post("/api/alert-channels", {"name": "ops", "url": webhook.url()})
    # 01:00 CET on the night clocks jump to CEST: three hours of elapsed time, 00:00-03:00 UTC.
    _window(api, regionId=region["id"], timezone="Europe/Berlin", cron="0 1 29 3 *", durationMinutes=180)

    during = [
        _open(api, utc(moment), region_id=region["id"]) for moment in ("2026-03-29T00:10", "2026-03-29T02:50")
    ]
    deliver_pending(api.runtime)
    assert webhook.titles() == []
    assert {alert["status"] for alert in during} == {"suppressed"}
    assert during[0]["id"] == during[1]["id"]

    after = _open(api, utc("2026-03-29T03:05"), region_id=region["id"])
    deliver_pending(api.runtime)
    assert after == {"id": during[0]["id"], "status": "open"}
    assert webhook.titles() == ["[CRITICAL] Node down"]


def test_window_in_repeated_autumn_hour(api: Api, webhook: WebhookReceiver) -> None:
    region = create_region(api)
    api.post("/api/alert-channels", {"name": "ops", "url": webhook.url()})
    # 01:30 CEST on the night clocks fall back, for 120 minutes: 23:30-01:30 UTC, which ends at
    # the second 02:30 on the wall clock.
    _window(api, regionId=region["id"], timezone="Europe/Berlin", cron="30 1 25 10 *", durationMinutes=120)

    with api.runtime.store.session() as session:
        at_second_0210 = in_maintenance(
            session, application_id=None, region_id=region["id"], at=utc("2026-10-25T01:10")
        )
        at_second_0240 = in_maintenance(
            session, application_id=None, region_id=region["id"], at=utc("2026-10-25T01:40")
        )
        intervals = maintenance_intervals(
            session,
            application_id=None,
            region_id=region["id"],
            start=utc("2026-10-24T00:00"),
            end=utc("2026-10-26T00:00"),
        )

    assert at_second_0210 is True
    assert at_second_0240 is False
    assert intervals == [(utc("2026-10-24T23:30"), utc("2026-10-25T01:30"))]


def test_suppressed_alert_resolves_without_messages(api: Api, webhook: WebhookReceiver) -> None:
    region = create_region(api)
    api.post("/api/alert-channels", {"name": "ops", "url": webhook.url()})
    _window(api, regionId=region["id"], startsAt="2026-05-01T10:00:00Z", endsAt="2026-05-01T12:00:00Z")

    _open(api, utc("2026-05-01T10:30"), region_id=region["id"])
    with api.runtime.store.session() as session:
        resolved = resolve_alert(
            session, cause="server:1:unreachable", message="back", now=utc("2026-05-01T11:00")
        )
        notice = notify_once(
            session,
            trigger="recovery_action",
            cause="app:1:restart",
            title="Restarted",
            message="m",
            region_id=region["id"],
            now=utc("2026-05-01T11:00"),
        )
        statuses = (resolved.status if resolved else None, notice.status)
    deliver_pending(api.runtime)

    assert statuses == ("resolved", "suppressed")
    assert webhook.titles() == []


def test_app_is_in_maintenance_through_its_region(api: Api) -> None:
    region = create_region(api)
    app = _app(api)
    _window(api, regionId=region["id"], startsAt="2026-05-01T10:00:00Z", endsAt="2026-05-01T12:00:00Z")
    _window(api, applicationId=app["id"], cron="0 3 * * *", durationMinutes=30, timezone="UTC")

    with api.runtime.store.session() as session:

        def active(moment: str, **target: Any) -> bool:
            return in_maintenance(
                session, at=utc(moment), **{"application_id": None, "region_id": None, **target}
            )

        assert active("2026-05-01T11:00", application_id=app["id"])
        assert active("2026-05-02T03:10", application_id=app["id"])
        assert not active("2026-05-02T03:10", region_id=region["id"])
        assert not active("2026-05-02T04:00", application_id=app["id"])
        intervals = maintenance_intervals(
            session,
            application_id=app["id"],
            region_id=None,
            start=utc("2026-05-01T00:00"),
            end=utc("2026-05-02T00:00"),
        )
    assert intervals == [
        (utc("2026-05-01T03:00"), utc("2026-05-01T03:30")),
        (utc("2026-05-01T10:00"), utc("2026-05-01T12:00")),
    ]


def test_window_listing_and_deletion(api: Api) -> None:
    region = create_region(api)
    window = _window(
        api, regionId=region["id"], cron="0 2 * * SUN", durationMinutes=60, reason="kernel updates"
    )

    listed = api.get("/api/maintenance-windows", params={"regionId": region["id"]}).json()
    assert [item["id"] for item in listed] == [window["id"]]
    assert window["reason"] == "kernel updates"
    assert window["nextStart"] is not None
    assert window["activeNow"] in (True, False)
    assert api.delete(f"/api/maintenance-windows/{window['id']}", role="viewer").status_code == 403
    assert api.delete(f"/api/maintenance-windows/{window['id']}", role="operator").status_code == 204
    assert api.get(f"/api/maintenance-windows/{window['id']}").status_code == 404


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"timezone": "Mars/Olympus", "cron": "0 2 * * *", "durationMinutes": 60}, "timezone"),
        ({"cron": "0 2 * *", "durationMinutes": 60}, "cron"),
        ({"cron": "0 25 * * *", "durationMinutes": 60}, "cron"),
        ({"cron": "0 2 * * *", "durationMinutes": 0}, "durationMinutes"),
        ({"cron": "0 2 * * *"}, "durationMinutes"),
        ({"startsAt": "2026-05-01T12:00:00Z", "endsAt": "2026-05-01T12:00:00Z"}, "endsAt"),
        ({"startsAt": "2026-05-01T12:00:00Z"}, "endsAt"),
        ({"startsAt": "2026-05-01T12:00:00", "endsAt": "2026-05-01T13:00:00"}, "startsAt"),
        ({"cron": "0 2 * * *", "durationMinutes": 60, "startsAt": "2026-05-01T12:00:00Z"}, "cron"),
        ({}, "cron"),
    ],
)
def test_invalid_window_names_field(api: Api, fields: dict[str, Any], field: str) -> None:
    region = create_region(api)

    response = api.post("/api/maintenance-windows", {"regionId": region["id"], **fields})

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"]["field"] == field


def test_window_target_validation(api: Api) -> None:
    region = create_region(api)
    app = _app(api)
    timing = {"cron": "0 2 * * *", "durationMinutes": 60}

    both = api.post(
        "/api/maintenance-windows", {"regionId": region["id"], "applicationId": app["id"], **timing}
    )
    neither = api.post("/api/maintenance-windows", timing)
    unknown_region = api.post("/api/maintenance-windows", {"regionId": 999, **timing})
    unknown_app = api.post("/api/maintenance-windows", {"applicationId": 999, **timing})

    assert both.status_code == neither.status_code == 422
    assert unknown_region.status_code == 422
    assert unknown_region.json()["error"]["details"]["field"] == "regionId"
    assert unknown_app.json()["error"]["details"]["field"] == "applicationId"
