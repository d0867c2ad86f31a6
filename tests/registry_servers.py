"""Real image registries for tests: Debian's ``docker-registry`` on a free loopback port.

Each registry stores its blobs in its own temporary folder. Docker trusts registries on
127.0.0.0/8 without ``--insecure-registry``, so the root-namespace engine pushes to them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class RegistryServer:
    """A running registry; ``address`` is its ``host:port``, as image references name it."""

    address: str
    storage: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_registry(directory: Path) -> Iterator[RegistryServer]:
    """Run ``docker-registry serve`` on a free loopback port until the block ends."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry not found: install Debian's docker-registry package (scripts/test does)")
    address = f"{LOOPBACK}:{free_port()}"
    storage = directory / "storage"
    storage.mkdir(parents=True)
    config = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}},
        "http": {"addr": address},
    }
    # JSON is valid YAML, which the registry reads.
    config_path = directory / "registry.yml"
    config_path.write_text(json.dumps(config))
    log_path = directory / "registry.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([binary, "serve", str(config_path)], stdout=log, stderr=log)
    try:
        _wait_ready(address, process, log_path)
        yield RegistryServer(address=address, storage=storage)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_ready(address: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://{address}/v2/", timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"docker-registry did not serve http://{address}/v2/: {log_path.read_text()[-2000:]}")
