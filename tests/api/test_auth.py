"""Every route of the OpenAPI document needs a token; viewers only read; no key material leaks."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Api, create_region

PUBLIC = {("GET", "/health")}
READ = {"GET", "HEAD", "OPTIONS"}


def _routes(api: Api) -> list[tuple[str, str]]:
    spec = api.client.get("/api/openapi.json").json()
    routes = []
    for path, operations in spec["paths"].items():
        for method in operations:
            routes.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path)))
    return routes


def test_openapi_document_is_served_at_api_docs(api: Api) -> None:
    assert api.client.get("/api/docs").status_code == 200
    assert len(_routes(api)) >= 15


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer hc_wrong", "Basic dXNlcjpwYXNz"])
def test_every_route_rejects_missing_or_wrong_token(api: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    for method, path in _routes(api):
        if (method, path) in PUBLIC:
            continue
        response = api.client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json()["error"]["code"] == "unauthenticated"


def test_viewer_cannot_write_any_route(api: Api) -> None:
    for method, path in _routes(api):
        if method in READ or (method, path) in PUBLIC:
            continue
        response = api.request(method, path, role="viewer", json={})
        assert response.status_code == 403, (method, path, response.status_code)
        assert response.json()["error"]["code"] == "forbidden"


def test_viewer_reads_and_operator_cannot_manage_tokens(api: Api) -> None:
    create_region(api)
    assert api.get("/api/regions", role="viewer").status_code == 200
    assert api.get("/api/tokens", role="operator").status_code == 403
    assert api.post("/api/tokens", {"name": "x", "role": "viewer"}, role="operator").status_code == 403


def test_health_needs_no_token(api: Api) -> None:
    response = api.client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_token_shown_once_and_stored_as_hash(api: Api) -> None:
    created = api.post("/api/tokens", {"name": "ci", "role": "operator"})
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("hc_")
    listed = api.get("/api/tokens")
    assert token not in listed.text
    from hostcraft.store.models import ApiToken

    with api.runtime.store.session() as session:
        stored = [row.token_hash for row in session.query(ApiToken).all()]
    assert token not in stored
    assert all(len(value) == 64 for value in stored)
    response = api.client.get("/api/regions", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_revoked_token_is_rejected(api: Api) -> None:
    created = api.post("/api/tokens", {"name": "temp", "role": "viewer"}).json()
    assert api.delete(f"/api/tokens/{created['id']}").status_code == 200
    response = api.client.get("/api/regions", headers={"Authorization": f"Bearer {created['token']}"})
    assert response.status_code == 401


def test_duplicate_token_name_conflicts(api: Api) -> None:
    assert api.post("/api/tokens", {"name": "dup", "role": "viewer"}).status_code == 201
    assert api.post("/api/tokens", {"name": "dup", "role": "viewer"}).status_code == 409


def test_unknown_route_is_json_404(api: Api) -> None:
    response = api.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
