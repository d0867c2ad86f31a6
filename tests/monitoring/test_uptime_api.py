"""Uptime from incidents through the API, the CSV report, and bounded probe history."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import func, select

from hostcraft.runtime import Runtime
from hostcraft.services.monitoring import compact_history
from hostcraft.store.models import AppHealth, Incident, ProbeHourly, ProbeResult, utcnow
from tests.conftest import Api
from tests.monitoring.test_probes import add_monitored_app


def add_history(
    runtime: Runtime, app_id: int, *, monitored_days: float, incidents: list[tuple[float, float | None]]
) -> None:
    """Record monitoring since ``monitored_days`` ago and incidents as (hours ago began, hours ago ended)."""
    now = utcnow()
    with runtime.store.session() as session:
        session.add(
            AppHealth(
                application_id=app_id, status="up", monitored_since=now - dt.timedelta(days=monitored_days)
            )
        )
        for began, ended in incidents:
            session.add(
                Incident(
                    application_id=app_id,
                    status="resolved" if ended is not None else "open",
                    began_at=now - dt.timedelta(hours=began),
                    ended_at=None if ended is None else now - dt.timedelta(hours=ended),
                )
            )
        session.commit()


def test_uptime_is_time_weighted_from_incidents(api: Api) -> None:
    app_id = add_monitored_app(api.runtime, "web", slaTarget=99.9)
    # 2.4 h of downtime 2 days ago: 10 % of one day, 1/12.5 of 30 days... measured over 30 days.
    add_history(api.runtime, app_id, monitored_days=60, incidents=[(50, 47.6)])
    month = api.get(f"/api/applications/{app_id}/uptime?window=30d")
    assert month.status_code == 200, month.text
    body = month.json()
    assert body["downtimeSeconds"] == pytest.approx(2.4 * 3600, abs=2)
    assert body["availabilityPercent"] == pytest.approx(100 * (1 - 2.4 / (30 * 24)), abs=1e-3)
    assert body["slaTargetPercent"] == 99.9
    assert body["meetsTarget"] is False
    assert body["errorBudgetRemainingSeconds"] == pytest.approx(30 * 86400 * 0.001 - 2.4 * 3600, abs=2)
    day = api.get(f"/api/applications/{app_id}/uptime?window=24h").json()
    assert day["downtimeSeconds"] == 0
    assert day["availabilityPercent"] == 100.0


def test_uptime_counts_open_incident_until_now(api: Api) -> None:
    app_id = add_monitored_app(api.runtime, "web")
    add_history(api.runtime, app_id, monitored_days=2, incidents=[(1, None)])
    body = api.get(f"/api/applications/{app_id}/uptime?window=24h").json()
    assert body["downtimeSeconds"] == pytest.approx(3600, abs=5)


def test_uptime_rejects_bad_window(api: Api) -> None:
    app_id = add_monitored_app(api.runtime, "web")
    response = api.get(f"/api/applications/{app_id}/uptime?window=1w")
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "window"


def test_uptime_of_missing_app_is_404(api: Api) -> None:
    assert api.get("/api/applications/999/uptime").status_code == 404


def test_uptime_report_json_and_csv(api: Api) -> None:
    first = add_monitored_app(api.runtime, "web")
    second = add_monitored_app(api.runtime, "api")
    add_history(api.runtime, first, monitored_days=100, incidents=[(10, 9)])
    add_history(api.runtime, second, monitored_days=100, incidents=[])
    report = api.get("/api/reports/uptime", role="viewer").json()
    windows = {(row["applicationId"], row["window"]) for row in report["applications"]}
    assert windows == {(app, window) for app in (first, second) for window in ("24h", "7d", "30d", "90d")}
    response = api.get("/api/reports/uptime?window=7d&format=csv")
    assert response.headers["content-type"].startswith("text/csv")
    rows = {row["application"]: row for row in csv.DictReader(io.StringIO(response.text))}
    assert set(rows) == {"default/web", "default/api"}
    assert float(rows["default/web"]["downtimeSeconds"]) == pytest.approx(3600, abs=5)
    assert float(rows["default/api"]["availabilityPercent"]) == 100.0


def test_health_and_incident_endpoints(api: Api) -> None:
    app_id = add_monitored_app(api.runtime, "web")
    add_history(api.runtime, app_id, monitored_days=1, incidents=[(3, 2), (1, None)])
    health = api.get(f"/api/applications/{app_id}/health", role="viewer").json()
    assert health["monitored"] is True
    assert health["openIncident"]["status"] == "open"
    incidents = api.get(f"/api/applications/{app_id}/incidents").json()
    assert [item["status"] for item in incidents] == ["open", "resolved"]
    assert incidents[1]["downtimeSeconds"] == pytest.approx(3600, abs=1)


def test_probe_history_is_compacted_and_bounded(runtime: Runtime) -> None:
    """A year of probes every minute is stored as 7 days raw plus hourly rows."""
    app_id = add_monitored_app(runtime, "web")
    now = utcnow().replace(minute=30, second=0, microsecond=0)
    with runtime.store.session() as session:
        rows = [
            {
                "application_id": app_id,
                "at": now - dt.timedelta(minutes=minute),
                "ok": minute % 10 != 0,
                "latency_ms": float(minute % 7),
            }
            for minute in range(0, 14 * 24 * 60)
        ]
        session.execute(ProbeResult.__table__.insert(), rows)
        session.commit()
    with runtime.store.session() as session:
        removed = compact_history(session, now=now, raw_days=7, hourly_days=400)
        session.commit()
    with runtime.store.session() as session:
        raw = session.scalar(select(func.count()).select_from(ProbeResult))
        hours = list(session.scalars(select(ProbeHourly).order_by(ProbeHourly.hour)))
        oldest_raw = session.scalar(select(func.min(ProbeResult.at)))
    assert removed + raw == 14 * 24 * 60
    assert oldest_raw >= now - dt.timedelta(days=7, hours=1)
    assert sum(hour.probes for hour in hours) == removed
    assert sum(hour.failures for hour in hours) == sum(
        1 for row in rows if row["at"] < now - dt.timedelta(days=7, minutes=30) and not row["ok"]
    )
    assert all(hour.probes <= 60 for hour in hours)
    assert len(hours) == pytest.approx(7 * 24, abs=2)
    # Compacting again changes nothing: the history stays bounded.
    with runtime.store.session() as session:
        assert compact_history(session, now=now, raw_days=7, hourly_days=400) == 0
