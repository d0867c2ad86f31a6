"""Tests of the local multi-node lab: real engines, swarm, registry and kernel objects.

The tests marked ``lab`` need root on Linux. They share one lab of 1 manager and 1 worker
and bring up a second lab to check that two labs run side by side and that ``lab_down``
leaves nothing behind. HTTP goes only to the labs' own node addresses.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from docker.types import EndpointSpec, ServiceMode

from hostcraft.errors import LabError
from hostcraft.lab import (
    Lab,
    LabNode,
    build_images,
    heal_node,
    kill_node,
    lab_down,
    lab_up,
    leftovers,
    node_client,
    node_running,
    partition_node,
    start_node,
    stop_node,
)
from hostcraft.lab.allocation import parse_subnet, pick_default_subnet, pick_index
from hostcraft.lab.engine import engine_pid, node_processes, shim_sockets
from hostcraft.lab.state import lab_data_dir, lab_run_dir, lock_path, state_path

LAB_NAME = "hxlab"
LAB_SUBNET = "10.77.201.0/24"
SECOND_LAB_NAME = "hxdown"
SECOND_LAB_SUBNET = "10.77.202.0/24"
WEBAPP_PORT = 18080
SWARM_TIMEOUT = 60.0

on_lab_host = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="the lab needs root on Linux",
)


def wait_until(condition: Callable[[], bool], *, timeout: float, message: str) -> float:
    """Poll ``condition`` until it is true and return the seconds it took; fail on timeout."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting until {message}")
        time.sleep(0.3)
    return time.monotonic() - started


def http_client() -> httpx.Client:
    return httpx.Client(timeout=2.0, trust_env=False)


def fetch_version(node: LabNode) -> str | None:
    """Return the web app's /version on the node, or None if the request fails."""
    try:
        with http_client() as client:
            response = client.get(f"http://{node.address}:{WEBAPP_PORT}/version")
    except httpx.HTTPError:
        return None
    return response.text.strip() if response.status_code == 200 else None


def version_is(node: LabNode, expected: str) -> bool:
    return fetch_version(node) == expected


def swarm_state(lab: Lab, node: LabNode) -> str | None:
    """Return the node's state (``ready``, ``down``, ...) as reported by the first manager."""
    client = node_client(lab.managers[0], timeout=10)
    try:
        for swarm_node in client.nodes.list():
            if swarm_node.attrs["Description"]["Hostname"] == node.name:
                return str(swarm_node.attrs["Status"]["State"])
    finally:
        client.close()
    return None


def live_processes_mentioning(text: str) -> list[str]:
    """Return non-zombie processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            arguments = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        zombie = "State:\tZ" in status
        if text.encode() in arguments and not zombie and int(entry) != os.getpid():
            found.append(f"{entry}: {arguments.decode(errors='replace')}")
    return found


def command_output(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    started = time.monotonic()
    running_lab = lab_up(LAB_NAME, managers=1, workers=1, subnet=LAB_SUBNET)
    print(f"lab {LAB_NAME} up in {time.monotonic() - started:.1f} s")
    yield running_lab
    lab_down(LAB_NAME)


@pytest.fixture(scope="module")
def webapp(lab: Lab) -> Iterator[str]:
    """Run webapp:v1 as a global service publishing port 80 in host mode on every node."""
    started = time.monotonic()
    images = build_images(lab)
    print(f"images built and pushed in {time.monotonic() - started:.1f} s")
    client = node_client(lab.managers[0])
    service = client.services.create(
        images["webapp:v1"],
        name="lab-webapp",
        mode=ServiceMode("global"),
        endpoint_spec=EndpointSpec(ports={WEBAPP_PORT: (80, "tcp", "host")}),
        mounts=["lab-webapp-data:/data:rw"],
    )
    for node in lab.nodes:
        wait_until(
            partial(version_is, node, "v1"),
            timeout=SWARM_TIMEOUT,
            message=f"webapp answers on {node.name}",
        )
    yield service.id
    service.remove()
    client.close()


@pytest.mark.lab
@on_lab_host
def test_lab_up_forms_swarm_and_registry(lab: Lab) -> None:
    assert [node.name for node in lab.nodes] == [f"{LAB_NAME}-m1", f"{LAB_NAME}-w1"]
    assert lab.registry == "10.77.201.1:5000"

    client = node_client(lab.managers[0])
    try:
        swarm_nodes = {node.attrs["Description"]["Hostname"]: node.attrs for node in client.nodes.list()}
        heartbeat = client.swarm.attrs["Spec"]["Dispatcher"]["HeartbeatPeriod"]
    finally:
        client.close()
    assert set(swarm_nodes) == {node.name for node in lab.nodes}
    assert swarm_nodes[f"{LAB_NAME}-m1"]["Spec"]["Role"] == "manager"
    assert swarm_nodes[f"{LAB_NAME}-w1"]["Spec"]["Role"] == "worker"
    for attrs in swarm_nodes.values():
        assert attrs["Status"]["State"] == "ready"
    assert heartbeat == 1_000_000_000

    with http_client() as http:
        assert http.get(f"http://{lab.registry}/v2/").status_code == 200


@pytest.mark.lab
@on_lab_host
def test_lab_nodes_are_isolated_engines(lab: Lab) -> None:
    engine_ids = set()
    for node in lab.nodes:
        client = node_client(node)
        try:
            info = client.info()
        finally:
            client.close()
        engine_ids.add(info["ID"])
        assert info["Name"] == node.name
        assert info["Swarm"]["NodeAddr"] == node.address
        assert lab.registry in info["RegistryConfig"]["IndexConfigs"]
        routes = command_output("ip", "-netns", node.netns, "-4", "route", "show")
        assert "default" not in routes
    assert len(engine_ids) == len(lab.nodes)


@pytest.mark.lab
@on_lab_host
def test_webapp_serves_version_and_volume_data(lab: Lab, webapp: str) -> None:
    base = f"http://{lab.workers[0].address}:{WEBAPP_PORT}"
    with http_client() as http:
        assert http.get(f"{base}/version").text == "v1\n"
        assert http.get(f"{base}/cgi-bin/data", params={"value": "first value"}).text == "first value"
        assert http.post(f"{base}/cgi-bin/data", content=b"posted\nlines").text == "posted\nlines"
        assert http.get(f"{base}/cgi-bin/data").text == "posted\nlines"
        assert http.get(f"{base}/cgi-bin/data", params={"other": "x"}).status_code == 400

        assert http.get(f"{base}/cgi-bin/health").text == "ok\n"
        assert http.get(f"{base}/cgi-bin/health", params={"state": "unhealthy"}).status_code == 500
        assert http.get(f"{base}/cgi-bin/health").status_code == 500
        assert http.get(f"{base}/cgi-bin/health", params={"state": "healthy"}).status_code == 200


@pytest.mark.lab
@on_lab_host
def test_webapp_v2_image_reports_v2(lab: Lab) -> None:
    images = build_images(lab)
    client = node_client(lab.workers[0])
    try:
        container = client.containers.run(images["webapp:v2"], detach=True, ports={"80/tcp": WEBAPP_PORT + 1})
        try:
            url = f"http://{lab.workers[0].address}:{WEBAPP_PORT + 1}/version"

            def answers_v2() -> bool:
                try:
                    with http_client() as http:
                        return http.get(url).text == "v2\n"
                except httpx.HTTPError:
                    return False

            wait_until(answers_v2, timeout=30, message="webapp:v2 answers /version")
        finally:
            container.remove(force=True)
    finally:
        client.close()


@pytest.mark.lab
@on_lab_host
def test_build_images_skips_pushed_images(lab: Lab) -> None:
    build_images(lab)
    messages: list[str] = []
    started = time.monotonic()
    build_images(lab, progress=messages.append)
    assert messages == []
    assert time.monotonic() - started < 5


@pytest.mark.lab
@pytest.mark.chaos
@on_lab_host
def test_kill_and_start_worker(lab: Lab, webapp: str) -> None:
    worker = lab.workers[0]

    kill_node(lab, worker.name)
    assert not node_running(lab, worker.name)
    assert node_processes(lab, worker) == []
    assert shim_sockets(lab.name, worker.name) == []
    assert fetch_version(worker) is None
    seconds = wait_until(
        lambda: swarm_state(lab, worker) == "down", timeout=SWARM_TIMEOUT, message="worker down"
    )
    print(f"swarm saw the killed worker down after {seconds:.1f} s")

    start_node(lab, worker.name)
    assert node_running(lab, worker.name)
    wait_until(lambda: swarm_state(lab, worker) == "ready", timeout=SWARM_TIMEOUT, message="worker ready")
    wait_until(
        lambda: fetch_version(worker) == "v1",
        timeout=SWARM_TIMEOUT,
        message="webapp answers again on the restarted worker",
    )


@pytest.mark.lab
@pytest.mark.chaos
@on_lab_host
def test_stop_and_start_worker(lab: Lab, webapp: str) -> None:
    worker = lab.workers[0]

    stop_node(lab, worker.name)
    assert not node_running(lab, worker.name)
    assert node_processes(lab, worker) == []
    wait_until(lambda: swarm_state(lab, worker) == "down", timeout=SWARM_TIMEOUT, message="worker down")

    start_node(lab, worker.name)
    assert node_running(lab, worker.name)
    wait_until(lambda: swarm_state(lab, worker) == "ready", timeout=SWARM_TIMEOUT, message="worker ready")
    wait_until(
        lambda: fetch_version(worker) == "v1",
        timeout=SWARM_TIMEOUT,
        message="webapp answers again on the restarted worker",
    )


@pytest.mark.lab
@pytest.mark.chaos
@on_lab_host
def test_partition_and_heal_worker(lab: Lab, webapp: str) -> None:
    worker = lab.workers[0]

    partition_node(lab, worker.name)
    try:
        assert fetch_version(worker) is None
        seconds = wait_until(
            lambda: swarm_state(lab, worker) == "down",
            timeout=SWARM_TIMEOUT,
            message="partitioned worker down",
        )
        print(f"swarm saw the partitioned worker down after {seconds:.1f} s")
        assert node_running(lab, worker.name)
    finally:
        heal_node(lab, worker.name)

    wait_until(lambda: swarm_state(lab, worker) == "ready", timeout=SWARM_TIMEOUT, message="worker ready")
    wait_until(
        lambda: fetch_version(worker) == "v1",
        timeout=SWARM_TIMEOUT,
        message="webapp answers again on the healed worker",
    )


@pytest.mark.lab
@on_lab_host
def test_lab_up_twice_returns_running_lab(lab: Lab) -> None:
    pids = {node.name: engine_pid(lab, node) for node in lab.nodes}

    again = lab_up(LAB_NAME, managers=1, workers=1, subnet=LAB_SUBNET)

    assert again == lab
    assert {node.name: engine_pid(lab, node) for node in lab.nodes} == pids
    assert Lab.load(LAB_NAME) == lab


@pytest.mark.lab
@pytest.mark.chaos
@on_lab_host
def test_lab_up_restarts_killed_node(lab: Lab) -> None:
    worker = lab.workers[0]
    manager_pid = engine_pid(lab, lab.managers[0])
    kill_node(lab, worker.name)

    lab_up(LAB_NAME, managers=1, workers=1, subnet=LAB_SUBNET)

    assert node_running(lab, worker.name)
    assert engine_pid(lab, lab.managers[0]) == manager_pid
    assert swarm_state(lab, worker) == "ready"


@pytest.mark.lab
@on_lab_host
def test_lab_up_with_other_shape_rejected(lab: Lab) -> None:
    with pytest.raises(LabError, match="already runs with 1 managers and 1 workers"):
        lab_up(LAB_NAME, managers=3, workers=0)
    with pytest.raises(LabError, match="already runs"):
        lab_up(LAB_NAME, managers=1, workers=1, subnet=SECOND_LAB_SUBNET)


@pytest.mark.lab
@on_lab_host
def test_lab_up_rejects_subnet_of_running_lab(lab: Lab) -> None:
    with pytest.raises(LabError, match=re.escape("overlaps 10.77.201.0/24")):
        lab_up("hxclash", managers=1, workers=0, subnet="10.77.201.0/25")
    assert leftovers("hxclash") == []


@pytest.mark.lab
@on_lab_host
def test_lab_up_replaces_stale_lab(lab: Lab) -> None:
    first = lab_up(SECOND_LAB_NAME, managers=1, workers=0, subnet=SECOND_LAB_SUBNET, swarm=False)
    try:
        old_pid = engine_pid(first, first.nodes[0])
        # Killing every engine leaves what a reboot or a killed run would: a state file,
        # namespaces, links, the rule and data roots, but no running engine.
        kill_node(first, first.nodes[0].name)

        second = lab_up(SECOND_LAB_NAME, managers=1, workers=0, subnet=SECOND_LAB_SUBNET)

        new_pid = engine_pid(second, second.nodes[0])
        assert new_pid is not None
        assert new_pid != old_pid
        assert swarm_state(second, second.nodes[0]) == "ready"
    finally:
        lab_down(SECOND_LAB_NAME)


@pytest.mark.lab
@on_lab_host
def test_lab_up_removes_leftovers_without_state(lab: Lab) -> None:
    first = lab_up(SECOND_LAB_NAME, managers=1, workers=0, subnet=SECOND_LAB_SUBNET, swarm=False)
    try:
        state_path(SECOND_LAB_NAME).unlink()

        second = lab_up(SECOND_LAB_NAME, managers=1, workers=0, subnet=SECOND_LAB_SUBNET)

        assert second.bridge == first.bridge
        assert node_running(second, second.nodes[0].name)
    finally:
        lab_down(SECOND_LAB_NAME)


@pytest.mark.lab
@on_lab_host
def test_lab_down_leaves_nothing(lab: Lab) -> None:
    second = lab_up(SECOND_LAB_NAME, managers=1, workers=1, subnet=SECOND_LAB_SUBNET)
    # Two labs run side by side on distinct bridges and subnets.
    assert second.bridge != lab.bridge
    assert not ipaddress.ip_network(second.subnet).overlaps(ipaddress.ip_network(lab.subnet))

    # Give the lab what a real run leaves: a container with a volume and a published
    # port on each node, then a crashed worker with its mounts and shim socket behind.
    images = build_images(second)
    for node in second.nodes:
        client = node_client(node)
        try:
            client.containers.run(
                images["webapp:v1"],
                detach=True,
                ports={"80/tcp": WEBAPP_PORT},
                volumes={"down-data": {"bind": "/data", "mode": "rw"}},
            )
        finally:
            client.close()
    worker = second.workers[0]
    pids = [pid for node in second.nodes for pid in node_processes(second, node)]
    kill_node(second, worker.name)
    assert leftovers(SECOND_LAB_NAME) != []

    lab_down(SECOND_LAB_NAME)

    assert leftovers(SECOND_LAB_NAME) == []
    assert f"hclab-{SECOND_LAB_NAME}-" not in command_output("ip", "netns", "list")
    links = command_output("ip", "-o", "link", "show")
    assert f"{second.bridge}:" not in links
    assert f"hcl{second.index}v" not in links
    assert f"hostcraft-lab:{SECOND_LAB_NAME}" not in links
    assert f"hostcraft-lab-{SECOND_LAB_NAME}" not in command_output("iptables", "-S", "FORWARD")
    assert live_processes_mentioning(f"/hostcraft-lab/{SECOND_LAB_NAME}/") == []
    assert [pid for pid in pids if _exists(pid)] == []
    assert f"/hostcraft-lab/{SECOND_LAB_NAME}" not in Path("/proc/self/mountinfo").read_text()
    assert not lab_run_dir(SECOND_LAB_NAME).exists()
    assert not lab_data_dir(SECOND_LAB_NAME).exists()
    assert not lock_path(SECOND_LAB_NAME).exists()
    assert list(Path("/sys/fs/cgroup").glob(f"*/hostcraft-lab/{SECOND_LAB_NAME}")) == []
    assert shim_sockets(SECOND_LAB_NAME, worker.name) == []

    # The first lab is untouched.
    assert all(node_running(lab, node.name) for node in lab.nodes)


@pytest.mark.lab
@on_lab_host
def test_lab_down_of_missing_lab_is_noop() -> None:
    lab_down("hxnone")
    assert leftovers("hxnone") == []


@pytest.mark.parametrize("name", ["", "Lab", "1lab", "lab-1", "lab_1", "abcdefghi", "la b"])
def test_lab_up_rejects_invalid_name(name: str) -> None:
    with pytest.raises(LabError, match="invalid lab name"):
        lab_up(name)


@pytest.mark.parametrize(("managers", "workers"), [(0, 1), (1, -1)])
def test_lab_up_rejects_invalid_size(managers: int, workers: int) -> None:
    with pytest.raises(LabError, match="invalid lab size"):
        lab_up("hxsize", managers=managers, workers=workers)


@pytest.mark.parametrize(
    ("subnet", "message"),
    [
        ("10.77.5.0/33", "invalid subnet"),
        ("10.77.5.1/24", "invalid subnet"),
        ("not-a-subnet", "invalid subnet"),
        ("8.8.8.0/24", "private range"),
        ("127.0.0.0/24", "private range"),
        ("10.77.5.0/28", "too small"),
    ],
)
def test_parse_subnet_rejects(subnet: str, message: str) -> None:
    with pytest.raises(LabError, match=message):
        parse_subnet(subnet, node_count=5)


def test_parse_subnet_accepts_small_private_network() -> None:
    assert str(parse_subnet("192.168.50.0/27", node_count=5)) == "192.168.50.0/27"


def test_lab_up_requires_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        lab_up("hxroot", managers=1, workers=0, subnet="10.77.203.0/24")


def test_lab_up_requires_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(LabError, match="needs Linux"):
        lab_up("hxmac", managers=1, workers=0, subnet="10.77.203.0/24")


def test_pick_default_subnet_skips_used_index_and_routes() -> None:
    occupied = [ipaddress.IPv4Network("10.77.2.0/24"), ipaddress.IPv4Network("10.77.3.128/25")]
    index, network = pick_default_subnet({1}, occupied, lab_name="hxpick")
    assert index == 4
    assert str(network) == "10.77.4.0/24"


def test_pick_index_prefers_third_octet_when_free() -> None:
    assert pick_index({1, 2}, preferred=205, lab_name="hxpick") == 205
    assert pick_index({1, 205}, preferred=205, lab_name="hxpick") == 2


def test_lab_node_lookup_and_image_references() -> None:
    node = LabNode(
        name="hxq-m1",
        role="manager",
        address="10.77.204.11",
        endpoint="unix:///run/hostcraft-lab/hxq/hxq-m1/docker.sock",
        netns="hclab-hxq-m1",
        veth="hcl204v1",
    )
    lab = Lab(
        name="hxq",
        index=204,
        subnet="10.77.204.0/24",
        bridge="hclab204",
        bridge_address="10.77.204.1",
        registry="10.77.204.1:5000",
        nodes=[node],
    )
    assert lab.node("hxq-m1") == node
    with pytest.raises(LabError, match="node 'hxq-w9' not found"):
        lab.node("hxq-w9")
    assert lab.images() == {
        "busybox": "10.77.204.1:5000/hostcraft/busybox:1",
        "webapp:v1": "10.77.204.1:5000/hostcraft/webapp:v1",
        "webapp:v2": "10.77.204.1:5000/hostcraft/webapp:v2",
    }


def test_lab_load_of_missing_lab_raises() -> None:
    with pytest.raises(LabError, match="lab 'hxabsent' not found"):
        Lab.load("hxabsent")


def _exists(pid: int) -> bool:
    """Return whether ``pid`` is a live process; zombies count as gone."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
