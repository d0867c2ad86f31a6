"""Cluster operations on the real lab (3 managers + 2 workers), formed through the API only.

This kernel has no IPVS, so services use ``dnsrr`` endpoints and clients run inside the lab on
the overlay network (see the README's testing section). Tests run in file order: the chaos tests
at the end kill, stop and partition nodes, and restore them before they finish.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from docker.types import EndpointSpec, ServiceMode

from tests.cluster.conftest import Cluster
from tests.lab_fixtures import node_client, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.docker]

NETWORK = "hc-test"

# A client that requests the service every 100 ms and prints one line per request.
PROBE_SCRIPT = r"""
while true; do
  if printf 'GET /version HTTP/1.0\r\n\r\n' | nc -w 2 "$TARGET" 80 2>/dev/null | grep -q '200 OK'; then
    echo "ok"
  else
    echo "fail $(date +%s)"
  fi
  usleep 100000
done
"""


def _node_row(report: dict[str, Any], hostname: str) -> dict[str, Any]:
    return next(row for row in report["nodes"] if row["hostname"] == hostname)


def test_formed_cluster_reports_quorum_and_leader(cluster: Cluster) -> None:
    report = cluster.report()
    assert report["status"] == "healthy"
    assert report["managers"] == {"total": 3, "reachable": 3, "quorum": 2, "faultTolerance": 1, "target": 3}
    assert report["workers"] == {"total": 2, "ready": 2}
    assert report["leader"]["hostname"] == cluster.lab.nodes[0].name
    assert report["source"] == "swarm"
    assert {row["hostname"] for row in report["nodes"]} == {node.name for node in cluster.lab.nodes}
    assert all(row["serverName"] == row["hostname"] for row in report["nodes"])
    assert any("failure domain" in advice for advice in report["advice"])
    servers = cluster.api.get("/api/servers").json()
    assert {s["swarm"]["role"] for s in servers} == {"manager", "worker"}
    assert len({s["swarm"]["clusterId"] for s in servers if s["swarm"]["role"] == "manager"}) == 1


def test_cluster_operations_write_events(cluster: Cluster) -> None:
    events = cluster.api.get("/api/events", params={"targetType": "server", "limit": 200}).json()
    joins = [e for e in events if e["action"] == "swarm.join" and e["outcome"] == "succeeded"]
    inits = [e for e in events if e["action"] == "swarm.init" and e["outcome"] == "succeeded"]
    assert len(inits) == 1
    assert len(joins) == 4
    assert all(e["actor"] == "token:test-admin" for e in joins + inits)


def test_join_tokens_are_admin_only_and_never_in_events(cluster: Cluster) -> None:
    path = f"/api/regions/{cluster.region['id']}/swarm/join-tokens"
    assert cluster.api.get(path, role="operator").status_code == 403
    tokens = cluster.api.get(path).json()
    assert tokens["worker"].startswith("SWMTKN-1-")
    assert tokens["manager"].startswith("SWMTKN-1-")
    events = cluster.api.get("/api/events", params={"limit": 1000}).text
    assert tokens["worker"] not in events
    assert tokens["manager"] not in events


def test_demote_refused_when_it_leaves_two_managers(cluster: Cluster) -> None:
    m2 = cluster.node("m2")
    response = cluster.api.post(f"/api/servers/{cluster.server_id(m2.name)}/demote")
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "quorum_guard"
    assert error["message"].startswith(
        f"3 managers, quorum 2: demoting {m2.name} leaves 2 managers, which tolerates 0 failures"
    )
    assert _node_row(cluster.report(), m2.name)["role"] == "manager"
    refused = cluster.api.get("/api/events", params={"action": "swarm.demote"}).json()[0]
    assert refused["outcome"] == "refused"
    assert refused["details"]["managersAfter"] == 2


def test_promote_to_four_then_demote_back_to_three(cluster: Cluster) -> None:
    w2 = cluster.node("w2")
    promoted = cluster.api.post(f"/api/servers/{cluster.server_id(w2.name)}/swarm/promote")
    assert promoted.status_code == 200, promoted.text
    report = cluster.report()
    assert report["managers"]["total"] == 4
    assert report["status"] == "degraded"
    assert any(advice.startswith("even number of managers (4)") for advice in report["advice"])

    demoted = cluster.api.post(f"/api/servers/{cluster.server_id(w2.name)}/swarm/demote")
    assert demoted.status_code == 200, demoted.text
    assert "which tolerates 1 failure" in demoted.json()["details"]["guard"]
    wait_for(lambda: cluster.report()["status"] == "healthy", timeout=30, what="three managers again")
    assert _node_row(cluster.report(), w2.name)["role"] == "worker"


@pytest.fixture
def overlay(cluster: Cluster) -> Iterator[str]:
    client = cluster.manager_client()
    if not client.networks.list(names=[NETWORK]):
        client.networks.create(NETWORK, driver="overlay", attachable=True)
    yield NETWORK
    client.close()


def _create_web(
    client: docker.DockerClient, cluster: Cluster, name: str, *, replicas: int, constraints: list[str]
) -> Any:
    return client.services.create(
        cluster.lab.images()["webapp:v1"],
        name=name,
        mode=ServiceMode("replicated", replicas=replicas),
        constraints=constraints,
        networks=[NETWORK],
        endpoint_spec=EndpointSpec(mode="dnsrr"),
    )


def _running_nodes(client: docker.DockerClient, service: str) -> list[str]:
    tasks = client.api.tasks(filters={"service": service, "desired-state": "running"})
    node_names = {n["ID"]: n["Description"]["Hostname"] for n in client.api.nodes()}
    return sorted(node_names[t["NodeID"]] for t in tasks if t["Status"]["State"] == "running")


class Prober:
    """A busybox container on a manager that requests a service every 100 ms."""

    def __init__(self, cluster: Cluster, target: str) -> None:
        self.client = node_client(cluster.node("m1"))
        self.container = self.client.containers.run(
            cluster.lab.images()["busybox"],
            ["sh", "-c", PROBE_SCRIPT],
            environment={"TARGET": target},
            network=NETWORK,
            detach=True,
            name=f"prober-{target}",
        )

    def counts(self) -> tuple[int, list[str]]:
        lines = self.container.logs().decode().splitlines()
        return lines.count("ok"), [line for line in lines if line.startswith("fail")]

    def stop(self) -> None:
        self.container.remove(force=True)
        self.client.close()


def test_drain_keeps_every_replica_serving(cluster: Cluster, overlay: str) -> None:
    """Scenario: both replicas end up on worker 2; draining it must fail no request."""
    client = cluster.manager_client()
    w1, w2 = cluster.node("w1"), cluster.node("w2")
    _create_web(client, cluster, "web-c01", replicas=2, constraints=["node.role==worker"])
    try:
        wait_for(lambda: len(_running_nodes(client, "web-c01")) == 2, timeout=90, what="two web replicas")
        assert cluster.api.post(f"/api/servers/{cluster.server_id(w1.name)}/drain").status_code == 200
        assert _running_nodes(client, "web-c01") == [w2.name, w2.name]
        assert cluster.api.post(f"/api/servers/{cluster.server_id(w1.name)}/activate").status_code == 200

        prober = Prober(cluster, "web-c01")
        try:
            wait_for(lambda: prober.counts()[0] >= 10, timeout=30, what="the prober to reach the service")
            drained = cluster.api.post(f"/api/servers/{cluster.server_id(w2.name)}/drain")
            assert drained.status_code == 200, drained.text
            time.sleep(2)
            ok, failures = prober.counts()
        finally:
            prober.stop()
        assert failures == [], f"{len(failures)} failed requests of {ok + len(failures)}"
        assert ok >= 20
        assert _running_nodes(client, "web-c01") == [w1.name, w1.name]
        service = client.services.get("web-c01")
        assert service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
        plan = drained.json()["details"]["services"]
        assert plan == [
            {
                "service": "web-c01",
                "replicas": 2,
                "tasksOnNode": 2,
                "tasksElsewhere": 0,
                "surge": 2,
                "eligibleNodes": [w1.name],
            }
        ]
    finally:
        cluster.api.post(f"/api/servers/{cluster.server_id(w2.name)}/activate")
        client.services.get("web-c01").remove()
        client.close()


def test_drain_refused_when_service_has_nowhere_to_go(cluster: Cluster, overlay: str) -> None:
    client = cluster.manager_client()
    w1 = cluster.node("w1")
    _create_web(client, cluster, "web-pinned", replicas=1, constraints=[f"node.hostname=={w1.name}"])
    try:
        wait_for(
            lambda: _running_nodes(client, "web-pinned") == [w1.name], timeout=90, what="the pinned replica"
        )
        response = cluster.api.post(f"/api/servers/{cluster.server_id(w1.name)}/drain")
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert "web-pinned" in error["message"]
        assert error["details"]["services"][0].startswith("web-pinned (1 replica(s), 1 on this node)")
        assert _node_row(cluster.report(), w1.name)["availability"] == "active"
        assert _running_nodes(client, "web-pinned") == [w1.name]
    finally:
        client.services.get("web-pinned").remove()
        client.close()


def test_worker_leaves_and_rejoins_through_api(cluster: Cluster) -> None:
    w2 = cluster.node("w2")
    server_id = cluster.server_id(w2.name)
    left = cluster.api.post(f"/api/servers/{server_id}/swarm/leave")
    assert left.status_code == 200, left.text
    assert left.json()["details"]["nodeEntryRemoved"] is True
    report = cluster.report()
    assert w2.name not in {row["hostname"] for row in report["nodes"]}
    assert cluster.api.get(f"/api/servers/{server_id}").json()["swarm"]["state"] == "inactive"

    joined = cluster.api.post(f"/api/servers/{server_id}/swarm/join", {"asManager": False})
    assert joined.status_code == 200, joined.text
    wait_for(
        lambda: cluster.report()["workers"] == {"total": 2, "ready": 2}, timeout=60, what="w2 back as worker"
    )


@pytest.mark.chaos
def test_partitioned_worker_reported_down_then_ready(cluster: Cluster) -> None:
    from hostcraft.lab import heal_node, partition_node

    w1 = cluster.node("w1")
    partition_node(cluster.lab, w1.name)
    try:
        report = wait_for(
            lambda: (r := cluster.report()) and _node_row(r, w1.name)["state"] == "down" and r,
            timeout=60,
            what="the partitioned worker to be reported down",
        )
        assert report["status"] == "degraded"
        assert any(f"worker {w1.name} is down" in advice for advice in report["advice"])
    finally:
        heal_node(cluster.lab, w1.name)
    wait_for(
        lambda: _node_row(cluster.report(), w1.name)["state"] == "ready",
        timeout=90,
        what="the healed worker to be ready again",
    )


@pytest.mark.chaos
def test_leader_crash_elects_new_leader_and_report_keeps_answering(cluster: Cluster) -> None:
    from hostcraft.lab import kill_node, start_node

    old_leader = cluster.report()["leader"]["hostname"]
    seen: list[str] = []

    def report_and_remember() -> dict[str, Any]:
        current = cluster.report()
        seen.append(current["status"])
        return current

    kill_node(cluster.lab, old_leader)
    try:
        report = wait_for(
            lambda: (
                (r := report_and_remember())
                and r["leader"]
                and r["leader"]["hostname"] != old_leader
                and _node_row(r, old_leader)["reachability"] == "unreachable"
                and r
            ),
            timeout=90,
            what="a new leader and the old one unreachable",
        )
        assert report["via"] != old_leader
        assert report["status"] == "at_risk"
        assert report["managers"]["reachable"] == 2
        # Two of three managers keep quorum: an election is never reported as lost quorum.
        assert "quorum_lost" not in seen
    finally:
        start_node(cluster.lab, old_leader)
    wait_for(lambda: cluster.report()["status"] == "healthy", timeout=120, what="the cluster healthy again")


@pytest.mark.chaos
def test_quorum_loss_blocks_writes_while_service_keeps_serving(cluster: Cluster, overlay: str) -> None:
    from hostcraft.lab import kill_node, start_node

    client = cluster.manager_client()
    w1 = cluster.node("w1")
    client.services.create(
        cluster.lab.images()["webapp:v1"],
        name="web-quorum",
        constraints=[f"node.hostname=={w1.name}"],
        endpoint_spec=EndpointSpec(ports={18081: (80, "tcp", "host")}),
    )
    client.close()
    import httpx

    url = f"http://{w1.address}:18081/version"
    wait_for(lambda: httpx.get(url, timeout=2).status_code == 200, timeout=90, what="the service to answer")

    report = cluster.report()
    victims = [row["hostname"] for row in report["nodes"] if row["role"] == "manager"][:2]
    for victim in victims:
        kill_node(cluster.lab, victim)
    try:
        lost = wait_for(
            lambda: (r := cluster.report())["status"] == "quorum_lost" and r,
            timeout=90,
            what="quorum_lost to be reported",
        )
        assert lost["managers"]["reachable"] == 1
        write = cluster.api.post(f"/api/servers/{cluster.server_id(w1.name)}/drain")
        assert write.status_code == 503, write.text
        assert write.json()["error"]["code"] == "quorum_lost"
        promote = cluster.api.post(f"/api/servers/{cluster.server_id(cluster.node('w2').name)}/swarm/promote")
        assert promote.status_code == 503
        for _ in range(10):
            assert httpx.get(url, timeout=2).status_code == 200
            time.sleep(0.2)
    finally:
        for victim in victims:
            start_node(cluster.lab, victim)
    wait_for(lambda: cluster.report()["status"] == "healthy", timeout=120, what="quorum restored")
    cleanup = cluster.manager_client()
    cleanup.services.get("web-quorum").remove()
    cleanup.close()


@pytest.mark.chaos
def test_force_new_cluster_recovers_writes_from_a_survivor(cluster: Cluster) -> None:
    """Two managers are gone for good: re-form the swarm from the survivor, keeping services."""
    from hostcraft.lab import kill_node, start_node

    client = cluster.manager_client()
    client.services.create(
        cluster.lab.images()["webapp:v1"],
        name="web-survives",
        constraints=["node.role==worker"],
        endpoint_spec=EndpointSpec(mode="dnsrr"),
    )
    client.close()
    m1, m2, m3 = cluster.node("m1"), cluster.node("m2"), cluster.node("m3")
    for victim in (m2, m3):
        kill_node(cluster.lab, victim.name)
    try:
        wait_for(lambda: cluster.report()["status"] == "quorum_lost", timeout=90, what="quorum_lost")
        reformed = cluster.api.post(
            f"/api/servers/{cluster.server_id(m1.name)}/swarm/init",
            {"advertiseAddress": m1.address, "forceNewCluster": True},
        )
        assert reformed.status_code == 200, reformed.text
        report = wait_for(
            lambda: (r := cluster.report())["managers"]["reachable"] == 1 and r,
            timeout=60,
            what="the re-formed single-manager cluster",
        )
        assert report["managers"]["total"] == 1
        assert report["managers"]["quorum"] == 1
        assert report["status"] == "at_risk"
        assert report["leader"]["hostname"] == m1.name
        assert any(
            f"{m2.name} is set to be a manager but is not a Raft member" in a for a in report["advice"]
        )
        survivor = node_client(m1)
        assert survivor.services.get("web-survives").name == "web-survives"
        survivor.close()
    finally:
        for victim in (m2, m3):
            start_node(cluster.lab, victim.name)


@pytest.mark.chaos
def test_dead_worker_is_removed_with_force(cluster: Cluster) -> None:
    from hostcraft.lab import kill_node, start_node

    w2 = cluster.node("w2")
    server_id = cluster.server_id(w2.name)
    other = cluster.api.post("/api/regions", {"name": "Other", "code": "other", "priority": 2}).json()
    moved = cluster.api.put(f"/api/servers/{server_id}", {"regionId": other["id"]})
    assert moved.status_code == 409
    assert "leave the swarm before moving it" in moved.json()["error"]["message"]
    kill_node(cluster.lab, w2.name)
    try:
        refused = cluster.api.post(f"/api/servers/{server_id}/swarm/leave")
        assert refused.status_code == 503
        assert "pass force=true" in refused.json()["error"]["message"]
        removed = cluster.api.post(f"/api/servers/{server_id}/swarm/leave", {"force": True})
        assert removed.status_code == 200, removed.text
        assert w2.name not in {row["hostname"] for row in cluster.report()["nodes"]}
    finally:
        start_node(cluster.lab, w2.name)
