"""Shared fixtures: a HostCraft runtime on each store backend, API clients per role, the engine."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hostcraft.api.app import create_app
from hostcraft.config import Settings
from hostcraft.runtime import Runtime
from hostcraft.services.tokens import create_token

LOCAL_ENGINE = "unix:///var/run/docker.sock"
BACKENDS = ["sqlite", "postgresql"]


def _postgres_admin_url() -> str | None:
    return os.environ.get("HOSTCRAFT_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[docker.DockerClient]:
    """The root-namespace engine; a missing engine fails when HOSTCRAFT_REQUIRE_DOCKER is set."""
    try:
        client = docker.DockerClient(base_url=LOCAL_ENGINE, version="1.41", timeout=30)
        client.ping()
    except Exception as exc:
        if os.environ.get("HOSTCRAFT_REQUIRE_DOCKER") or os.environ.get("CI"):
            pytest.fail(f"a Docker engine is required at {LOCAL_ENGINE} but did not answer: {exc}")
        pytest.skip(f"no Docker engine at {LOCAL_ENGINE}: run scripts/test, which starts one")
    yield client
    client.close()


def _database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'hostcraft.db'}"
        return
    admin_url = _postgres_admin_url()
    if not admin_url:
        if os.environ.get("HOSTCRAFT_REQUIRE_DOCKER") or os.environ.get("CI"):
            pytest.fail("HOSTCRAFT_TEST_POSTGRES_URL is not set: run the suite with scripts/test")
        pytest.skip("PostgreSQL not configured: run scripts/test, which starts it")
    name = f"hc_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_runtime(backend: str, tmp_path: Path, **overrides: object) -> Iterator[Runtime]:
    for url in _database_url(backend, tmp_path):
        settings = Settings(data_dir=tmp_path / "data", database_url=url, engine_enabled=False, **overrides)
        runtime = Runtime.create(settings)
        try:
            yield runtime
        finally:
            runtime.close()


@pytest.fixture(params=BACKENDS)
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    yield from make_runtime(request.param, tmp_path)


class Api:
    """A TestClient with one token per role."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.client = TestClient(create_app(runtime, run_engine=False))
        self.tokens: dict[str, str] = {}
        with runtime.store.session() as session:
            for role in ("admin", "operator", "viewer"):
                _, self.tokens[role] = create_token(session, name=f"test-{role}", role=role)

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def request(self, method: str, path: str, *, role: str = "admin", **kwargs: object):  # type: ignore[no-untyped-def]
        return self.client.request(method, path, headers=self.headers(role), **kwargs)

    def get(self, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: object = None, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.request("POST", path, json=json if json is not None else {}, **kwargs)

    def put(self, path: str, json: object, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.request("PUT", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def api(runtime: Runtime) -> Iterator[Api]:
    client = Api(runtime)
    yield client
    client.client.close()


def create_region(
    api: Api, code: str = "eu-west-1", *, primary: bool = True, priority: int = 1
) -> dict[str, object]:
    response = api.post(
        "/api/regions", {"name": code.upper(), "code": code, "isPrimary": primary, "priority": priority}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


# Local webhook and SMTP receivers for the alert tests.
from tests.alert_receivers import smtp, webhook  # noqa: E402, F401
