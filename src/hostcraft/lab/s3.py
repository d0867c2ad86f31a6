"""The lab's S3 storage: moto's S3 server on the bridge address, port 9000.

Backup jobs run on the lab's nodes, which reach the bridge but not the host's loopback, so
the server listens on the bridge. It keeps its objects in memory: stopping it loses them,
as losing a region loses the storage in it. moto accepts any access key here (it checks no
signatures). The server starts with one bucket, ``backups``. moto comes with HostCraft's test
extras (``pip install 'hostcraft[test]'``).

The server runs under a ``sh`` whose command line contains the lab's run directory, so the
lab's teardown finds and stops it like the lab's other daemons.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

import httpx

from hostcraft.errors import LabError
from hostcraft.lab.host import daemon_environment
from hostcraft.lab.processes import find_lab_processes, kill_processes, spawn_daemon
from hostcraft.lab.state import Lab, lab_run_dir

logger = logging.getLogger(__name__)

S3_PORT = 9000
S3_BUCKET = "backups"
READY_TIMEOUT = 30.0
# Runs the server as a child, not with exec, so this shell and its marker argument ($0) stay.
_SUPERVISE = '"$@"; exit $?'


def s3_endpoint(lab: Lab) -> str:
    """Return the URL of the lab's S3 server, which responds only while the server runs."""
    return f"http://{lab.bridge_address}:{S3_PORT}"


def s3_running(lab: Lab) -> bool:
    return bool(_processes(lab))


def start_s3_server(lab: Lab) -> str:
    """Start the lab's S3 server unless it runs, wait until it responds, and return its URL.

    The bucket ``S3_BUCKET`` exists when this returns.
    """
    if not s3_running(lab):
        directory = _directory(lab)
        directory.mkdir(parents=True, exist_ok=True)
        argv = ["sh", "-c", _SUPERVISE, f"{directory}/", _moto_server(), "-H", lab.bridge_address]
        spawn_daemon([*argv, "-p", str(S3_PORT)], log_path=directory / "s3.log", env=daemon_environment())
        logger.info("S3 server started", extra={"lab": lab.name, "endpoint": s3_endpoint(lab)})
    _wait_ready(lab)
    _create_bucket(lab, S3_BUCKET)
    return s3_endpoint(lab)


def stop_s3_server(lab: Lab) -> None:
    """Kill the lab's S3 server, which loses every object it stored. A stopped server is left as it is."""
    pids = _processes(lab)
    if pids:
        kill_processes(pids)
        logger.info("S3 server stopped", extra={"lab": lab.name})


def _create_bucket(lab: Lab, bucket: str) -> None:
    # moto accepts unsigned requests, and returns 409 for a bucket that exists already.
    try:
        response = httpx.put(f"{s3_endpoint(lab)}/{bucket}", timeout=10.0, trust_env=False)
    except httpx.HTTPError as exc:
        raise LabError(f"failed to create bucket {bucket} on {s3_endpoint(lab)}: {exc}") from exc
    if response.status_code not in (200, 409):
        raise LabError(
            f"failed to create bucket {bucket} on {s3_endpoint(lab)}: HTTP {response.status_code} "
            f"{response.text[:200]}",
            details={"lab": lab.name},
        )


def _moto_server() -> str:
    # The venv that runs HostCraft has moto's script next to its interpreter.
    beside = Path(sys.executable).parent / "moto_server"
    found = str(beside) if beside.is_file() else shutil.which("moto_server")
    if found is None:
        raise LabError(
            "moto_server not found: the lab's S3 server is moto; install it into HostCraft's "
            "environment with `pip install 'moto[server]>=5'` (part of `pip install 'hostcraft[test]'`)"
        )
    return found


def _directory(lab: Lab) -> Path:
    return lab_run_dir(lab.name) / "s3"


def _processes(lab: Lab) -> list[int]:
    return find_lab_processes([f"{_directory(lab)}/"])


def _wait_ready(lab: Lab) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(f"{s3_endpoint(lab)}/").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if not s3_running(lab):
                break
            time.sleep(0.2)
    log_path = _directory(lab) / "s3.log"
    raise LabError(
        f"S3 server of lab {lab.name} did not respond on {s3_endpoint(lab)} within "
        f"{READY_TIMEOUT:.0f} s; see {log_path}",
        details={"lab": lab.name},
    )
