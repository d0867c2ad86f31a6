"""The lab's kernel network objects: bridge, veth pairs, namespaces and one iptables rule.

Each node's namespace gets a veth pair: the bridge side stays in the root namespace, the
other side becomes the node's ``eth0``. Namespaces get an on-link route to the lab subnet
and no default route, so nothing inside a lab reaches beyond this machine.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import shlex
import subprocess
from collections.abc import Sequence
from typing import Any

from hostcraft.errors import LabError

logger = logging.getLogger(__name__)


def run_command(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host tool, raising LabError with its error output when ``check`` and it fails."""
    try:
        completed = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError as exc:
        raise LabError(f"failed to run {argv[0]}: {exc}") from exc
    if check and completed.returncode != 0:
        output = (completed.stderr or completed.stdout).strip()
        raise LabError(
            f"command failed with exit code {completed.returncode}: {shlex.join(argv)}: {output}",
            details={"argv": list(argv), "exit_code": completed.returncode},
        )
    return completed


def links() -> list[dict[str, Any]]:
    """Return the root namespace's links as ``ip -json link`` reports them."""
    output = run_command(["ip", "-json", "link", "show"]).stdout
    parsed: list[dict[str, Any]] = json.loads(output or "[]")
    return parsed


def link_exists(name: str) -> bool:
    return run_command(["ip", "link", "show", "dev", name], check=False).returncode == 0


def links_with_alias(alias: str) -> list[str]:
    return [link["ifname"] for link in links() if link.get("ifalias") == alias]


def link_is_up(name: str) -> bool:
    for link in links():
        if link["ifname"] == name:
            return "UP" in link.get("flags", [])
    return False


def set_link_state(name: str, *, up: bool) -> None:
    run_command(["ip", "link", "set", "dev", name, "up" if up else "down"])


def delete_link(name: str) -> None:
    """Delete the link if it exists; a link that vanishes meanwhile counts as deleted."""
    completed = run_command(["ip", "link", "delete", "dev", name], check=False)
    if completed.returncode != 0 and link_exists(name):
        raise LabError(f"failed to delete link {name}: {completed.stderr.strip()}", details={"link": name})


def ensure_bridge(name: str, address: str, prefix_length: int, *, alias: str) -> None:
    """Create the bridge with ``address/prefix_length`` unless it exists, and bring it up."""
    if not link_exists(name):
        run_command(["ip", "link", "add", "name", name, "type", "bridge"])
    run_command(["ip", "link", "set", "dev", name, "alias", alias])
    _ensure_address(name, f"{address}/{prefix_length}", netns=None)
    set_link_state(name, up=True)


def netns_names() -> list[str]:
    output = run_command(["ip", "-json", "netns", "list"]).stdout.strip()
    entries: list[dict[str, Any]] = json.loads(output) if output else []
    return [entry["name"] for entry in entries]


def ensure_netns(name: str) -> None:
    if name not in netns_names():
        run_command(["ip", "netns", "add", name])
    run_command(["ip", "-netns", name, "link", "set", "dev", "lo", "up"])


def delete_netns(name: str) -> None:
    if name in netns_names():
        run_command(["ip", "netns", "delete", name])


def ensure_node_link(
    *,
    netns: str,
    veth: str,
    peer: str,
    bridge: str,
    address: str,
    prefix_length: int,
    alias: str,
) -> None:
    """Connect the namespace to the bridge through a veth pair and give its ``eth0`` an address.

    A half-built pair from an interrupted run is deleted and created again, because a veth
    whose namespace side is missing cannot be repaired.
    """
    if not link_exists(veth) or not _netns_has_link(netns, "eth0"):
        delete_link(veth)
        delete_link(peer)
        run_command(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
        run_command(["ip", "link", "set", "dev", veth, "alias", alias])
        run_command(["ip", "link", "set", "dev", peer, "netns", netns])
        run_command(["ip", "-netns", netns, "link", "set", "dev", peer, "name", "eth0"])
    run_command(["ip", "link", "set", "dev", veth, "master", bridge])
    _ensure_address("eth0", f"{address}/{prefix_length}", netns=netns)
    run_command(["ip", "-netns", netns, "link", "set", "dev", "eth0", "up"])
    set_link_state(veth, up=True)


def ensure_forward_rule(bridge: str, comment: str) -> None:
    """Accept forwarded traffic between the bridge's ports.

    Bridged frames pass through iptables here (br_netfilter), and a Docker engine in the
    root namespace sets the FORWARD policy to DROP, which would block ``swarm join``.
    """
    rule = ["-i", bridge, "-o", bridge, "-m", "comment", "--comment", comment, "-j", "ACCEPT"]
    if run_command(["iptables", "-w", "-C", "FORWARD", *rule], check=False).returncode != 0:
        run_command(["iptables", "-w", "-I", "FORWARD", "1", *rule])


def forward_rules(comment: str) -> list[list[str]]:
    """Return the FORWARD rules tagged with ``comment``, as ``iptables -S`` arguments."""
    output = run_command(["iptables", "-w", "-S", "FORWARD"]).stdout
    rules = []
    for line in output.splitlines():
        arguments = shlex.split(line)
        if _comment_of(arguments) == comment:
            rules.append(arguments)
    return rules


def delete_forward_rules(comment: str) -> None:
    for arguments in forward_rules(comment):
        if arguments[:1] == ["-A"]:
            run_command(["iptables", "-w", "-D", *arguments[1:]])


def routed_networks(*, exclude_device: str | None = None) -> list[ipaddress.IPv4Network]:
    """Return the IPv4 destinations of the root namespace's main routing table."""
    output = run_command(["ip", "-json", "-4", "route", "show"]).stdout.strip()
    routes: list[dict[str, Any]] = json.loads(output) if output else []
    networks = []
    for route in routes:
        destination = route.get("dst", "default")
        if destination == "default" or route.get("dev") == exclude_device:
            continue
        networks.append(ipaddress.IPv4Network(destination, strict=False))
    return networks


def _ensure_address(device: str, cidr: str, *, netns: str | None) -> None:
    prefix = ["ip", "-netns", netns] if netns else ["ip"]
    output = run_command([*prefix, "-json", "-4", "address", "show", "dev", device]).stdout
    entries: list[dict[str, Any]] = json.loads(output or "[]")
    present = {
        f"{info['local']}/{info['prefixlen']}" for entry in entries for info in entry.get("addr_info", [])
    }
    if cidr not in present:
        run_command([*prefix, "address", "add", cidr, "dev", device])


def _netns_has_link(netns: str, device: str) -> bool:
    if netns not in netns_names():
        return False
    completed = run_command(["ip", "-netns", netns, "link", "show", "dev", device], check=False)
    return completed.returncode == 0


def _comment_of(arguments: list[str]) -> str | None:
    for position, argument in enumerate(arguments[:-1]):
        if argument == "--comment":
            return arguments[position + 1]
    return None
