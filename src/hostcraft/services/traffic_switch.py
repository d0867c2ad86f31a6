"""Switch an application's traffic to another region through a pluggable traffic switch.

An app document's ``dr.trafficSwitch`` names a switch by ``type``. HostCraft ships ``webhook``,
which POSTs the event as JSON. Other types come from plug-ins: a package declares a factory in
the entry-point group ``hostcraft.traffic_switches``, under the type name it handles::

    [project.entry-points."hostcraft.traffic_switches"]
    example-dns = "example_dns.switch:ExampleDnsSwitch"

The factory is called with the whole ``trafficSwitch`` object, both when the document is
validated and before each switch. It raises ValueError for an invalid object and must send
nothing until ``switch()``, which returns a ``SwitchResult`` or raises a ``HostCraftError``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from hostcraft.domain.probes import is_link_local
from hostcraft.errors import TrafficSwitchFailed, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.store.models import Application

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hostcraft.traffic_switches"
WEBHOOK = "webhook"
WEBHOOK_FIELDS = ("type", "url", "secret", "timeoutSeconds")
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_TIMEOUT_SECONDS = 120.0
WEBHOOK_ATTEMPTS = 3
BACKOFF_SECONDS = 1.0
RESPONSE_EXCERPT_CHARS = 200

SwitchEventKind = Literal["failover", "failback", "drill"]


@dataclass(frozen=True)
class SwitchEvent:
    """A request to send an application's traffic from one region to another."""

    event: SwitchEventKind
    application: str
    application_id: int
    from_region: str
    to_region: str
    run_id: int
    health_check_url: str | None
    at: datetime

    def to_payload(self) -> dict[str, Any]:
        """Return the JSON body a webhook receives, with ``at`` in UTC (a naive time counts as UTC)."""
        at = self.at.replace(tzinfo=UTC) if self.at.tzinfo is None else self.at.astimezone(UTC)
        return {
            "event": self.event,
            "application": self.application,
            "applicationId": self.application_id,
            "fromRegion": self.from_region,
            "toRegion": self.to_region,
            "runId": self.run_id,
            "healthCheckUrl": self.health_check_url,
            "at": at.isoformat().replace("+00:00", "Z"),
        }


@dataclass(frozen=True)
class SwitchResult:
    """The outcome of a switch: its type, its target (a URL, a DNS record), the attempts and a summary."""

    switch_type: str
    target: str
    attempts: int
    message: str
    status_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.switch_type,
            "target": self.target,
            "attempts": self.attempts,
            "statusCode": self.status_code,
            "message": self.message,
        }


class TrafficSwitch(Protocol):
    def switch(self, event: SwitchEvent) -> SwitchResult: ...


TrafficSwitchFactory = Callable[[Mapping[str, Any]], TrafficSwitch]


@dataclass(frozen=True)
class _Attempt:
    """The outcome of one POST: ``error`` is None on 2xx, and 5xx and connection errors are ``retryable``."""

    status_code: int | None
    error: str | None = None
    retryable: bool = False


@dataclass(frozen=True)
class WebhookSwitch:
    """POST the event as JSON. A 2xx status confirms it, and connection errors and 5xx are retried.

    With a ``secret``, ``X-HostCraft-Signature: sha256=<hex>`` is the HMAC-SHA256 of the body.
    """

    url: str
    secret: str | None = field(default=None, repr=False)
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    attempts: int = WEBHOOK_ATTEMPTS
    backoff_seconds: float = BACKOFF_SECONDS

    def __post_init__(self) -> None:
        reason = webhook_url_problem(self.url)
        if reason is not None:
            raise ValueError(f"invalid webhook url {self.url!r}: {reason}")
        if self.attempts < 1:
            raise ValueError(f"invalid attempts {self.attempts}: expected at least 1")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WebhookSwitch:
        """Build the switch from a ``trafficSwitch`` object that ``parse_traffic_switch`` accepted."""
        return cls(
            url=str(config["url"]),
            secret=config.get("secret"),
            timeout_seconds=float(config.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)),
        )

    def switch(self, event: SwitchEvent) -> SwitchResult:
        body = json.dumps(event.to_payload(), separators=(",", ":")).encode()
        headers = self.headers(event, body)
        outcome = _Attempt(status_code=None)
        # No redirects: a receiver must not be able to point the request at another host.
        with httpx.Client(timeout=self.timeout_seconds, trust_env=False, follow_redirects=False) as client:
            for attempt in range(1, self.attempts + 1):
                outcome = _post(client, self.url, body, headers)
                if outcome.error is None:
                    return self._confirmed(event, attempt, outcome.status_code)
                if not outcome.retryable:
                    raise self._rejected(event, attempt, outcome)
                logger.warning(
                    "failed to send traffic switch webhook: %s",
                    outcome.error,
                    extra={"app": event.application, "run_id": event.run_id, "attempt": attempt},
                )
                if attempt < self.attempts:
                    time.sleep(self.backoff_seconds * attempt)
        raise TrafficSwitchFailed(
            f"webhook {self.url} did not confirm the {event.event} of {event.application} after "
            f"{self.attempts} attempts: {outcome.error}; check that the receiver runs, then switch "
            "traffic again",
            details={"url": self.url, "status": outcome.status_code, "attempts": self.attempts},
        )

    def headers(self, event: SwitchEvent, body: bytes) -> dict[str, str]:
        """Return the request headers, with the body's signature when a secret is set."""
        headers = {"Content-Type": "application/json", "X-HostCraft-Event": event.event}
        if self.secret:
            signature = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-HostCraft-Signature"] = f"sha256={signature}"
        return headers

    def _confirmed(self, event: SwitchEvent, attempt: int, status_code: int | None) -> SwitchResult:
        return SwitchResult(
            switch_type=WEBHOOK,
            target=self.url,
            attempts=attempt,
            message=f"webhook {self.url} confirmed the {event.event} with HTTP {status_code}",
            status_code=status_code,
        )

    def _rejected(self, event: SwitchEvent, attempt: int, outcome: _Attempt) -> TrafficSwitchFailed:
        return TrafficSwitchFailed(
            f"webhook {self.url} rejected the {event.event} of {event.application} with {outcome.error}; "
            "fix the receiver or dr.trafficSwitch, then switch traffic again",
            details={"url": self.url, "status": outcome.status_code, "attempts": attempt},
        )


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> _Attempt:
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.TransportError as exc:
        return _Attempt(status_code=None, error=f"{type(exc).__name__}: {exc}", retryable=True)
    if response.is_success:
        return _Attempt(status_code=response.status_code)
    excerpt = response.text[:RESPONSE_EXCERPT_CHARS].strip()
    error = f"HTTP {response.status_code}" + (f": {excerpt}" if excerpt else "")
    return _Attempt(status_code=response.status_code, error=error, retryable=response.status_code >= 500)


def switch_types() -> list[str]:
    """Return the usable switch types: ``webhook`` and the type of every installed plug-in."""
    return sorted({WEBHOOK, *(entry_point.name for entry_point in entry_points(group=ENTRY_POINT_GROUP))})


def load_switch_factory(switch_type: str) -> TrafficSwitchFactory | None:
    """Return the factory of ``switch_type``, or None when it is neither built in nor installed.

    The built-in ``webhook`` cannot be replaced by a plug-in of the same name.
    """
    if switch_type == WEBHOOK:
        return WebhookSwitch.from_config
    for entry_point in entry_points(group=ENTRY_POINT_GROUP, name=switch_type):
        try:
            factory: TrafficSwitchFactory = entry_point.load()
        # A plug-in's import runs third-party code, which can fail in any way.
        except Exception as exc:
            raise TrafficSwitchFailed(
                f"traffic switch plug-in {switch_type!r} ({entry_point.value}) failed to load: "
                f"{type(exc).__name__}: {exc}; reinstall or remove the package that provides it",
                details={"type": switch_type},
            ) from exc
        return factory
    return None


def build_traffic_switch(config: Mapping[str, Any]) -> TrafficSwitch:
    """Build the switch that a ``dr.trafficSwitch`` object accepted by ``parse_traffic_switch`` names."""
    switch_type = str(config.get("type"))
    factory = load_switch_factory(switch_type)
    if factory is None:
        raise TrafficSwitchFailed(
            f"traffic switch type {switch_type!r} is not installed: install the plug-in package that "
            f"provides it, or set dr.trafficSwitch to one of {', '.join(switch_types())}",
            details={"type": switch_type},
        )
    try:
        return factory(config)
    except ValueError as exc:
        raise TrafficSwitchFailed(
            f"invalid dr.trafficSwitch of type {switch_type!r}: {exc}", details={"type": switch_type}
        ) from exc


def parse_traffic_switch(raw: object, path: str) -> dict[str, Any] | None:
    """Validate a ``trafficSwitch`` object found at ``path`` and return it with defaults, or None for null.

    Raises ValidationError whose ``field`` is the offending input, e.g. ``dr.trafficSwitch.url``.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValidationError(
            f"invalid {path} {raw!r}: expected an object such as "
            '{"type": "webhook", "url": "https://hooks.example.com/failover"}, or null',
            field=path,
        )
    switch_type = raw.get("type")
    if not isinstance(switch_type, str) or not switch_type:
        raise ValidationError(
            f"invalid {path}.type {switch_type!r}: expected one of {', '.join(switch_types())}",
            field=f"{path}.type",
        )
    if switch_type == WEBHOOK:
        return _parse_webhook(raw, path)
    return _parse_plugin(raw, switch_type, path)


def _parse_webhook(raw: dict[str, Any], path: str) -> dict[str, Any]:
    problems = [
        (f"{path}.{key}", f"unknown field {path}.{key}: expected one of {', '.join(WEBHOOK_FIELDS)}")
        for key in raw
        if key not in WEBHOOK_FIELDS
    ]

    url = raw.get("url")
    reason = webhook_url_problem(url)
    if reason is not None:
        problems.append((f"{path}.url", f"invalid {path}.url {url!r}: {reason}"))

    secret = raw.get("secret")
    if secret is not None and (not isinstance(secret, str) or not secret):
        problems.append((f"{path}.secret", f"invalid {path}.secret: expected a non-empty string"))

    timeout = raw.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT_SECONDS
    ):
        problems.append(
            (
                f"{path}.timeoutSeconds",
                f"invalid {path}.timeoutSeconds {timeout!r}: expected seconds above 0 and at most "
                f"{MAX_TIMEOUT_SECONDS:g}",
            )
        )
    _raise_problems(problems)

    config: dict[str, Any] = {"type": WEBHOOK, "url": url, "timeoutSeconds": float(timeout)}
    if secret is not None:
        config["secret"] = secret
    return config


def _parse_plugin(raw: dict[str, Any], switch_type: str, path: str) -> dict[str, Any]:
    try:
        factory = load_switch_factory(switch_type)
    except TrafficSwitchFailed as exc:
        raise ValidationError(exc.message, field=f"{path}.type") from exc
    if factory is None:
        raise ValidationError(
            f"unknown {path}.type {switch_type!r}: expected one of {', '.join(switch_types())}; "
            "other types need the plug-in package that provides them installed on the control plane",
            field=f"{path}.type",
        )
    try:
        factory(raw)
    except ValueError as exc:
        raise ValidationError(f"invalid {path} of type {switch_type!r}: {exc}", field=path) from exc
    return dict(raw)


def _raise_problems(problems: list[tuple[str, str]]) -> None:
    if not problems:
        return
    first_path, first_message = problems[0]
    raise ValidationError(
        first_message,
        field=first_path,
        details={"problems": [{"field": path, "message": message} for path, message in problems]},
    )


def webhook_url_problem(url: object) -> str | None:
    """Return why ``url`` cannot be a webhook target, or None: it must be http(s) and not link-local."""
    expected = "expected an http:// or https:// URL such as 'https://hooks.example.com/failover'"
    if not isinstance(url, str) or not url or any(character.isspace() for character in url):
        return expected
    try:
        parts = urlsplit(url)
        # Reading the port raises ValueError when it is not a number from 0 to 65535.
        _ = parts.port
    except ValueError:
        return expected
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return expected
    if is_link_local(parts.hostname):
        return (
            "the host is a link-local address (169.254.0.0/16, fe80::/10), where cloud metadata "
            "endpoints live, and webhooks are never sent there"
        )
    return None


def switch_for_policy(
    runtime: Runtime,
    app: Application,
    config: Mapping[str, Any],
    *,
    event: SwitchEventKind,
    from_region: str,
    to_region: str,
    run_id: int,
) -> str:
    """Switch an app's traffic with the switch its DR policy names; return what the switch reported.

    A webhook's signing key is the value of the app secret ``secretName`` names, read only here.
    """
    from hostcraft.services.applications import secret_values

    resolved = dict(config)
    secret_name = resolved.pop("secretName", None)
    if secret_name:
        resolved["secret"] = secret_values(app, runtime).get(str(secret_name))
    switch = build_traffic_switch(resolved)
    result = switch.switch(
        SwitchEvent(
            event=event,
            application=f"{app.project}/{app.name}",
            application_id=app.id,
            from_region=from_region,
            to_region=to_region,
            run_id=run_id,
            health_check_url=app.spec.get("healthCheckUrl"),
            at=datetime.now(UTC),
        )
    )
    return result.message
