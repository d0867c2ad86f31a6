"""One Docker engine per lab node: start, readiness, graceful stop and crash.

Each engine is a ``dockerd`` in the node's network namespace and its own UTS namespace
(hostname = node name), with its own data root, exec root, pid file, socket, cgroup parent
and ``containerd``. dockerd starts that containerd itself under the exec root, so a node
shares no state with the root namespace's engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import time
from collections import deque
from pathlib import Path

import docker
from docker.errors import DockerException
from requests.exceptions import RequestException

from hostcraft.errors import LabError
from hostcraft.lab.host import daemon_environment
from hostcraft.lab.processes import (
    find_lab_processes,
    kill_processes,
    pid_from_pidfile,
    process_alive,
    read_pidfile,
    signal_processes,
    spawn_daemon,
    wait_gone,
)
from hostcraft.lab.state import Lab, LabNode, node_data_root, node_run_dir

logger = logging.getLogger(__name__)

READY_TIMEOUT = 90.0
SHIM_SOCKET_DIR = Path("/run/containerd/s")
# Namespace in which dockerd keeps its containers in containerd (dockerd's default).
CONTAINERD_NAMESPACE = "moby"
STOP_TIMEOUT = 90.0

# Sets the hostname in the new UTS namespace, then execs nsenter. The node name and every
# path arrive as positional parameters, never inside the script text.
_SET_HOSTNAME_AND_EXEC = 'hostname "$0" && exec "$@"'


def engine_marker(lab: Lab, node: LabNode) -> str:
    """Return the path prefix that every daemon of the node has in its command line."""
    return f"{node_run_dir(lab.name, node.name)}/"


def engine_pid(lab: Lab, node: LabNode) -> int | None:
    """Return the pid of the node's running dockerd, or None."""
    return pid_from_pidfile(_pidfile(lab, node), engine_marker(lab, node))


def engine_running(lab: Lab, node: LabNode) -> bool:
    return engine_pid(lab, node) is not None


def node_processes(lab: Lab, node: LabNode) -> list[int]:
    """Return dockerd, containerd, shims, docker-proxy and container processes of the node."""
    return find_lab_processes([engine_marker(lab, node)])


def start_engine(lab: Lab, node: LabNode) -> int | None:
    """Start the node's dockerd unless it runs, without waiting for it to be ready.

    Return the pid of the new dockerd, or None when one was already running.
    """
    if engine_running(lab, node):
        return None
    leftovers = node_processes(lab, node)
    if leftovers:
        logger.info(
            "killing leftover processes of a stopped engine",
            extra={"lab": lab.name, "node": node.name, "pids": leftovers},
        )
        kill_processes(leftovers)
    _remove_stale_pidfiles(lab, node)
    _write_daemon_config(lab, node)
    node_data_root(lab.name, node.name).mkdir(parents=True, exist_ok=True)
    pid = spawn_daemon(
        _engine_argv(lab, node),
        log_path=node_run_dir(lab.name, node.name) / "dockerd.log",
        env=daemon_environment(),
    )
    logger.info("engine started", extra={"lab": lab.name, "node": node.name, "pid": pid})
    return pid


def wait_engine_ready(
    lab: Lab, node: LabNode, *, pid: int | None = None, timeout: float = READY_TIMEOUT
) -> None:
    """Wait until the node's engine responds to ``GET /_ping``, raising LabError on timeout.

    ``pid`` is the dockerd that ``start_engine`` returned; if it exits, the wait ends at once.
    """
    log_path = node_run_dir(lab.name, node.name) / "dockerd.log"
    deadline = time.monotonic() + timeout
    while not ping_engine(node):
        alive = process_alive(pid) if pid is not None else engine_running(lab, node)
        if not alive:
            raise LabError(
                f"engine of node {node.name} is not running; last lines of {log_path}:\n{_tail(log_path)}",
                details={"lab": lab.name, "node": node.name},
            )
        if time.monotonic() > deadline:
            raise LabError(
                f"engine of node {node.name} did not respond to GET /_ping within {timeout:.0f} s; "
                f"last lines of {log_path}:\n{_tail(log_path)}",
                details={"lab": lab.name, "node": node.name},
            )
        time.sleep(0.3)


def ping_engine(node: LabNode) -> bool:
    try:
        client = docker.DockerClient(base_url=node.endpoint, timeout=5)
    except (DockerException, RequestException):
        return False
    try:
        return bool(client.ping())
    except (DockerException, RequestException):
        return False
    finally:
        client.close()


def stop_engine(lab: Lab, node: LabNode, *, timeout: float = STOP_TIMEOUT) -> None:
    """Send SIGTERM to dockerd and wait until it and every process of the node are gone.

    dockerd stops its containers and its containerd on the way out. A process still there
    10 s after dockerd exits is killed, so that the next start begins clean.
    """
    pid = engine_pid(lab, node)
    if pid is not None:
        signal_processes([pid], signal.SIGTERM)
        if wait_gone([pid], timeout=timeout):
            raise LabError(
                f"engine of node {node.name} (pid {pid}) did not exit within {timeout:.0f} s "
                f"of SIGTERM; kill it with `lab kill {node.name}`",
                details={"lab": lab.name, "node": node.name, "pid": pid},
            )
    stragglers = wait_gone(node_processes(lab, node), timeout=10.0)
    if stragglers:
        logger.warning(
            "killing processes left after the engine stopped",
            extra={"lab": lab.name, "node": node.name, "pids": stragglers},
        )
        kill_processes(stragglers)


def kill_engine(lab: Lab, node: LabNode) -> None:
    """SIGKILL every process of the node at once, as a crash of the machine would end them."""
    kill_processes(node_processes(lab, node))
    for path in shim_sockets(lab.name, node.name):
        path.unlink(missing_ok=True)


def shim_sockets(lab_name: str, node_name: str) -> list[Path]:
    """Return the existing shim sockets of the node's containers.

    containerd 1.6 puts every shim socket in /run/containerd/s, a directory shared by all
    containerd instances on the machine, named sha256("<containerd address>/moby/<id>").
    A killed shim leaves its socket there, and the restarted containerd does not remove it.
    """
    run_dir = node_run_dir(lab_name, node_name)
    address = run_dir / "exec" / "containerd" / "containerd.sock"
    task_dir = run_dir / "exec" / "containerd" / "daemon" / "io.containerd.runtime.v2.task"
    container_ids = set(_entries(node_data_root(lab_name, node_name) / "containers"))
    container_ids.update(_entries(task_dir / CONTAINERD_NAMESPACE))
    sockets = []
    for container_id in sorted(container_ids):
        key = f"{address}/{CONTAINERD_NAMESPACE}/{container_id}".encode()
        path = SHIM_SOCKET_DIR / hashlib.sha256(key).hexdigest()
        if path.exists():
            sockets.append(path)
    return sockets


def _engine_argv(lab: Lab, node: LabNode) -> list[str]:
    run_dir = node_run_dir(lab.name, node.name)
    dockerd = [
        "dockerd",
        "--config-file", str(run_dir / "daemon.json"),
        "--data-root", str(node_data_root(lab.name, node.name)),
        "--exec-root", str(run_dir / "exec"),
        "--pidfile", str(_pidfile(lab, node)),
        "--host", node.endpoint,
        "--insecure-registry", lab.registry,
        "--cgroup-parent", f"/hostcraft-lab/{lab.name}/{node.name}",
    ]  # fmt: skip
    # `ip netns exec` would remount /sys and hide the cgroup mounts, so dockerd would fail
    # with "Devices cgroup isn't mounted"; nsenter only switches the network namespace.
    nsenter = ["nsenter", f"--net=/var/run/netns/{node.netns}", "--"]
    return [
        "unshare", "--uts", "--",
        "sh", "-c", _SET_HOSTNAME_AND_EXEC, node.name,
        *nsenter, *dockerd,
    ]  # fmt: skip


def _write_daemon_config(lab: Lab, node: LabNode) -> None:
    # An explicit config file keeps /etc/docker/daemon.json of the root engine out of the
    # lab. The key path gives every node its own engine ID; by default all engines on a
    # machine share /etc/docker/key.json and so report the same ID.
    config = {"deprecated-key-path": str(node_data_root(lab.name, node.name) / "key.json")}
    path = node_run_dir(lab.name, node.name) / "daemon.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")


def _remove_stale_pidfiles(lab: Lab, node: LabNode) -> None:
    # dockerd refuses to start while its pid file names a pid that has a /proc entry
    # (moby pkg/pidfile), and a zombie still has one. The pid file of its containerd is
    # cleared for the same reason.
    run_dir = node_run_dir(lab.name, node.name)
    for path in (_pidfile(lab, node), run_dir / "exec" / "containerd" / "containerd.pid"):
        pid = read_pidfile(path)
        if pid is not None and not process_alive(pid):
            path.unlink(missing_ok=True)


def _pidfile(lab: Lab, node: LabNode) -> Path:
    return node_run_dir(lab.name, node.name) / "docker.pid"


def _entries(directory: Path) -> list[str]:
    try:
        return [entry.name for entry in directory.iterdir()]
    except OSError:
        return []


def _tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as log_file:
            return "".join(deque(log_file, maxlen=lines))
    except OSError:
        return "(no log)"
