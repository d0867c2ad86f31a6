"""Application API behaviour that needs no swarm: validation, serialization guards, import."""

from __future__ import annotations

from typing import Any

from hostcraft.store.models import Deployment
from tests.conftest import Api, create_region

IMAGE = "127.0.0.1:5000/hostcraft/webapp:v1"


def _create(api: Api, **fields: Any) -> dict[str, Any]:
    response = api.post("/api/applications", {"name": "web", "image": IMAGE, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _block_with_running_deployment(api: Api, app: dict[str, Any], *, digest: str | None = None) -> int:
    with api.runtime.store.session() as session:
        row = Deployment(
            application_id=app["id"],
            kind="deploy",
            status="running",
            spec={"image": IMAGE},
            image=IMAGE,
            image_digest_reference=digest,
            actor="test",
        )
        session.add(row)
        session.flush()
        return row.id


def test_secret_values_are_write_only(api: Api) -> None:
    create_region(api)
    app = _create(api, secrets=[{"name": "db-password", "value": "s3cret-value"}])
    assert "s3cret-value" not in api.get(f"/api/applications/{app['id']}").text
    assert app["secrets"] == [{"name": "db-password", "target": "db-password"}]


def test_refused_scale_leaves_the_application_unchanged(api: Api) -> None:
    create_region(api)
    app = _create(api, replicas=2)
    _block_with_running_deployment(api, app)
    response = api.post(f"/api/applications/{app['id']}/scale", {"replicas": 5})
    assert response.status_code == 409
    assert api.get(f"/api/applications/{app['id']}").json()["replicas"] == 2


def test_refused_rollback_leaves_the_application_unchanged(api: Api) -> None:
    create_region(api)
    app = _create(api)
    earlier = _block_with_running_deployment(api, app, digest=IMAGE + "@sha256:" + "a" * 64)
    changed = {"name": "web", "image": "127.0.0.1:5000/hostcraft/webapp:v2"}
    assert api.put(f"/api/applications/{app['id']}", changed).status_code == 200
    response = api.post(f"/api/deployments/{earlier}/rollback")
    assert response.status_code == 409
    assert api.get(f"/api/applications/{app['id']}").json()["image"].endswith("webapp:v2")


COMPOSE = """
services:
  app:
    image: 127.0.0.1:5000/hostcraft/webapp:v1
    secrets: [api-key]
secrets:
  api-key:
    file: ./api-key.txt
"""


def test_import_takes_secret_values_from_the_request(api: Api) -> None:
    create_region(api)
    missing = api.post("/api/applications/import", {"compose": COMPOSE, "project": "shop"})
    assert missing.status_code == 422
    assert missing.json()["error"]["details"]["field"] == "secretValues.api-key"
    assert api.get("/api/applications").json() == []

    imported = api.post(
        "/api/applications/import",
        {"compose": COMPOSE, "project": "shop", "secretValues": {"api-key": "k-123"}},
    )
    assert imported.status_code == 201, imported.text
    assert "k-123" not in imported.text
    assert imported.json()["applications"][0]["secrets"] == [{"name": "api-key", "target": "api-key"}]


def test_import_errors_name_the_service(api: Api) -> None:
    create_region(api)
    compose = "services:\n  app:\n    image: 127.0.0.1:5000/x:1\n    environment:\n      BAD KEY: v\n"
    response = api.post("/api/applications/import", {"compose": compose})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"].startswith("services.app.")
    assert api.get("/api/applications").json() == []
