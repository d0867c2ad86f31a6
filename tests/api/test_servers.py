"""Servers against the real local Docker engine."""

from __future__ import annotations

import docker
import pytest

from tests.conftest import LOCAL_ENGINE, Api, create_region

pytestmark = pytest.mark.docker


@pytest.fixture
def region(api: Api) -> dict[str, object]:
    return create_region(api, "eu-west-1")


def test_local_engine_is_registered_with_facts(
    api: Api, region: dict[str, object], docker_engine: docker.DockerClient
) -> None:
    response = api.post("/api/servers", {"name": "local", "endpoint": LOCAL_ENGINE, "regionId": "eu-west-1"})
    assert response.status_code == 201, response.text
    server = response.json()
    version = docker_engine.version()
    info = docker_engine.info()
    assert server["engine"]["engineVersion"] == version["Version"]
    assert server["engine"]["apiVersion"] == version["ApiVersion"]
    assert server["engine"]["cpus"] == info["NCPU"]
    assert server["engine"]["memoryBytes"] == info["MemTotal"]
    assert server["swarm"]["state"] == info["Swarm"]["LocalNodeState"]
    assert server["regionCode"] == "eu-west-1"
    assert server["validatedAt"] is not None


def test_validate_records_facts_again(
    api: Api, region: dict[str, object], docker_engine: docker.DockerClient
) -> None:
    server = api.post(
        "/api/servers",
        {"name": "local", "endpoint": LOCAL_ENGINE, "regionId": region["id"], "skipValidation": True},
    ).json()
    assert server["engine"]["engineVersion"] is None
    validated = api.post(f"/api/servers/{server['id']}/validate")
    assert validated.status_code == 200
    assert validated.json()["engine"]["engineVersion"] == docker_engine.version()["Version"]
    events = api.get("/api/events", params={"targetType": "server", "action": "server.validate"}).json()
    assert events[0]["outcome"] == "succeeded"


def test_health_is_measured_on_the_node(
    api: Api, region: dict[str, object], docker_engine: docker.DockerClient
) -> None:
    server = api.post(
        "/api/servers", {"name": "local", "endpoint": LOCAL_ENGINE, "regionId": region["id"]}
    ).json()
    before = api.get(f"/api/servers/{server['id']}/health").json()
    assert before["status"] == "unknown"
    report = api.post(f"/api/servers/{server['id']}/health").json()
    assert report["status"] in ("healthy", "degraded")
    latest = report["latest"]
    assert latest["reachable"] is True
    assert latest["latencyMs"] > 0
    resources = latest["resources"]
    assert resources["measured"] is True, resources
    assert resources["dataRoot"] == docker_engine.info()["DockerRootDir"]
    assert 0 < resources["diskFreeBytes"] <= resources["diskTotalBytes"]
    assert 0 < resources["memoryAvailableBytes"] <= resources["memoryTotalBytes"]
    assert resources["memoryTotalBytes"] == docker_engine.info()["MemTotal"]
    assert not docker_engine.containers.list(all=True, filters={"label": "io.hostcraft.role=probe"})
    api.post(f"/api/servers/{server['id']}/health")
    history = api.get(f"/api/servers/{server['id']}/health", params={"history": 5}).json()["history"]
    assert len(history) == 2


def test_unreachable_engine_is_422_and_nothing_created(api: Api, region: dict[str, object]) -> None:
    response = api.post(
        "/api/servers",
        {"name": "ghost", "endpoint": "unix:///run/hostcraft-none.sock", "regionId": region["id"]},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"]["field"] == "endpoint"
    assert "unreachable" in error["message"]
    assert api.get("/api/servers").json() == []


def test_unreachable_server_health_is_unreachable(api: Api, region: dict[str, object]) -> None:
    server = api.post(
        "/api/servers",
        {
            "name": "ghost",
            "endpoint": "unix:///run/hostcraft-none.sock",
            "regionId": region["id"],
            "skipValidation": True,
        },
    ).json()
    report = api.post(f"/api/servers/{server['id']}/health").json()
    assert report["status"] == "unreachable"
    assert report["reasons"][0].startswith("engine unreachable:")


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"endpoint": "ftp://host"}, "endpoint", 422),
        ({"endpoint": "tcp://127.0.0.1:2376"}, "tlsCa", 422),
        (
            {
                "endpoint": "ssh://root@127.0.0.1:2222",
                "sshPrivateKey": "not a key",
                "sshKnownHostKey": "ssh-ed25519 AAAA",
            },
            "sshPrivateKey",
            422,
        ),
        ({"regionId": "nowhere"}, "regionId", 422),
        ({"name": ""}, "name", 422),
        ({"unexpected": 1}, "unexpected", 422),
    ],
)
def test_bad_server_input_is_rejected_with_field(
    api: Api, region: dict[str, object], body: dict[str, object], field: str, status: int
) -> None:
    payload = {"name": "bad", "endpoint": LOCAL_ENGINE, "regionId": region["id"], **body}
    response = api.post("/api/servers", payload)
    assert response.status_code == status, response.text
    assert response.json()["error"]["details"]["field"] == field
    assert api.get("/api/servers").json() == []


def test_duplicate_server_name_and_endpoint_conflict(api: Api, region: dict[str, object]) -> None:
    base = {"endpoint": "unix:///run/a.sock", "regionId": region["id"], "skipValidation": True}
    assert api.post("/api/servers", {"name": "a", **base}).status_code == 201
    same_name = api.post("/api/servers", {**base, "name": "a", "endpoint": "unix:///run/b.sock"})
    assert same_name.status_code == 409
    same_endpoint = api.post("/api/servers", {**base, "name": "b"})
    assert same_endpoint.status_code == 409
    assert "already registered as server 'a'" in same_endpoint.json()["error"]["message"]


def test_update_moves_server_and_keeps_key_material_private(api: Api, region: dict[str, object]) -> None:
    other = create_region(api, "us-east-1", primary=False, priority=2)
    server = api.post(
        "/api/servers",
        {"name": "a", "endpoint": "unix:///run/a.sock", "regionId": region["id"], "skipValidation": True},
    ).json()
    moved = api.put(f"/api/servers/{server['id']}", {"regionId": other["id"], "failureDomain": "rack-2"})
    assert moved.status_code == 200
    assert moved.json()["regionCode"] == "us-east-1"
    assert moved.json()["failureDomain"] == "rack-2"
    missing = api.get("/api/servers/999")
    assert missing.status_code == 404
