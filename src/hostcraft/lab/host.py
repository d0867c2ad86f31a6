"""Checks that this machine can run a lab: Linux, root, and the tools the lab drives."""

from __future__ import annotations

import os
import shutil
import sys

from hostcraft.errors import LabError

# Debian packages that provide each program, for the error message.
REQUIRED_PROGRAMS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "hostname": "hostname",
    "umount": "mount",
    "dockerd": "docker.io",
    "containerd": "containerd",
    "docker-registry": "docker-registry",
}

# PATH for the daemons: they find containerd, runc, docker-proxy and iptables through it.
DAEMON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def require_lab_host(*, programs: dict[str, str] | None = None) -> None:
    """Raise LabError unless this is Linux, we are root, and the lab's programs are installed."""
    if not sys.platform.startswith("linux"):
        raise LabError(f"the lab needs Linux (network namespaces, bridges, iptables); this is {sys.platform}")
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root: it creates network namespaces, bridges and iptables rules "
            "and runs Docker engines; run it as root (for example with sudo)"
        )
    wanted = REQUIRED_PROGRAMS if programs is None else programs
    missing = {
        program: package
        for program, package in wanted.items()
        if shutil.which(program, path=DAEMON_PATH) is None
    }
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        raise LabError(
            f"missing programs for the lab: {', '.join(sorted(missing))}; "
            f"install them with `apt-get install {packages}`",
            details={"missing": sorted(missing)},
        )


def daemon_environment() -> dict[str, str]:
    """Return the environment for lab daemons, which contains only PATH.

    Proxy variables are left out on purpose, so that no engine or registry in the lab
    sends traffic to a proxy beyond this machine.
    """
    return {"PATH": DAEMON_PATH}
