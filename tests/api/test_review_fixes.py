"""Behaviour found in review: bootstrap after revocation, ids, reports without a swarm, docs."""

from __future__ import annotations

import pytest

from hostcraft.services.bootstrap import bootstrap
from tests.conftest import LOCAL_ENGINE, Api, create_region


def test_bootstrap_after_revoking_every_admin_creates_new_admin(api: Api) -> None:
    assert api.post("/api/tokens", {"name": "admin", "role": "admin"}).status_code == 201
    first = bootstrap(api.runtime, local_engine="unix:///run/hostcraft-none.sock")
    assert first.admin_token is None  # an admin token is active
    admins = [t for t in api.get("/api/tokens").json() if t["role"] == "admin"]
    admins.sort(key=lambda token: token["name"] == "test-admin")  # revoke our own token last
    for token in admins:
        assert api.delete(f"/api/tokens/{token['id']}").status_code == 200
    second = bootstrap(api.runtime, local_engine="unix:///run/hostcraft-none.sock")
    assert second.admin_token is not None
    headers = {"Authorization": f"Bearer {second.admin_token}"}
    names = {t["name"] for t in api.client.get("/api/tokens", headers=headers).json()}
    assert "admin" in names
    assert "admin-2" in names


def test_revoking_twice_records_one_event(api: Api) -> None:
    created = api.post("/api/tokens", {"name": "temp", "role": "viewer"}).json()
    assert api.delete(f"/api/tokens/{created['id']}").status_code == 200
    assert api.delete(f"/api/tokens/{created['id']}").status_code == 200
    events = api.get("/api/events", params={"action": "token.revoke"}).json()
    assert len(events) == 1


def test_deleted_server_id_is_never_reused(api: Api) -> None:
    region = create_region(api)
    body = {"endpoint": "unix:///run/a.sock", "regionId": region["id"], "skipValidation": True}
    first = api.post("/api/servers", {"name": "a", **body}).json()
    assert api.delete(f"/api/servers/{first['id']}").status_code == 204
    second = api.post("/api/servers", {"name": "b", **body}).json()
    assert second["id"] > first["id"]


@pytest.mark.docker
def test_region_without_swarm_has_no_cluster_report(api: Api, docker_engine: object) -> None:
    region = create_region(api)
    server = api.post(
        "/api/servers", {"name": "local", "endpoint": LOCAL_ENGINE, "regionId": region["id"]}
    ).json()
    if server["swarm"]["state"] != "inactive":
        pytest.skip("the local engine is in a swarm on this machine")
    report = api.get(f"/api/regions/{region['id']}/cluster")
    assert report.status_code == 404
    assert "has no swarm yet" in report.json()["error"]["message"]
    join = api.post(f"/api/servers/{server['id']}/swarm/join", {"asManager": False})
    assert join.status_code == 409
    assert "swarm init" in join.json()["error"]["message"]


def test_invalid_json_names_the_body(api: Api) -> None:
    response = api.client.post(
        "/api/regions", content=b"{bad", headers={**api.headers(), "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "body"


def test_api_docs_are_served_without_a_cdn(api: Api) -> None:
    page = api.client.get("/api/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text
    assert api.client.get("/api/docs/assets/swagger-ui-bundle.js").status_code == 200
    schema = api.client.get("/api/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/api/regions"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
