"""Wait until an app passes its health probe: the moment a failover's RTO is measured to."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from hostcraft.domain.probes import parse_probe_options
from hostcraft.errors import ConflictError
from hostcraft.store.models import utcnow

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
REQUEST_TIMEOUT_SECONDS = 5.0


def wait_until_healthy(spec: dict[str, Any], *, timeout: float) -> dt.datetime:
    """Probe the app's ``healthCheckUrl`` until it passes; return when it first did.

    Without a URL the deployment's own wait (tasks running, container healthchecks passing) is
    the health signal, so this returns at once. Raises ConflictError when ``timeout`` passes.
    """
    url = spec.get("healthCheckUrl")
    if not url:
        return utcnow()
    options, _ = parse_probe_options(spec.get("healthProbe"))
    deadline = time.monotonic() + timeout
    last = "no probe sent"
    while time.monotonic() < deadline:
        last = probe_once(
            url, options.status_ok, follow_redirects=options.follow_redirects, verify=options.verify_tls
        )
        if last == "ok":
            return utcnow()
        time.sleep(POLL_SECONDS)
    raise ConflictError(f"{url} did not pass its health probe within {timeout:.0f} s (last result: {last})")


def probe_once(url: str, status_ok: Any, *, follow_redirects: bool = False, verify: bool = True) -> str:
    """Send one probe; return ``ok`` or what failed."""
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        try:
            with socket.create_connection(
                (parts.hostname or "", parts.port or 0), timeout=REQUEST_TIMEOUT_SECONDS
            ):
                return "ok"
        except OSError as exc:
            return f"connect failed: {exc}"
    try:
        response = httpx.get(
            url,
            timeout=REQUEST_TIMEOUT_SECONDS,
            follow_redirects=follow_redirects,
            verify=verify,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok" if status_ok(response.status_code) else f"status {response.status_code}"
