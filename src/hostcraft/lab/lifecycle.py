"""Bringing a lab up and down, and failing its nodes on purpose.

``lab_up`` converges: it creates what is missing and keeps what runs. A lab whose state
file exists but none of whose engines runs (after a reboot, or a run that was killed) is
stale, so it is removed and built fresh rather than resumed with old swarm state.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hostcraft.errors import LabError
from hostcraft.lab.engine import (
    engine_running,
    kill_engine,
    start_engine,
    stop_engine,
    wait_engine_ready,
)
from hostcraft.lab.host import require_lab_host
from hostcraft.lab.network import (
    ensure_bridge,
    ensure_forward_rule,
    ensure_netns,
    ensure_node_link,
    link_exists,
    links,
    netns_names,
    routed_networks,
    set_link_state,
)
from hostcraft.lab.registry import start_registry
from hostcraft.lab.state import (
    REGISTRY_PORT,
    RUN_ROOT,
    Lab,
    LabNode,
    bridge_name,
    iptables_comment,
    lab_run_dir,
    link_alias,
    lock_path,
    netns_name,
    node_names,
    node_socket,
    recorded_lab_names,
    save_state,
    validate_lab_name,
    veth_name,
    veth_peer_name,
)
from hostcraft.lab.swarm import form_swarm
from hostcraft.lab.teardown import leftovers as find_leftovers
from hostcraft.lab.teardown import remove_lab

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

DEFAULT_SUBNET_PREFIX = "10.77"
MAX_LAB_INDEX = 250
# Node addresses start at .11 so that .1 to .10 stay free for the bridge and lab services.
FIRST_NODE_OFFSET = 10


def lab_up(
    name: str,
    *,
    managers: int = 3,
    workers: int = 2,
    subnet: str | None = None,
    swarm: bool = True,
    progress: Progress | None = None,
) -> Lab:
    """Create the lab, or complete a running one, and return it.

    With ``swarm`` the first manager initializes a swarm with a 1 s dispatcher heartbeat
    and every node not in it joins with its intended role. Without it, engines are left
    as they are: bare on a new lab, untouched on a running one. ``subnet`` defaults to a
    free ``10.77.<k>.0/24``.
    """
    report = progress or _ignore_progress
    validate_lab_name(name)
    if managers < 1 or workers < 0:
        raise LabError(
            f"invalid lab size: {managers} managers and {workers} workers; "
            "a lab needs at least 1 manager and 0 or more workers",
            details={"managers": managers, "workers": workers},
        )
    network = None if subnet is None else parse_subnet(subnet, node_count=managers + workers)
    require_lab_host()
    with _lab_lock(name):
        lab = _existing_lab(name)
        if lab is not None and not any(engine_running(lab, node) for node in lab.nodes):
            report(f"removing stale lab {name}: none of its engines is running")
            remove_lab(name, lab)
            lab = None
        if lab is None:
            if find_leftovers(name, include_lock=False):
                report(f"removing leftovers of lab {name}")
                remove_lab(name, None)
            lab = _allocate_lab(name, managers=managers, workers=workers, network=network)
            report(f"creating lab {name} on {lab.subnet}")
        else:
            _check_shape(lab, managers=managers, workers=workers, network=network)
        _bring_up(lab, swarm=swarm, report=report)
    report(f"lab {name} is up")
    return lab


def lab_down(name: str, *, progress: Progress | None = None) -> None:
    """Remove every process, kernel object and directory of the lab; a missing lab is fine."""
    report = progress or _ignore_progress
    require_lab_host(programs={"ip": "iproute2", "iptables": "iptables", "umount": "mount"})
    validate_lab_name(name)
    with _lab_lock(name):
        lab = _existing_lab(name)
        report(f"removing lab {name}")
        remove_lab(name, lab)
    remaining = find_leftovers(name, lab)
    if remaining:
        raise LabError(
            f"lab {name} was not removed completely; still present: {'; '.join(remaining)}",
            details={"lab": name, "leftovers": remaining},
        )
    report(f"lab {name} is down")


def list_labs() -> list[Lab]:
    """Return the labs that have a state file, running or not, sorted by name."""
    labs = []
    for name in recorded_lab_names():
        try:
            labs.append(Lab.load(name))
        except LabError as exc:
            logger.warning("skipping lab with unreadable state", extra={"lab": name, "error": str(exc)})
    return labs


def leftovers(name: str) -> list[str]:
    """Describe the lab's processes, kernel objects and directories that are still present."""
    validate_lab_name(name)
    return find_leftovers(name, _existing_lab(name))


def node_running(lab: Lab, node: str | LabNode) -> bool:
    return engine_running(lab, _node(lab, node))


def kill_node(lab: Lab, node: str | LabNode) -> None:
    """Crash the node: SIGKILL its dockerd, containerd, shims and containers at once."""
    require_lab_host(programs={})
    kill_engine(lab, _node(lab, node))


def stop_node(lab: Lab, node: str | LabNode) -> None:
    """Stop the node's dockerd with SIGTERM and wait until it has exited."""
    require_lab_host(programs={})
    stop_engine(lab, _node(lab, node))


def start_node(lab: Lab, node: str | LabNode) -> None:
    """Start the node's dockerd with its existing data root and wait until it answers."""
    require_lab_host()
    lab_node = _node(lab, node)
    if lab_node.netns not in netns_names() or not link_exists(lab_node.veth):
        raise LabError(
            f"network of node {lab_node.name} is missing; restore the lab with `lab up {lab.name}`",
            details={"lab": lab.name, "node": lab_node.name},
        )
    pid = start_engine(lab, lab_node)
    wait_engine_ready(lab, lab_node, pid=pid)


def partition_node(lab: Lab, node: str | LabNode) -> None:
    """Cut the node off the lab network by taking its bridge-side veth down."""
    require_lab_host(programs={"ip": "iproute2"})
    set_link_state(_node(lab, node).veth, up=False)


def heal_node(lab: Lab, node: str | LabNode) -> None:
    """Reconnect a partitioned node by bringing its bridge-side veth up."""
    require_lab_host(programs={"ip": "iproute2"})
    set_link_state(_node(lab, node).veth, up=True)


def _bring_up(lab: Lab, *, swarm: bool, report: Progress) -> None:
    prefix_length = ipaddress.IPv4Network(lab.subnet).prefixlen
    report(f"setting up bridge {lab.bridge} ({lab.bridge_address}/{prefix_length})")
    ensure_bridge(lab.bridge, lab.bridge_address, prefix_length, alias=link_alias(lab.name))
    ensure_forward_rule(lab.bridge, iptables_comment(lab.name))
    for position, node in enumerate(lab.nodes, start=1):
        ensure_netns(node.netns)
        ensure_node_link(
            netns=node.netns,
            veth=node.veth,
            peer=veth_peer_name(lab.index, position),
            bridge=lab.bridge,
            address=node.address,
            prefix_length=prefix_length,
            alias=link_alias(lab.name),
        )

    report(f"starting the registry on {lab.registry}")
    start_registry(lab)

    started: dict[str, int] = {}
    for node in lab.nodes:
        pid = start_engine(lab, node)
        if pid is not None:
            report(f"starting the engine of {node.name}")
            started[node.name] = pid
    for node in lab.nodes:
        wait_engine_ready(lab, node, pid=started.get(node.name))

    if swarm:
        form_swarm(lab, report)


def _allocate_lab(name: str, *, managers: int, workers: int, network: ipaddress.IPv4Network | None) -> Lab:
    """Pick a free index and subnet for a new lab and record it in its state file."""
    with _exclusive_lock(str(RUN_ROOT / ".allocation.lock")):
        others = [_existing_lab(other) for other in recorded_lab_names() if other != name]
        other_labs = [lab for lab in others if lab is not None]
        used_indexes = {lab.index for lab in other_labs}
        used_indexes.update(_indexes_with_bridge())
        taken = [ipaddress.IPv4Network(lab.subnet) for lab in other_labs] + routed_networks()
        if network is None:
            index, network = pick_default_subnet(used_indexes, taken, lab_name=name)
        else:
            conflicts = sorted({str(other) for other in taken if network.overlaps(other)})
            if conflicts:
                raise LabError(
                    f"subnet {network} overlaps {', '.join(conflicts)}, used by another lab "
                    "or a route of this machine; pick another subnet",
                    details={"subnet": str(network), "conflicts": conflicts},
                )
            index = pick_index(used_indexes, preferred=_default_index_of(network), lab_name=name)
        lab = _make_lab(name, index, network, managers=managers, workers=workers)
        save_state(lab)
    return lab


def _make_lab(name: str, index: int, network: ipaddress.IPv4Network, *, managers: int, workers: int) -> Lab:
    bridge_address = str(network.network_address + 1)
    nodes = []
    for position, (node_name, role) in enumerate(node_names(name, managers, workers), start=1):
        nodes.append(
            LabNode(
                name=node_name,
                role=role,
                address=str(network.network_address + FIRST_NODE_OFFSET + position),
                endpoint=f"unix://{node_socket(name, node_name)}",
                netns=netns_name(node_name),
                veth=veth_name(index, position),
            )
        )
    return Lab(
        name=name,
        index=index,
        subnet=str(network),
        bridge=bridge_name(index),
        bridge_address=bridge_address,
        registry=f"{bridge_address}:{REGISTRY_PORT}",
        nodes=nodes,
    )


def pick_default_subnet(
    used_indexes: set[int], taken: list[ipaddress.IPv4Network], *, lab_name: str
) -> tuple[int, ipaddress.IPv4Network]:
    """Return the first free index k and its subnet 10.77.k.0/24.

    k is free when no other lab uses it and 10.77.k.0/24 overlaps none of ``taken``.
    """
    for index in range(1, MAX_LAB_INDEX + 1):
        network = ipaddress.IPv4Network(f"{DEFAULT_SUBNET_PREFIX}.{index}.0/24")
        if index not in used_indexes and not any(network.overlaps(other) for other in taken):
            return index, network
    raise LabError(
        f"no free subnet for lab {lab_name}: {DEFAULT_SUBNET_PREFIX}.1.0/24 to "
        f"{DEFAULT_SUBNET_PREFIX}.{MAX_LAB_INDEX}.0/24 are all used; "
        "remove a lab with `lab down` or pass a subnet",
        details={"lab": lab_name},
    )


def parse_subnet(subnet: str, *, node_count: int) -> ipaddress.IPv4Network:
    """Return ``subnet`` as a network if a lab of ``node_count`` nodes fits in it.

    Raise LabError for a malformed or non-private network, or one too small to hold the
    bridge and the node addresses from .11 on.
    """
    try:
        network = ipaddress.IPv4Network(subnet)
    except ValueError as exc:
        raise LabError(
            f"invalid subnet {subnet!r}: {exc}; give an IPv4 network such as 10.77.5.0/24",
            details={"subnet": subnet},
        ) from exc
    if not network.is_private or network.is_loopback or network.is_link_local:
        raise LabError(
            f"invalid subnet {subnet}: use a private range (10.0.0.0/8, 172.16.0.0/12 or "
            "192.168.0.0/16), so that the lab cannot hide a real network",
            details={"subnet": subnet},
        )
    last_node = network.network_address + FIRST_NODE_OFFSET + node_count
    if last_node >= network.broadcast_address:
        raise LabError(
            f"subnet {subnet} is too small for {node_count} nodes: node addresses run from "
            f".{FIRST_NODE_OFFSET + 1} to {last_node}",
            details={"subnet": subnet},
        )
    return network


def pick_index(used_indexes: set[int], *, preferred: int | None, lab_name: str) -> int:
    """Return ``preferred`` if it is free, else the lowest free lab index."""
    if preferred is not None and preferred not in used_indexes:
        return preferred
    for index in range(1, MAX_LAB_INDEX + 1):
        if index not in used_indexes:
            return index
    raise LabError(
        f"no free lab index for lab {lab_name}: {MAX_LAB_INDEX} labs exist; remove one",
        details={"lab": lab_name},
    )


def _indexes_with_bridge() -> set[int]:
    # A bridge without a state file (a foreign or interrupted run) also blocks its index.
    names = {link["ifname"] for link in links()}
    return {index for index in range(1, MAX_LAB_INDEX + 1) if bridge_name(index) in names}


def _default_index_of(network: ipaddress.IPv4Network) -> int | None:
    """Return k for a network 10.77.k.0/24, so that its bridge is called hclab<k>."""
    octets = str(network.network_address).split(".")
    if network.prefixlen == 24 and ".".join(octets[:2]) == DEFAULT_SUBNET_PREFIX:
        index = int(octets[2])
        if 1 <= index <= MAX_LAB_INDEX:
            return index
    return None


def _check_shape(lab: Lab, *, managers: int, workers: int, network: ipaddress.IPv4Network | None) -> None:
    running = (len(lab.managers), len(lab.workers))
    same_subnet = network is None or network == ipaddress.IPv4Network(lab.subnet)
    if running == (managers, workers) and same_subnet:
        return
    requested = f"{managers} managers and {workers} workers"
    if network is not None:
        requested += f" on {network}"
    raise LabError(
        f"lab {lab.name} already runs with {running[0]} managers and {running[1]} workers "
        f"on {lab.subnet}; remove it with `lab down {lab.name}` to create it with {requested}",
        details={"lab": lab.name},
    )


def _existing_lab(name: str) -> Lab | None:
    """Return the lab from its state file, or None if it has none or an unreadable one."""
    if not (lab_run_dir(name) / "state.json").is_file():
        return None
    try:
        return Lab.load(name)
    except LabError as exc:
        logger.warning("ignoring unreadable lab state", extra={"lab": name, "error": str(exc)})
        return None


def _node(lab: Lab, node: str | LabNode) -> LabNode:
    return lab.node(node.name if isinstance(node, LabNode) else node)


@contextmanager
def _lab_lock(name: str) -> Iterator[None]:
    """Hold the lab's lock file, and delete it on exit when the lab no longer exists."""
    path = lock_path(name)
    with _exclusive_lock(str(path)):
        try:
            yield
        finally:
            if not lab_run_dir(name).exists():
                path.unlink(missing_ok=True)


@contextmanager
def _exclusive_lock(path: str) -> Iterator[None]:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    while True:
        descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        # A holder may have deleted the file while we waited. A lock on a deleted file
        # guards nothing, so open the path again.
        try:
            current = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(descriptor)
    try:
        yield
    finally:
        os.close(descriptor)


def _ignore_progress(message: str) -> None:
    """Discard a progress message when the caller passed no callback."""
