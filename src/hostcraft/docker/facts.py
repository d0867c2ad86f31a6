"""Facts read from one Docker engine: identity, swarm membership, resources, peer reachability.

Resources and peer reachability are measured *on the node* by a short-lived probe container
(the probe image, see ``probe.py``): ``df`` of the engine's data root, ``/proc/meminfo``, and a
TCP connect to every peer. The Engine API alone reports neither free disk nor free memory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors

from hostcraft.docker.probe import ensure_probe_image

logger = logging.getLogger(__name__)

SWARM_MANAGEMENT_PORT = 2377
SWARM_GOSSIP_PORT = 7946

# Fixed script, no user input: peers arrive through the PEERS environment variable.
_PROBE_SCRIPT = r"""
df -Pk /engine-root | tail -n 1 | while read fs total used avail rest; do
  echo "disk $total $avail"
done
grep -E '^(MemTotal|MemAvailable):' /proc/meminfo | while read name value unit; do
  echo "mem $name $value"
done
for peer in $PEERS; do
  if nc -w 2 "${peer%:*}" "${peer##*:}" </dev/null >/dev/null 2>&1; then
    echo "peer $peer ok"
  else
    echo "peer $peer fail"
  fi
done
"""


@dataclass
class EngineFacts:
    engine_version: str
    api_version: str
    os: str
    cpus: int
    memory_bytes: int
    data_root: str
    swarm_state: str
    swarm_node_id: str | None
    swarm_role: str | None
    swarm_availability: str | None
    swarm_cluster_id: str | None
    swarm_node_address: str | None
    swarm_error: str | None
    remote_managers: list[str] = field(default_factory=list)


@dataclass
class SwarmView:
    """Swarm membership of a node, as the node itself reports it."""

    local_state: str
    node_id: str | None = None
    role: str | None = None
    node_state: str | None = None
    availability: str | None = None
    manager_reachability: str | None = None
    error: str | None = None
    peers: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "localState": self.local_state,
            "nodeId": self.node_id,
            "role": self.role,
            "nodeState": self.node_state,
            "availability": self.availability,
            "managerReachability": self.manager_reachability,
            "error": self.error,
        }


@dataclass
class Resources:
    cpus: int | None = None
    memory_total_bytes: int | None = None
    memory_available_bytes: int | None = None
    disk_total_bytes: int | None = None
    disk_free_bytes: int | None = None
    data_root: str | None = None
    measured: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpus": self.cpus,
            "memoryTotalBytes": self.memory_total_bytes,
            "memoryAvailableBytes": self.memory_available_bytes,
            "diskTotalBytes": self.disk_total_bytes,
            "diskFreeBytes": self.disk_free_bytes,
            "dataRoot": self.data_root,
            "measured": self.measured,
            "error": self.error,
        }


@dataclass
class PeerResult:
    address: str
    reachable: bool
    node_id: str | None = None
    hostname: str | None = None


def read_engine_facts(client: docker.DockerClient) -> EngineFacts:
    info = client.info()
    version = client.version()
    swarm = info.get("Swarm") or {}
    node_id = swarm.get("NodeID") or None
    is_manager = bool(swarm.get("ControlAvailable"))
    availability = None
    node_address = swarm.get("NodeAddr") or None
    if node_id and is_manager:
        try:
            node = client.api.inspect_node(node_id)
            availability = node["Spec"].get("Availability")
        except docker.errors.APIError as exc:
            logger.warning("failed to inspect own swarm node", extra={"node_id": node_id, "error": str(exc)})
    cluster = swarm.get("Cluster") or {}
    return EngineFacts(
        engine_version=version.get("Version", "unknown"),
        api_version=version.get("ApiVersion", "unknown"),
        os=(
            f"{info.get('OperatingSystem', 'unknown')} "
            f"({info.get('KernelVersion', '?')}, {info.get('Architecture', '?')})"
        ),
        cpus=int(info.get("NCPU") or 0),
        memory_bytes=int(info.get("MemTotal") or 0),
        data_root=info.get("DockerRootDir") or "/var/lib/docker",
        swarm_state=swarm.get("LocalNodeState") or "inactive",
        swarm_node_id=node_id,
        swarm_role=_role(node_id, is_manager),
        swarm_availability=availability,
        swarm_cluster_id=cluster.get("ID") or None,
        swarm_node_address=node_address,
        swarm_error=swarm.get("Error") or None,
        remote_managers=[m.get("Addr", "") for m in swarm.get("RemoteManagers") or [] if m.get("Addr")],
    )


def _role(node_id: str | None, is_manager: bool) -> str | None:
    if not node_id:
        return None
    return "manager" if is_manager else "worker"


def read_swarm_view(client: docker.DockerClient, facts: EngineFacts) -> SwarmView:
    """Describe the node's membership; managers also list the other nodes as peers."""
    view = SwarmView(
        local_state=facts.swarm_state,
        node_id=facts.swarm_node_id,
        role=facts.swarm_role,
        availability=facts.swarm_availability,
        error=facts.swarm_error,
    )
    if facts.swarm_role != "manager" or not facts.swarm_node_id:
        view.peers = [
            {"address": addr, "port": int(addr.rsplit(":", 1)[1]) if ":" in addr else SWARM_MANAGEMENT_PORT}
            for addr in facts.remote_managers
        ]
        return view
    try:
        nodes = client.api.nodes()
    except docker.errors.APIError as exc:
        # A manager without quorum cannot list nodes; that itself is a finding.
        view.error = f"failed to list swarm nodes: {exc.explanation or exc}"
        view.peers = [{"address": addr} for addr in facts.remote_managers]
        return view
    for node in nodes:
        status = node.get("Status") or {}
        manager_status = node.get("ManagerStatus") or {}
        if node["ID"] == facts.swarm_node_id:
            view.node_state = status.get("State")
            view.manager_reachability = manager_status.get("Reachability")
            continue
        address = status.get("Addr")
        if not address or address == "0.0.0.0":  # noqa: S104 - an address Swarm reports, not a bind
            address = (manager_status.get("Addr") or ":").rsplit(":", 1)[0] or None
        if address:
            view.peers.append(
                {
                    "address": f"{address}:{SWARM_GOSSIP_PORT}",
                    "nodeId": node["ID"],
                    "hostname": (node.get("Description") or {}).get("Hostname"),
                    "swarmState": status.get("State"),
                }
            )
    return view


def measure_on_node(
    client: docker.DockerClient,
    *,
    probe_image: str,
    data_root: str,
    peers: list[str],
    timeout: float = 30.0,
) -> tuple[Resources, dict[str, bool]]:
    """Run the probe container on the node; return its resources and peer reachability."""
    resources = Resources(data_root=data_root)
    ensure_probe_image(client, probe_image)
    container = client.containers.create(
        probe_image,
        command=["sh", "-c", _PROBE_SCRIPT],
        environment={"PEERS": " ".join(peers)},
        volumes={data_root: {"bind": "/engine-root", "mode": "ro"}},
        network_mode="host",
        labels={"io.hostcraft.role": "probe"},
        mem_limit="32m",
    )
    try:
        container.start()
        deadline = time.monotonic() + timeout
        result = container.wait(timeout=max(1, int(deadline - time.monotonic())))
        output = container.logs(stdout=True, stderr=False).decode(errors="replace")
    finally:
        container.remove(force=True)
    if result.get("StatusCode") not in (0, None):
        resources.error = f"probe exited with {result.get('StatusCode')}"
    reachability: dict[str, bool] = {}
    for line in output.splitlines():
        parts = line.split()
        if parts[:1] == ["disk"] and len(parts) == 3:
            resources.disk_total_bytes = int(parts[1]) * 1024
            resources.disk_free_bytes = int(parts[2]) * 1024
        elif parts[:1] == ["mem"] and len(parts) == 3:
            value = int(parts[2]) * 1024
            if parts[1] == "MemTotal:":
                resources.memory_total_bytes = value
            elif parts[1] == "MemAvailable:":
                resources.memory_available_bytes = value
        elif parts[:1] == ["peer"] and len(parts) == 3:
            reachability[parts[1]] = parts[2] == "ok"
    resources.measured = (
        resources.disk_free_bytes is not None and resources.memory_available_bytes is not None
    )
    if not resources.measured and resources.error is None:
        resources.error = "probe output had no disk or memory figures"
    return resources, reachability
