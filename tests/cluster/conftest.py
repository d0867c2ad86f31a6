"""A HostCraft runtime on PostgreSQL whose region is the shared lab, with the swarm formed
through the API only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hostcraft.runtime import Runtime
from tests.conftest import Api, make_runtime
from tests.lab_fixtures import lab as lab
from tests.lab_fixtures import node_client, wait_for


class Cluster:
    """The API, the lab and the servers registered for its nodes."""

    def __init__(
        self, api: Api, lab: Any, region: dict[str, Any], servers: dict[str, dict[str, Any]]
    ) -> None:
        self.api = api
        self.lab = lab
        self.region = region
        self.servers = servers

    def server_id(self, node: str) -> int:
        return int(self.servers[node]["id"])

    def node(self, suffix: str) -> Any:
        return self.lab.node(f"{self.lab.name}-{suffix}")

    def report(self) -> dict[str, Any]:
        response = self.api.get(f"/api/regions/{self.region['id']}/cluster")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def manager_client(self) -> Any:
        """Return a Docker client to any manager whose engine responds."""
        for node in self.lab.nodes:
            if node.role != "manager":
                continue
            client = node_client(node)
            try:
                client.api.nodes()
                return client
            except Exception:
                client.close()
        raise AssertionError("no lab manager with quorum answered")


@pytest.fixture(scope="module")
def cluster(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for runtime in make_runtime("postgresql", Path(tmp_path_factory.mktemp("cluster"))):
        yield from _form(runtime, lab)


def _form(runtime: Runtime, lab: Any) -> Iterator[Cluster]:
    from hostcraft.lab import node_running, start_node

    for node in lab.nodes:
        if not node_running(lab, node.name):
            start_node(lab, node.name)
    _reset_swarm(lab)
    api = Api(runtime)
    region = api.post("/api/regions", {"name": "Lab", "code": "lab", "priority": 1}).json()
    servers: dict[str, dict[str, Any]] = {}
    for node in lab.nodes:
        response = api.post(
            "/api/servers", {"name": node.name, "endpoint": node.endpoint, "regionId": region["id"]}
        )
        assert response.status_code == 201, response.text
        servers[node.name] = response.json()
    first = lab.nodes[0]
    init = api.post(
        f"/api/servers/{servers[first.name]['id']}/swarm/init",
        {"advertiseAddress": first.address, "managerCount": 3, "dispatcherHeartbeatSeconds": 1},
    )
    assert init.status_code == 200, init.text
    for node in lab.nodes[1:]:
        joined = api.post(
            f"/api/servers/{servers[node.name]['id']}/swarm/join", {"asManager": node.role == "manager"}
        )
        assert joined.status_code == 200, joined.text
    cluster = Cluster(api, lab, region, servers)
    wait_for(
        lambda: cluster.report()["status"] == "healthy", timeout=60, what="the formed cluster to be healthy"
    )
    yield cluster
    api.client.close()


def _reset_swarm(lab: Any) -> None:
    """Make every lab engine leave any swarm an earlier test module formed."""
    for node in lab.nodes:
        client = node_client(node)
        try:
            if client.info()["Swarm"]["LocalNodeState"] != "inactive":
                client.api.leave_swarm(force=True)
        finally:
            client.close()
