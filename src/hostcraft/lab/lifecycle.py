"""Bringing a lab up and down, and failing its nodes on purpose.

``lab_up`` converges: it creates what is missing and keeps what runs. A lab whose state
file exists but none of whose engines runs (after a reboot, or a run that was killed) is
stale, so it is removed and built fresh rather than resumed with old swarm state.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable

from hostcraft.errors import LabError
from hostcraft.lab.allocation import allocate_lab, parse_subnet
from hostcraft.lab.engine import (
    engine_running,
    kill_engine,
    start_engine,
    stop_engine,
    wait_engine_ready,
)
from hostcraft.lab.host import require_lab_host
from hostcraft.lab.locking import lab_lock
from hostcraft.lab.network import (
    ensure_bridge,
    ensure_forward_rule,
    ensure_netns,
    ensure_node_link,
    link_exists,
    netns_names,
    set_link_state,
)
from hostcraft.lab.registry import start_registry, stop_registry
from hostcraft.lab.s3 import s3_endpoint, s3_running, stop_s3_server
from hostcraft.lab.state import (
    Lab,
    LabNode,
    existing_lab,
    iptables_comment,
    link_alias,
    recorded_lab_names,
    validate_lab_name,
    veth_peer_name,
)
from hostcraft.lab.swarm import form_swarm
from hostcraft.lab.teardown import leftovers as find_leftovers
from hostcraft.lab.teardown import remove_lab

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


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
    with lab_lock(name):
        lab = existing_lab(name)
        if lab is not None and not any(engine_running(lab, node) for node in lab.nodes):
            report(f"removing stale lab {name}: none of its engines is running")
            remove_lab(name, lab)
            lab = None
        if lab is None:
            if find_leftovers(name, include_lock=False):
                report(f"removing leftovers of lab {name}")
                remove_lab(name, None)
            lab = allocate_lab(name, managers=managers, workers=workers, network=network)
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
    with lab_lock(name):
        lab = existing_lab(name)
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
    require_lab_host(programs={"ip": "iproute2", "iptables": "iptables"})
    return find_leftovers(name, existing_lab(name))


def node_running(lab: Lab, node: str | LabNode) -> bool:
    return engine_running(lab, _node(lab, node))


def kill_node(lab: Lab, node: str | LabNode) -> None:
    """Crash the node: SIGKILL its dockerd, containerd, shims and containers at once."""
    require_lab_host(programs={})
    kill_engine(lab, _node(lab, node))


def region_outage(lab: Lab, *, progress: Progress | None = None) -> None:
    """Fail the whole lab as a lost region: crash every node, then stop its registry and S3 server.

    The S3 server keeps its objects in memory, so they are lost with it. `lab down` removes
    what is left, and `lab up` builds a lab without running engines fresh.
    """
    report = progress or _ignore_progress
    require_lab_host(programs={})
    for node in lab.nodes:
        kill_engine(lab, node)
        report(f"killed {node.name} ({node.address})")
    stop_registry(lab)
    report(f"stopped the registry {lab.registry}")
    if s3_running(lab):
        stop_s3_server(lab)
        report(f"stopped the S3 server {s3_endpoint(lab)} (its objects are gone)")


def stop_node(lab: Lab, node: str | LabNode) -> None:
    """Stop the node's dockerd with SIGTERM and wait until it has exited."""
    require_lab_host(programs={})
    stop_engine(lab, _node(lab, node))


def start_node(lab: Lab, node: str | LabNode) -> None:
    """Start the node's dockerd with its existing data root and wait until it responds."""
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


def _node(lab: Lab, node: str | LabNode) -> LabNode:
    return lab.node(node.name if isinstance(node, LabNode) else node)


def _ignore_progress(message: str) -> None:
    """Discard a progress message when the caller passed no callback."""
