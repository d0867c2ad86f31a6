"""The DR endpoints' validation, plans without engines, the report and the DR metrics.

Failovers that move apps run on two lab regions in ``tests/dr``; these tests need no engine.
"""

from __future__ import annotations

from typing import Any

from hostcraft.store.models import DrRun, utcnow
from tests.conftest import Api, create_region


def make_app(api: Api, name: str = "web", **fields: Any) -> dict[str, Any]:
    body = {"name": name, "image": "registry.example:5000/web:1", "region": "home", **fields}
    response = api.post("/api/applications", body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def two_regions(api: Api) -> None:
    create_region(api, "home")
    create_region(api, "far", primary=False, priority=2)


def test_dr_policy_gets_home_region_and_defaults(api: Api) -> None:
    two_regions(api)

    app = make_app(api, dr={"regions": ["far"]})

    assert app["dr"]["homeRegion"] == "home"
    assert app["dr"]["mode"] == "cold"
    assert app["dr"]["gracePeriodSeconds"] == 60


def test_dr_policy_with_unknown_region_is_rejected(api: Api) -> None:
    two_regions(api)

    response = api.post(
        "/api/applications", {"name": "web", "image": "web:1", "region": "home", "dr": {"regions": ["moon"]}}
    )

    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "dr.regions[0]"


def test_dr_policy_home_region_cannot_be_dr_region(api: Api) -> None:
    two_regions(api)

    response = api.post(
        "/api/applications", {"name": "web", "image": "web:1", "region": "home", "dr": {"regions": ["home"]}}
    )

    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "dr.regions"


def test_traffic_switch_secret_must_name_an_app_secret(api: Api) -> None:
    two_regions(api)
    switch = {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secretName": "missing"}

    response = api.post(
        "/api/applications",
        {
            "name": "web",
            "image": "web:1",
            "region": "home",
            "dr": {"regions": ["far"], "trafficSwitch": switch},
        },
    )

    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "dr.trafficSwitch.secretName"


def test_failover_without_policy_is_rejected(api: Api) -> None:
    two_regions(api)
    app = make_app(api)

    response = api.post(f"/api/applications/{app['id']}/failover", {})

    assert response.status_code == 422
    assert "no DR policy" in response.json()["error"]["message"]


def test_failover_to_region_outside_policy_is_rejected(api: Api) -> None:
    two_regions(api)
    create_region(api, "other", primary=False, priority=3)
    app = make_app(api, dr={"regions": ["far"]})

    response = api.post(f"/api/applications/{app['id']}/failover", {"targetRegionId": "other"})

    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "targetRegionId"


def test_region_failover_needs_positive_concurrency(api: Api) -> None:
    two_regions(api)
    region = api.get("/api/regions").json()[0]

    response = api.post(f"/api/regions/{region['id']}/failover", {"concurrency": 0})

    assert response.status_code == 422


def test_dry_run_lists_problems_of_region_without_swarm(api: Api) -> None:
    two_regions(api)
    app = make_app(api, dr={"regions": ["far"]})

    plan = api.post(f"/api/applications/{app['id']}/drills", {"mode": "dry-run"})

    assert plan.status_code == 200, plan.text
    body = plan.json()
    assert body["targetRegion"] == "far"
    assert body["ready"] is False
    assert any("far" in problem for problem in body["problems"])
    assert api.get("/api/dr/runs").json() == []


def test_report_and_metrics_show_last_runs(api: Api) -> None:
    two_regions(api)
    app = make_app(api, dr={"regions": ["far"], "rtoSeconds": 60, "rpoSeconds": 120})
    with api.runtime.store.session() as session:
        for kind, rto, rpo in (("drill", 30.0, 200.0), ("failover", 45.0, 90.0)):
            session.add(
                DrRun(
                    application_id=app["id"],
                    application_name="default/web",
                    kind=kind,
                    mode="live" if kind == "drill" else "manual",
                    status="succeeded",
                    rto_seconds=rto,
                    rpo_seconds=rpo,
                    actor="test",
                    finished_at=utcnow(),
                )
            )
        session.commit()

    report = api.get("/api/dr/report").json()
    metrics = api.get("/metrics").text

    entry = report["applications"][0]
    assert entry["objectives"] == {"rtoSeconds": 60, "rpoSeconds": 120}
    assert (entry["lastDrill"]["rtoSeconds"], entry["lastDrill"]["result"]) == (30.0, "fail")
    assert (entry["lastFailover"]["rpoSeconds"], entry["lastFailover"]["result"]) == (90.0, "pass")
    assert entry["replicatedBackups"] == {"far": None}
    assert report["controlPlane"]["region"] is None
    assert 'hostcraft_dr_runs{kind="drill",status="succeeded"} 1.0' in metrics
    assert 'hostcraft_dr_measured_rto_seconds{application="default/web",kind="failover"} 45.0' in metrics
