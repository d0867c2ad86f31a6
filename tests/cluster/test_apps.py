"""Applications on the real lab: rolling deploys, truthful state, rollback by digest, env, projects.

Services use ``dnsrr`` endpoints and are probed from a client container on the project's overlay
network, because this kernel has no IPVS (see the README's testing section).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.cluster.conftest import Cluster
from tests.lab_fixtures import node_client, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.docker]

PROBE_SCRIPT = r"""
while true; do
  answer=$(printf 'GET /version HTTP/1.0\r\n\r\n' | nc -w 2 "$TARGET" 80 2>/dev/null)
  if echo "$answer" | grep -q '200 OK'; then echo "ok $(echo "$answer" | tail -n 1)"; else echo "fail"; fi
  usleep 100000
done
"""


def _app(cluster: Cluster, name: str, **overrides: Any) -> dict[str, Any]:
    document = {
        "name": name,
        "project": "apps",
        "region": cluster.region["code"],
        "image": cluster.lab.images()["webapp:v1"],
        "replicas": 1,
        "endpointMode": "dnsrr",
        "strategy": {
            "type": "rolling",
            "maxUnavailable": 1,
            "maxSurge": 1,
            "updateDelay": "1s",
            "rollbackOnFailure": True,
        },
        "healthcheck": {
            "test": ["CMD", "test", "-e", "/www/version"],
            "intervalSeconds": 1,
            "timeoutSeconds": 0.5,
            "retries": 2,
            "startPeriodSeconds": 0,
        },
    }
    document.update(overrides)
    return document


def _create(cluster: Cluster, document: dict[str, Any]) -> dict[str, Any]:
    response = cluster.api.post("/api/applications", document)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _deploy(cluster: Cluster, app_id: int) -> dict[str, Any]:
    response = cluster.api.post(f"/api/applications/{app_id}/deploy", params={"wait": "true"})
    assert response.status_code == 202, response.text
    return dict(response.json())


def _put(cluster: Cluster, app: dict[str, Any], **changes: Any) -> None:
    document = {
        key: app[key]
        for key in ("name", "project", "image", "replicas", "endpointMode", "strategy", "healthcheck")
        if key in app
    }
    document.update(changes)
    response = cluster.api.put(f"/api/applications/{app['id']}", document)
    assert response.status_code == 200, response.text


def _running_tasks(client: docker.DockerClient, service: str) -> list[dict[str, Any]]:
    tasks = client.api.tasks(filters={"service": service, "desired-state": "running"})
    return [task for task in tasks if task["Status"]["State"] == "running"]


def _images(client: docker.DockerClient, service: str) -> list[str]:
    return sorted(task["Spec"]["ContainerSpec"]["Image"] for task in _running_tasks(client, service))


class Prober:
    """A client on the project network that requests ``/version`` every 100 ms."""

    def __init__(self, cluster: Cluster, network: str, target: str) -> None:
        self.client = node_client(cluster.node("m1"))
        self.container = self.client.containers.run(
            cluster.lab.images()["busybox"],
            ["sh", "-c", PROBE_SCRIPT],
            environment={"TARGET": target},
            network=network,
            detach=True,
            name=f"probe-{target}-{int(time.time())}",
        )

    def lines(self) -> list[str]:
        return self.container.logs().decode().splitlines()

    def stop(self) -> None:
        self.container.remove(force=True)
        self.client.close()


@pytest.fixture
def manager(cluster: Cluster) -> Iterator[docker.DockerClient]:
    client = cluster.manager_client()
    yield client
    client.close()


def test_rolling_update_keeps_serving_and_ends_on_v2(cluster: Cluster, manager: docker.DockerClient) -> None:
    app = _create(cluster, _app(cluster, "roll", replicas=3))
    first = _deploy(cluster, app["id"])
    assert first["status"] == "succeeded", first
    assert "@sha256:" in first["imageDigestReference"]

    prober = Prober(cluster, "apps_default", "roll")
    try:
        wait_for(
            lambda: len([line for line in prober.lines() if line.startswith("ok")]) >= 10,
            timeout=60,
            what="the prober to reach the app",
        )
        _put(cluster, app, image=cluster.lab.images()["webapp:v2"])
        second = _deploy(cluster, app["id"])
        time.sleep(1)
        lines = prober.lines()
    finally:
        prober.stop()
    assert second["status"] == "succeeded", second
    failures = [line for line in lines if line == "fail"]
    assert failures == [], f"{len(failures)} failed requests of {len(lines)}"
    assert "ok v2" in lines
    assert len(lines) >= 20
    images = _images(manager, "apps_roll")
    assert len(images) == 3
    assert all(image == second["imageDigestReference"] for image in images)


def test_failing_healthcheck_is_rolled_back_by_swarm(cluster: Cluster, manager: docker.DockerClient) -> None:
    healthcheck = {
        "test": ["CMD-SHELL", "grep -q v1 /www/version"],
        "intervalSeconds": 1,
        "timeoutSeconds": 0.5,
        "retries": 2,
        "startPeriodSeconds": 0,
    }
    app = _create(cluster, _app(cluster, "unhealthy", replicas=2, healthcheck=healthcheck))
    first = _deploy(cluster, app["id"])
    assert first["status"] == "succeeded", first
    _put(cluster, app, image=cluster.lab.images()["webapp:v2"], healthcheck=healthcheck)
    second = _deploy(cluster, app["id"])
    assert second["status"] == "rolled_back", second
    assert second["message"].startswith("Swarm rolled the update back")
    images = _images(manager, "apps_unhealthy")
    assert images == [first["imageDigestReference"]] * 2
    events = cluster.api.get(
        "/api/events", params={"targetType": "application", "targetId": str(app["id"])}
    ).json()
    assert any(e["details"].get("status") == "rolled_back" for e in events)


def test_exiting_task_during_update_leaves_one_good_task(
    cluster: Cluster, manager: docker.DockerClient
) -> None:
    """A one-replica app whose new task exits: exactly one task runs the last good version."""
    app = _create(cluster, _app(cluster, "exits"))
    first = _deploy(cluster, app["id"])
    assert first["status"] == "succeeded", first
    _put(cluster, app, command=["sh", "-c", "exit 3"])
    broken = cluster.api.post(f"/api/applications/{app['id']}/deploy")
    assert broken.status_code == 202
    time.sleep(2)
    second = cluster.api.post(f"/api/applications/{app['id']}/deploy")
    assert second.status_code == 409
    assert "never interleave" in second.json()["error"]["message"]
    final = wait_for(
        lambda: (
            (d := cluster.api.get(f"/api/deployments/{broken.json()['id']}").json())["status"]
            in ("succeeded", "failed", "rolled_back")
            and d
        ),
        timeout=240,
        what="the broken deploy to end",
    )
    assert final["status"] == "rolled_back", final
    tasks = _running_tasks(manager, "apps_exits")
    assert len(tasks) == 1
    assert tasks[0]["Spec"]["ContainerSpec"]["Image"] == first["imageDigestReference"]
    assert (
        "UpdateStatus" not in manager.api.inspect_service("apps_exits")
        or manager.api.inspect_service("apps_exits")["UpdateStatus"]["State"] != "paused"
    )


def test_rollback_restores_pinned_digest_after_tag_is_pushed_again(
    cluster: Cluster, manager: docker.DockerClient
) -> None:
    builder = node_client(cluster.node("m1"))
    moving = f"{cluster.lab.registry}/hostcraft/moving:latest"
    for source in ("webapp:v1",):
        builder.images.pull(cluster.lab.images()[source])
        builder.images.get(cluster.lab.images()[source]).tag(moving)
        builder.images.push(moving)
    app = _create(cluster, _app(cluster, "moving", image=moving))
    first = _deploy(cluster, app["id"])
    assert first["status"] == "succeeded", first

    builder.images.pull(cluster.lab.images()["webapp:v2"])
    builder.images.get(cluster.lab.images()["webapp:v2"]).tag(moving)
    builder.images.push(moving)
    builder.close()
    second = _deploy(cluster, app["id"])
    assert second["status"] == "succeeded", second
    assert second["imageDigestReference"] != first["imageDigestReference"]

    rolled = cluster.api.post(f"/api/deployments/{first['id']}/rollback", params={"wait": "true"}).json()
    assert rolled["status"] == "succeeded", rolled
    assert rolled["kind"] == "rollback"
    assert rolled["rollbackOf"] == first["id"]
    assert rolled["imageDigestReference"] == first["imageDigestReference"]
    assert _images(manager, "apps_moving") == [first["imageDigestReference"]]
    task = _running_tasks(manager, "apps_moving")[0]
    node = next(
        n
        for n in cluster.lab.nodes
        if n.name == manager.api.inspect_node(task["NodeID"])["Description"]["Hostname"]
    )
    version = _exec(node, task, ["cat", "/www/version"])
    assert version.strip() == "v1"


def _exec(node: Any, task: dict[str, Any], command: list[str]) -> str:
    client = node_client(node)
    try:
        container = client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        result = container.exec_run(command)
        assert result.exit_code == 0, result.output
        return str(result.output.decode())
    finally:
        client.close()


def _task_node(cluster: Cluster, manager: docker.DockerClient, task: dict[str, Any]) -> Any:
    hostname = manager.api.inspect_node(task["NodeID"])["Description"]["Hostname"]
    return cluster.lab.node(hostname)


def test_env_values_survive_exactly_inside_the_container(
    cluster: Cluster, manager: docker.DockerClient
) -> None:
    env = {
        "WITH_EQUALS": "a=b=c",
        "WITH_PUNCTUATION": "x;y#z",
        "MULTILINE": "line one\nline two",
        "UNICODE": "grüße ünïcödé ✓",
        "EMPTY": "",
    }
    app = _create(cluster, _app(cluster, "env", env=env))
    assert cluster.api.get(f"/api/applications/{app['id']}").json()["env"] == env
    assert _deploy(cluster, app["id"])["status"] == "succeeded"
    task = _running_tasks(manager, "apps_env")[0]
    environ = _exec(_task_node(cluster, manager, task), task, ["cat", "/proc/1/environ"])
    values = dict(item.split("=", 1) for item in environ.split("\0") if "=" in item)
    for key, value in env.items():
        assert values[key] == value, key


def test_two_projects_with_same_names_stay_isolated(cluster: Cluster, manager: docker.DockerClient) -> None:
    volumes = [{"name": "data", "target": "/data"}]
    apps = {}
    for project in ("alpha", "beta"):
        app = _create(cluster, _app(cluster, "web", project=project, volumes=volumes))
        assert _deploy(cluster, app["id"])["status"] == "succeeded"
        apps[project] = app
    for project in ("alpha", "beta"):
        task = _running_tasks(manager, f"{project}_web")[0]
        _exec(_task_node(cluster, manager, task), task, ["sh", "-c", f"echo {project} > /data/value"])
    for project in ("alpha", "beta"):
        task = _running_tasks(manager, f"{project}_web")[0]
        assert _exec(_task_node(cluster, manager, task), task, ["cat", "/data/value"]).strip() == project
        mounts = task["Spec"]["ContainerSpec"]["Mounts"]
        assert [m["Source"] for m in mounts] == [f"{project}_data"]
        # Two tasks must never share a node-local volume, so updates stop the old task first.
        assert manager.api.inspect_service(f"{project}_web")["Spec"]["UpdateConfig"]["Order"] == "stop-first"
        listed = cluster.api.get(f"/api/applications/{apps[project]['id']}/volumes").json()
        assert listed[0]["swarmName"] == f"{project}_data"
        assert listed[0]["nodeHostname"] == _task_node(cluster, manager, task).name


def test_local_volume_with_several_replicas_is_refused(cluster: Cluster) -> None:
    response = cluster.api.post(
        "/api/applications", _app(cluster, "multi", replicas=2, volumes=[{"name": "data", "target": "/data"}])
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "replicas"


def test_invalid_documents_name_the_field_before_swarm(
    cluster: Cluster, manager: docker.DockerClient
) -> None:
    cases = [
        ({"image": "Not A Valid/Image"}, "image"),
        ({"name": "Bad_Name"}, "name"),
        ({"ports": [{"target": 80, "published": 99999}]}, "ports[0].published"),
        ({"env": {"BAD KEY": "x"}}, "env.BAD KEY"),
        ({"region": "nowhere"}, "region"),
    ]
    before = len(manager.api.services())
    for override, field in cases:
        response = cluster.api.post("/api/applications", {**_app(cluster, "invalid"), **override})
        assert response.status_code == 422, (override, response.text)
        assert response.json()["error"]["details"]["field"] == field, override
    assert len(manager.api.services()) == before


COMPOSE = """
services:
  front:
    image: {v1}
    deploy:
      replicas: 2
      update_config: {{parallelism: 1, order: start-first, delay: 1s, failure_action: rollback}}
    environment:
      ROLE: front
  back:
    image: {v2}
    env_file: back.env
    environment:
      ROLE: back
  store:
    image: {v1}
    volumes: ["store-data:/data"]
    healthcheck: {{test: ["CMD", "test", "-e", "/www/version"], interval: 2s, timeout: 1s, retries: 2}}
    cap_add: [NET_ADMIN]
volumes:
  store-data: {{}}
"""


def test_compose_file_with_three_services_imports_deploys_and_serves(
    cluster: Cluster, manager: docker.DockerClient
) -> None:
    images = cluster.lab.images()
    body = {
        "compose": COMPOSE.format(v1=images["webapp:v1"], v2=images["webapp:v2"]),
        "project": "stack",
        "region": cluster.region["code"],
        "envFiles": {"back.env": "# comment\nLEVEL=debug\nROLE=ignored\n"},
    }
    response = cluster.api.post("/api/applications/import", body)
    assert response.status_code == 201, response.text
    result = response.json()
    assert sorted(app["name"] for app in result["applications"]) == ["back", "front", "store"]
    assert "services.store.cap_add" in result["unsupported"]
    back = next(app for app in result["applications"] if app["name"] == "back")
    assert back["env"] == {"LEVEL": "debug", "ROLE": "back"}
    for app in result["applications"]:
        deployment = _deploy(cluster, app["id"])
        assert deployment["status"] == "succeeded", deployment
    for name, version in (("front", "v1"), ("back", "v2"), ("store", "v1")):
        tasks = _running_tasks(manager, f"stack_{name}")
        assert len(tasks) == (2 if name == "front" else 1)
        for task in tasks:
            answer = _exec(
                _task_node(cluster, manager, task),
                task,
                ["sh", "-c", "printf 'GET /version HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 80"],
            )
            assert "200 OK" in answer
            assert answer.strip().endswith(version)


def test_update_paused_outside_hostcraft_is_rolled_back(
    cluster: Cluster, manager: docker.DockerClient
) -> None:
    from hostcraft.services.deployments import reconcile_paused_updates

    app = _create(cluster, _app(cluster, "paused"))
    first = _deploy(cluster, app["id"])
    assert first["status"] == "succeeded", first
    # An operator updates the service by hand with failure action "pause" and a task that exits.
    service = manager.api.inspect_service("apps_paused")
    spec = service["Spec"]
    spec["TaskTemplate"]["ContainerSpec"]["Args"] = ["sh", "-c", "exit 3"]
    spec["UpdateConfig"] = {
        **spec.get("UpdateConfig", {}),
        "FailureAction": "pause",
        "Monitor": 10_000_000_000,
    }
    url = manager.api._url("/services/{0}/update", service["ID"])
    manager.api._raise_for_status(
        manager.api._post_json(url, data=spec, params={"version": service["Version"]["Index"]})
    )
    wait_for(
        lambda: (
            (manager.api.inspect_service("apps_paused").get("UpdateStatus") or {}).get("State") == "paused"
        ),
        timeout=120,
        what="Swarm to pause the update",
    )

    assert reconcile_paused_updates(cluster.api.runtime) == ["apps_paused"]
    wait_for(
        lambda: manager.api.inspect_service("apps_paused")["UpdateStatus"]["State"] == "rollback_completed",
        timeout=120,
        what="the rollback to complete",
    )
    wait_for(
        lambda: _images(manager, "apps_paused") == [first["imageDigestReference"]],
        timeout=60,
        what="one task on the last good image",
    )
    events = cluster.api.get("/api/events", params={"action": "deployment.paused-rollback"}).json()
    assert events[0]["targetId"] == str(app["id"])
    assert "paused" in events[0]["reason"]
    alerts = cluster.api.get(
        "/api/alerts", params={"trigger": "deployment_failed", "applicationId": app["id"]}
    ).json()
    assert len(alerts) == 1
    assert alerts[0]["severity"] == "critical"
    assert "rolled the service back" in alerts[0]["message"]


def test_deployment_interrupted_by_restart_is_resumed(cluster: Cluster, manager: docker.DockerClient) -> None:
    from hostcraft.services.deployments import resume_interrupted_deployments
    from hostcraft.store.models import Deployment

    app = _create(cluster, _app(cluster, "resumed"))
    runtime = cluster.api.runtime
    with runtime.store.session() as session:
        stored = dict(cluster.api.get(f"/api/applications/{app['id']}").json())
        spec = {
            key: value
            for key, value in stored.items()
            if key
            not in (
                "id",
                "region",
                "regionId",
                "serviceId",
                "createdAt",
                "updatedAt",
                "lastDeployment",
                "lastSucceededDeployment",
            )
        }
        row = Deployment(
            application_id=app["id"],
            kind="deploy",
            status="running",
            spec=spec,
            image=spec["image"],
            actor="test",
        )
        session.add(row)
        session.flush()
        deployment_id = row.id
    blocked = cluster.api.post(f"/api/applications/{app['id']}/deploy")
    assert blocked.status_code == 409

    assert deployment_id in resume_interrupted_deployments(runtime)
    final = wait_for(
        lambda: (
            (d := cluster.api.get(f"/api/deployments/{deployment_id}").json())["status"]
            in ("succeeded", "failed", "rolled_back")
            and d
        ),
        timeout=180,
        what="the resumed deployment",
    )
    assert final["status"] == "succeeded", final
    assert len(_running_tasks(manager, "apps_resumed")) == 1
