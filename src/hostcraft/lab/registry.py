"""The lab's image registry: Debian's ``docker-registry`` on the bridge address, port 5000.

It runs in the root namespace, so every node reaches it over the bridge, and stores its
blobs under the lab's data directory. Engines trust it through ``--insecure-registry``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx

from hostcraft.errors import LabError
from hostcraft.lab.host import daemon_environment
from hostcraft.lab.processes import kill_processes, pid_from_pidfile, spawn_daemon
from hostcraft.lab.state import Lab, lab_data_dir, lab_run_dir

logger = logging.getLogger(__name__)

READY_TIMEOUT = 30.0
MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def registry_config_path(lab_name: str) -> Path:
    return lab_run_dir(lab_name) / "registry.yml"


def registry_pid(lab: Lab) -> int | None:
    return pid_from_pidfile(_pidfile(lab), str(registry_config_path(lab.name)))


def start_registry(lab: Lab) -> None:
    """Start the registry unless it runs, and wait until it serves ``/v2/``."""
    if registry_pid(lab) is None:
        _write_config(lab)
        pid = spawn_daemon(
            ["docker-registry", "serve", str(registry_config_path(lab.name))],
            log_path=lab_run_dir(lab.name) / "registry.log",
            env=daemon_environment(),
        )
        _pidfile(lab).write_text(f"{pid}\n")
        logger.info("registry started", extra={"lab": lab.name, "pid": pid})
    _wait_ready(lab)


def stop_registry(lab: Lab) -> None:
    """Stop the registry (a lost region's registry, in DR tests and the demo); its blobs stay."""
    pid = registry_pid(lab)
    if pid is not None:
        kill_processes([pid])
        logger.info("registry stopped", extra={"lab": lab.name, "pid": pid})


def registry_client(lab: Lab, *, timeout: float = 10.0) -> httpx.Client:
    """Return an HTTP client for the lab registry that ignores proxy variables on purpose."""
    return httpx.Client(base_url=f"http://{lab.registry}", timeout=timeout, trust_env=False)


def image_labels(lab: Lab, repository: str, tag: str) -> dict[str, str] | None:
    """Return the labels of ``repository:tag`` as stored in the registry, or None if absent."""
    with registry_client(lab) as client:
        manifest = client.get(f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_MEDIA_TYPE})
        if manifest.status_code == 404:
            return None
        manifest.raise_for_status()
        config_digest = manifest.json()["config"]["digest"]
        config = client.get(f"/v2/{repository}/blobs/{config_digest}")
        config.raise_for_status()
    labels: dict[str, str] = config.json().get("config", {}).get("Labels") or {}
    return labels


def _write_config(lab: Lab) -> None:
    storage = lab_data_dir(lab.name) / "registry"
    storage.mkdir(parents=True, exist_ok=True)
    # JSON is valid YAML, so the registry reads this without a YAML writer on our side.
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
        },
        "http": {"addr": lab.registry, "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }
    registry_config_path(lab.name).write_text(json.dumps(config, indent=2) + "\n")


def _wait_ready(lab: Lab) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    with registry_client(lab, timeout=2.0) as client:
        while True:
            try:
                if client.get("/v2/").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if registry_pid(lab) is None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    log_path = lab_run_dir(lab.name) / "registry.log"
    raise LabError(
        f"registry of lab {lab.name} did not serve http://{lab.registry}/v2/ within "
        f"{READY_TIMEOUT:.0f} s; see {log_path}",
        details={"lab": lab.name},
    )


def _pidfile(lab: Lab) -> Path:
    return lab_run_dir(lab.name) / "registry.pid"
