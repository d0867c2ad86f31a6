"""Choosing a new lab's index, subnet and addresses.

The index k names the lab's interfaces (bridge ``hclab<k>``, veths ``hcl<k>v<i>``, which
fit the kernel's 15-character limit) and picks the default subnet ``10.77.<k>.0/24``. The
bridge takes the subnet's first address and node ``i`` (1-based) takes address ``10 + i``.
"""

from __future__ import annotations

import ipaddress

from hostcraft.errors import LabError
from hostcraft.lab.locking import exclusive_lock
from hostcraft.lab.network import links, routed_networks
from hostcraft.lab.state import (
    REGISTRY_PORT,
    RUN_ROOT,
    Lab,
    LabNode,
    bridge_name,
    existing_lab,
    netns_name,
    node_names,
    node_socket,
    recorded_lab_names,
    save_state,
    veth_name,
)

DEFAULT_SUBNET_PREFIX = "10.77"
MAX_LAB_INDEX = 250
# Node addresses start at .11 so that .1 to .10 stay free for the bridge and lab services.
FIRST_NODE_OFFSET = 10


def allocate_lab(name: str, *, managers: int, workers: int, network: ipaddress.IPv4Network | None) -> Lab:
    """Pick a free index and subnet for a new lab and record it in its state file."""
    with exclusive_lock(str(RUN_ROOT / ".allocation.lock")):
        others = [existing_lab(other) for other in recorded_lab_names() if other != name]
        other_labs = [lab for lab in others if lab is not None]
        used_indexes = {lab.index for lab in other_labs}
        used_indexes.update(_indexes_with_bridge())
        occupied = [ipaddress.IPv4Network(lab.subnet) for lab in other_labs] + routed_networks()
        if network is None:
            index, network = pick_default_subnet(used_indexes, occupied, lab_name=name)
        else:
            conflicts = sorted({str(other) for other in occupied if network.overlaps(other)})
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
    used_indexes: set[int], occupied: list[ipaddress.IPv4Network], *, lab_name: str
) -> tuple[int, ipaddress.IPv4Network]:
    """Return the first free index k and its subnet 10.77.k.0/24.

    k is free when no other lab uses it and 10.77.k.0/24 overlaps none of ``occupied``.
    """
    for index in range(1, MAX_LAB_INDEX + 1):
        network = ipaddress.IPv4Network(f"{DEFAULT_SUBNET_PREFIX}.{index}.0/24")
        if index not in used_indexes and not any(network.overlaps(other) for other in occupied):
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
