"""Finding and removing everything a lab leaves on the machine.

Namespaces, links, the iptables rule, mounts, cgroups and data roots outlive the daemons
that made them. Each is found by the lab's name alone (netns prefix, link alias, rule
comment, paths), so a lab can be removed even when its state file is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from hostcraft.errors import LabError
from hostcraft.lab.engine import shim_sockets
from hostcraft.lab.network import (
    delete_forward_rules,
    delete_link,
    delete_netns,
    forward_rules,
    link_exists,
    links_with_alias,
    netns_names,
    run_command,
)
from hostcraft.lab.processes import describe_process, find_lab_processes, kill_processes
from hostcraft.lab.state import (
    NETNS_PREFIX,
    Lab,
    iptables_comment,
    lab_data_dir,
    lab_run_dir,
    link_alias,
    lock_path,
)

logger = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
CGROUP_PARENT = "hostcraft-lab"


def lab_markers(name: str) -> list[str]:
    """Return the path prefixes that every daemon of the lab has in its command line."""
    return [f"{lab_run_dir(name)}/", f"{lab_data_dir(name)}/"]


def lab_netns(name: str) -> list[str]:
    # Lab names contain no "-", so "hclab-<lab>-" cannot match a node of another lab.
    prefix = f"{NETNS_PREFIX}{name}-"
    return [netns for netns in netns_names() if netns.startswith(prefix)]


def lab_links(name: str, lab: Lab | None) -> list[str]:
    found = set(links_with_alias(link_alias(name)))
    if lab is not None:
        names = [lab.bridge, *(node.veth for node in lab.nodes)]
        found.update(link for link in names if link_exists(link))
    return sorted(found)


def lab_mounts(name: str) -> list[str]:
    """Return the mount points under the lab's directories or namespace files, deepest first."""
    prefixes = (
        f"{lab_run_dir(name)}/",
        f"{lab_data_dir(name)}/",
        f"{NETNS_DIR}/{NETNS_PREFIX}{name}-",
    )
    exact = {str(lab_run_dir(name)), str(lab_data_dir(name))}
    mounts = [point for point, _ in _mount_table() if point in exact or point.startswith(prefixes)]
    return sorted(set(mounts), key=lambda point: point.count("/"), reverse=True)


def lab_cgroup_roots(name: str) -> list[Path]:
    """Return the lab's top cgroup directory in every cgroup hierarchy where it exists."""
    roots = []
    for point, fstype in _mount_table():
        root = Path(point) / CGROUP_PARENT / name
        if fstype in ("cgroup", "cgroup2") and root.is_dir():
            roots.append(root)
    return roots


def lab_shim_sockets(name: str) -> list[Path]:
    node_dirs = _entries(lab_data_dir(name)) + _entries(lab_run_dir(name))
    sockets: set[Path] = set()
    for node_name in node_dirs:
        sockets.update(shim_sockets(name, node_name))
    return sorted(sockets)


def leftovers(name: str, lab: Lab | None = None, *, include_lock: bool = True) -> list[str]:
    """Describe every process, kernel object, socket and directory of the lab still present."""
    found = [describe_process(pid) for pid in find_lab_processes(lab_markers(name))]
    found += [f"network namespace {netns}" for netns in lab_netns(name)]
    found += [f"link {link}" for link in lab_links(name, lab)]
    found += [f"iptables rule {' '.join(rule)}" for rule in forward_rules(iptables_comment(name))]
    found += [f"mount {point}" for point in lab_mounts(name)]
    found += [f"cgroup {directory}" for directory in lab_cgroup_roots(name)]
    found += [f"shim socket {path}" for path in lab_shim_sockets(name)]
    paths = [lab_run_dir(name), lab_data_dir(name)]
    if include_lock:
        paths.append(lock_path(name))
    for path in paths:
        if path.exists():
            found.append(f"path {path}")
    return found


def remove_lab(name: str, lab: Lab | None) -> None:
    """Kill the lab's processes, then remove its mounts, kernel objects and directories.

    The lock file is left to the caller, which holds it.
    """
    pids = find_lab_processes(lab_markers(name))
    if pids:
        logger.info("killing lab processes", extra={"lab": name, "pids": pids})
        kill_processes(pids)
    for socket in lab_shim_sockets(name):
        socket.unlink(missing_ok=True)
    _unmount_all(name)
    # Links go before namespaces: deleting a veth removes its peer at once, while the
    # kernel destroys a deleted namespace, and the veth ends inside it, asynchronously.
    for link in lab_links(name, lab):
        delete_link(link)
    for netns in lab_netns(name):
        delete_netns(netns)
    delete_forward_rules(iptables_comment(name))
    _remove_cgroups(name)
    for directory in (lab_run_dir(name), lab_data_dir(name)):
        if directory.exists():
            shutil.rmtree(directory)


def _unmount_all(name: str) -> None:
    # Mounts can be stacked on one point, so repeat until none is left.
    for _ in range(10):
        mounts = lab_mounts(name)
        if not mounts:
            return
        for point in mounts:
            if run_command(["umount", point], check=False).returncode != 0:
                run_command(["umount", "--lazy", point], check=False)
    remaining = lab_mounts(name)
    if remaining:
        raise LabError(
            f"failed to unmount {', '.join(remaining)}; check what uses them with `fuser -vm PATH`",
            details={"lab": name, "mounts": remaining},
        )


def _remove_cgroups(name: str) -> None:
    # A cgroup directory can be removed once it has no processes and no child cgroups, so
    # go deepest first. Its control files do not count as content.
    for root in lab_cgroup_roots(name):
        for directory, _, _ in os.walk(root, topdown=False):
            try:
                os.rmdir(directory)
            except OSError as exc:
                logger.warning(
                    "failed to remove cgroup",
                    extra={"lab": name, "cgroup": directory, "error": str(exc)},
                )
    # The shared parent is removed with the last lab, because rmdir fails while another
    # lab's cgroups are in it.
    for point, fstype in _mount_table():
        if fstype in ("cgroup", "cgroup2"):
            with contextlib.suppress(OSError):
                (Path(point) / CGROUP_PARENT).rmdir()


def _mount_table() -> list[tuple[str, str]]:
    """Return (mount point, file system type) of every mount of this mount namespace."""
    entries = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            before, _, after = line.partition(" - ")
            fields = before.split()
            if len(fields) < 5 or not after:
                continue
            entries.append((_unescape(fields[4]), after.split()[0]))
    return entries


def _entries(directory: Path) -> list[str]:
    try:
        return [entry.name for entry in directory.iterdir() if entry.is_dir()]
    except OSError:
        return []


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal (\040 and so on).
    return field.encode().decode("unicode_escape")
