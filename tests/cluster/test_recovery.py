"""The recovery ladder on the real lab: restart, move off a failing node, roll back, give up.

Each test runs HostCraft's probe engine with recovery on, against apps deployed through the
API. A failing health check is made with the lab web app's own switches: a flag file in
/data makes /cgi-bin/health return 500, and a start command can create it on chosen nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest
from sqlalchemy import select

from hostcraft.engine.probes import ProbeEngine
from hostcraft.store.models import Alert, Incident, RecoveryAction
from tests.cluster.conftest import Cluster
from tests.cluster.test_apps import _create, _deploy, _running_tasks
from tests.lab_fixtures import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.docker]

FAST_RECOVERY = {"stepTimeoutSeconds": 15, "cooldownSeconds": 0, "maxActionsPerHour": 10}
FLAG_ON_START = "mkdir -p /data && : > /data/unhealthy; exec /app/run"
FLAG_ON_NODE_LATER = (
    'mkdir -p /data; if [ "$NODE" = "$SICK_NODE" ]; then (sleep 12; : > /data/unhealthy) & fi; exec /app/run'
)
# Three misses in a row, each given 1.5 s: on a loaded machine a single slow check must not make
# a healthy task unhealthy, or failures spread over both nodes and the move finds no failing node.
HEALTHY_FILE_CHECK = {
    "test": ["CMD-SHELL", "test ! -e /data/unhealthy"],
    "intervalSeconds": 2,
    "timeoutSeconds": 1.5,
    "retries": 3,
    "startPeriodSeconds": 0,
}


@pytest.fixture
def probes(cluster: Cluster) -> Iterator[ProbeEngine]:
    runtime = cluster.api.runtime
    runtime.settings.probe_refresh_seconds = 1
    runtime.settings.recovery_interval_seconds = 1
    engine = ProbeEngine(runtime, recovery=True)
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture
def manager(cluster: Cluster) -> Iterator[docker.DockerClient]:
    client = cluster.manager_client()
    yield client
    client.close()


def web_app(cluster: Cluster, name: str, *, port: int, node: str, **overrides: Any) -> dict[str, Any]:
    """A one-replica web app pinned to ``node`` and probed on that node's host-mode port."""
    address = cluster.node(node).address
    document = {
        "name": name,
        "project": "recovery",
        "region": cluster.region["code"],
        "image": cluster.lab.images()["webapp:v1"],
        "replicas": 1,
        "ports": [{"target": 80, "published": port, "mode": "host"}],
        "placement": {"constraints": [f"node.hostname=={cluster.lab.name}-{node}"]},
        "healthCheckUrl": f"http://{address}:{port}/cgi-bin/health",
        "healthCheckIntervalSeconds": 1,
        "healthCheckTimeoutSeconds": 0.8,
        "maxConsecutiveFailures": 2,
        "healthProbe": {"successesToResolve": 2},
        "recovery": FAST_RECOVERY,
    }
    document.update(overrides)
    return document


def incidents(cluster: Cluster, app_id: int) -> list[Incident]:
    with cluster.api.runtime.store.session() as session:
        return list(
            session.scalars(select(Incident).where(Incident.application_id == app_id).order_by(Incident.id))
        )


def rungs(cluster: Cluster, app_id: int) -> list[str]:
    with cluster.api.runtime.store.session() as session:
        actions = session.scalars(
            select(RecoveryAction).where(RecoveryAction.application_id == app_id).order_by(RecoveryAction.id)
        )
        return [action.rung for action in actions]


def alerts(cluster: Cluster, app_id: int, trigger: str) -> list[Alert]:
    with cluster.api.runtime.store.session() as session:
        query = select(Alert).where(Alert.application_id == app_id, Alert.trigger == trigger)
        return list(session.scalars(query))


def resolved(cluster: Cluster, app_id: int) -> bool:
    found = incidents(cluster, app_id)
    return bool(found) and all(incident.status == "resolved" for incident in found)


def test_failing_app_is_restarted(
    cluster: Cluster, probes: ProbeEngine, manager: docker.DockerClient
) -> None:
    app = _create(cluster, web_app(cluster, "restarted", port=18101, node="w1"))
    assert _deploy(cluster, app["id"])["status"] == "succeeded"
    url = app["healthCheckUrl"]
    wait_for(lambda: httpx.get(url, timeout=2).status_code == 200, timeout=60, what="the app to serve")
    first_task = _running_tasks(manager, "recovery_restarted")[0]["ID"]

    assert httpx.get(url + "?state=unhealthy", timeout=2).status_code == 500
    wait_for(lambda: incidents(cluster, app["id"]), timeout=30, what="an incident to open")
    wait_for(lambda: resolved(cluster, app["id"]), timeout=120, what="the restart to fix the app")

    assert rungs(cluster, app["id"]) == ["restart"]
    assert _running_tasks(manager, "recovery_restarted")[0]["ID"] != first_task
    assert httpx.get(url, timeout=2).status_code == 200
    assert len(alerts(cluster, app["id"], "recovery_action")) == 1
    health_alerts = alerts(cluster, app["id"], "service_health_failure")
    assert [alert.status for alert in health_alerts] == ["resolved"]


def test_failures_on_one_node_end_off_that_node(
    cluster: Cluster, probes: ProbeEngine, manager: docker.DockerClient
) -> None:
    sick = f"{cluster.lab.name}-w1"
    document = {
        "name": "moved",
        "project": "recovery",
        "region": cluster.region["code"],
        "image": cluster.lab.images()["webapp:v1"],
        "replicas": 2,
        "endpointMode": "dnsrr",
        "command": ["sh", "-c", FLAG_ON_NODE_LATER],
        "env": {"NODE": "{{.Node.Hostname}}", "SICK_NODE": sick},
        "healthcheck": HEALTHY_FILE_CHECK,
        "placement": {"constraints": ["node.role==worker"]},
        "healthCheckIntervalSeconds": 2,
        "healthCheckTimeoutSeconds": 1,
        "maxConsecutiveFailures": 2,
        "healthProbe": {"successesToResolve": 2},
        "recovery": FAST_RECOVERY,
    }
    app = _create(cluster, document)
    # Every task starts healthy, so the deployment succeeds; on the sick node each task turns
    # unhealthy a few seconds later and Swarm replaces it there again: a restart loop on one node.
    assert _deploy(cluster, app["id"])["status"] == "succeeded"
    sick_id = next(node["ID"] for node in manager.api.nodes() if node["Description"]["Hostname"] == sick)

    # Swarm's scheduler itself avoids a node where tasks of the service failed often in the last
    # minutes, so the restart may already place both tasks on the healthy worker. Either way the
    # ladder must end with no task on the sick node, and a move must exclude that node by id.
    wait_for(
        lambda: (taken := rungs(cluster, app["id"])) and ("move" in taken or resolved(cluster, app["id"])),
        timeout=300,
        what="the ladder to restart or move the app",
    )
    wait_for(lambda: resolved(cluster, app["id"]), timeout=120, what="the app to recover")
    taken = rungs(cluster, app["id"])
    assert taken in (["restart"], ["restart", "move"])
    if "move" in taken:
        service = manager.api.inspect_service("recovery_moved")
        assert f"node.id!={sick_id}" in service["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
    # The incident can resolve while the rollout still stops the last old task on the sick node.
    running = wait_for(
        lambda: (
            len(tasks := _running_tasks(manager, "recovery_moved")) == 2
            and all(task["NodeID"] != sick_id for task in tasks)
            and tasks
        ),
        timeout=120,
        what="two running tasks, none on the sick node",
    )
    assert len(running) == 2


def test_deployment_that_breaks_health_is_rolled_back(
    cluster: Cluster, probes: ProbeEngine, manager: docker.DockerClient
) -> None:
    document = web_app(cluster, "rolledback", port=18102, node="w2")
    app = _create(cluster, document)
    good = _deploy(cluster, app["id"])
    assert good["status"] == "succeeded"
    url = document["healthCheckUrl"]
    wait_for(lambda: httpx.get(url, timeout=2).status_code == 200, timeout=60, what="the app to serve")

    broken = {**document, "command": ["sh", "-c", FLAG_ON_START]}
    assert cluster.api.put(f"/api/applications/{app['id']}", broken).status_code == 200
    bad = _deploy(cluster, app["id"])
    assert bad["status"] == "succeeded"  # no container healthcheck, so Swarm finds nothing wrong

    wait_for(lambda: "rollback" in rungs(cluster, app["id"]), timeout=180, what="the ladder to roll back")
    wait_for(lambda: resolved(cluster, app["id"]), timeout=180, what="the app to recover after the rollback")
    assert rungs(cluster, app["id"]) == ["restart", "rollback"]
    assert incidents(cluster, app["id"])[0].began_after_deployment is True
    service = manager.api.inspect_service("recovery_rolledback")
    assert "Args" not in service["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert httpx.get(url, timeout=2).status_code == 200


def test_unrecoverable_app_alerts_recovery_failed_once(
    cluster: Cluster, probes: ProbeEngine, manager: docker.DockerClient
) -> None:
    document = web_app(cluster, "hopeless", port=18103, node="w1", command=["sh", "-c", FLAG_ON_START])
    app = _create(cluster, document)
    assert _deploy(cluster, app["id"])["status"] == "succeeded"

    wait_for(
        lambda: alerts(cluster, app["id"], "recovery_failed"), timeout=180, what="the recovery failed alert"
    )
    # The ladder stops: more probe failures and ticks add no second alert and no more actions.
    actions = rungs(cluster, app["id"])
    wait_for(lambda: len(probes.stats.lags) > 0, timeout=5, what="probes to run")
    import time

    time.sleep(8)
    assert len(alerts(cluster, app["id"], "recovery_failed")) == 1
    assert rungs(cluster, app["id"]) == actions == ["restart"]
    incident = incidents(cluster, app["id"])[0]
    assert incident.status == "open"
    assert incident.recovery_status == "failed"
    assert cluster.api.delete(f"/api/applications/{app['id']}").status_code == 204
