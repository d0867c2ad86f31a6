"""The lab shared by every test that needs a multi-node swarm, and helpers to use it.

One bare lab (3 managers + 2 workers, no swarm yet) lives for the whole session; tests form
the swarm through HostCraft's API. Set HOSTCRAFT_KEEP_LAB=1 to keep it after the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

LAB_NAME = os.environ.get("HOSTCRAFT_TEST_LAB", "hct")
LAB_SUBNET = os.environ.get("HOSTCRAFT_TEST_LAB_SUBNET", "10.77.90.0/24")


def _require_lab_capable() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") or os.environ.get("HOSTCRAFT_REQUIRE_DOCKER"):
            pytest.fail("lab tests need root: run the suite with scripts/test as root")
        pytest.skip("lab tests need root")


@pytest.fixture(scope="session")
def lab() -> Iterator[Any]:
    """A bare lab: engines up, images in the lab registry, no swarm."""
    _require_lab_capable()
    from hostcraft.lab import build_images, lab_down, lab_up

    lab_down(LAB_NAME)  # a lab left by an earlier, interrupted run would hold an old swarm
    lab = lab_up(LAB_NAME, managers=3, workers=2, subnet=LAB_SUBNET, swarm=False)
    build_images(lab)
    yield lab
    if not os.environ.get("HOSTCRAFT_KEEP_LAB"):
        lab_down(LAB_NAME)


def node_client(node: Any, timeout: int = 30) -> docker.DockerClient:
    return docker.DockerClient(base_url=node.endpoint, version="1.41", timeout=timeout)


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str) -> Any:
    """Poll until ``predicate`` returns something truthy; fail the test with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the engine may be restarting; keep polling
            last_error = exc
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})")
