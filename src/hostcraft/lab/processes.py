"""Starting, finding and signalling the lab's daemons through ``/proc``.

A lab's processes are recognized by a marker, a path under the lab's run directory, in
their command line: ``dockerd`` has it in ``--exec-root``, its ``containerd`` in
``--config``, every shim in ``-address`` and the registry in its config path. Container
processes and ``docker-proxy`` do not carry it, so they are found as descendants of those.
Zombies count as gone: pid 1 of some machines never reaps orphans.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from hostcraft.errors import LabError

logger = logging.getLogger(__name__)

# Programs that the lab itself starts, directly or through dockerd. A process that merely
# mentions a lab path (an editor, `tail -f` on a log) is never one of the lab's roots.
LAB_PROGRAMS = frozenset(
    {
        "dockerd",
        "containerd",
        "containerd-shim",
        "containerd-shim-runc-v2",
        "docker-proxy",
        "docker-registry",
        "runc",
        "unshare",
        "nsenter",
        "sh",
    }
)

# Popen objects of the daemons this process started, kept so that they can be reaped.
_children: dict[int, subprocess.Popen[bytes]] = {}


def spawn_daemon(argv: Sequence[str], *, log_path: Path, env: Mapping[str, str]) -> int:
    """Start ``argv`` in its own session with output appended to ``log_path``; return its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise LabError(f"failed to start {argv[0]}: {exc}") from exc
    _children[process.pid] = process
    return process.pid


def process_alive(pid: int) -> bool:
    """Return whether ``pid`` is a running process (zombies are not)."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    state = _process_state(pid)
    return state is not None and state not in ("Z", "X")


def command_line(pid: int) -> list[str]:
    """Return the arguments of ``pid``, or an empty list for a zombie or a finished process."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_from_pidfile(path: Path, marker: str) -> int | None:
    """Return the live pid recorded in ``path`` if its command line still contains ``marker``.

    The marker check protects against a pid that the kernel has reused since the file
    was written.
    """
    pid = read_pidfile(path)
    if pid is None or not process_alive(pid):
        return None
    if not any(marker in argument for argument in command_line(pid)):
        return None
    return pid


def find_lab_processes(markers: Iterable[str]) -> list[int]:
    """Return the pids of lab programs whose command line contains a marker, and their descendants.

    The calling process and its ancestors are never returned.
    """
    marker_list = list(markers)
    parents = _parent_map()
    protected = _ancestors(os.getpid(), parents) | {os.getpid()}
    roots = set()
    for pid in parents:
        if pid in protected:
            continue
        arguments = command_line(pid)
        if not arguments or os.path.basename(arguments[0]) not in LAB_PROGRAMS:
            continue
        if any(marker in argument for argument in arguments for marker in marker_list):
            roots.add(pid)
    found = roots | _descendants(roots, parents)
    return sorted(pid for pid in found - protected if process_alive(pid))


def signal_processes(pids: Iterable[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def wait_gone(pids: Iterable[int], *, timeout: float) -> list[int]:
    """Wait until none of ``pids`` is alive; return those still alive after ``timeout`` seconds."""
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while remaining:
        remaining = [pid for pid in remaining if process_alive(pid)]
        if not remaining or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return remaining


def kill_processes(pids: Sequence[int], *, timeout: float = 15.0) -> None:
    """SIGKILL ``pids`` and wait for them to be gone, raising LabError if some survive."""
    signal_processes(pids, signal.SIGKILL)
    survivors = wait_gone(pids, timeout=timeout)
    if survivors:
        raise LabError(
            f"processes {survivors} did not exit within {timeout:.0f} s of SIGKILL; "
            "they may be stuck in the kernel (uninterruptible sleep), check `ps -o stat`",
            details={"pids": survivors},
        )


def describe_process(pid: int) -> str:
    arguments = command_line(pid)
    program = os.path.basename(arguments[0]) if arguments else "?"
    return f"process {pid} ({program})"


def _process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in field 2 may contain spaces and parentheses, so split after the
    # last closing parenthesis.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] if fields else None


def _parent_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) >= 2:
            parents[int(entry)] = int(fields[1])
    return parents


def _ancestors(pid: int, parents: Mapping[int, int]) -> set[int]:
    found: set[int] = set()
    current = parents.get(pid)
    while current and current not in found:
        found.add(current)
        current = parents.get(current)
    return found


def _descendants(roots: set[int], parents: Mapping[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    pending = list(roots)
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found and child not in roots:
                found.add(child)
                pending.append(child)
    return found
