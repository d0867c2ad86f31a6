"""HostCraft's own health probe of an application: what is requested and what counts as healthy.

An HTTP probe sends one request and never follows redirects unless ``followRedirects`` is
set: a ``302`` from ``/`` to a login page is a response from a serving app, and with the
default expected statuses (200-399) it counts as healthy. A TCP probe only connects.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

ProbeKind = Literal["http", "tcp"]
HttpMethod = Literal["GET", "HEAD"]

DEFAULT_EXPECTED_STATUS = "200-399"
DEFAULT_SUCCESSES_TO_RESOLVE = 2
DEFAULT_SLA_TARGET_PERCENT = 99.9

# Cloud metadata endpoints live in these ranges (169.254.169.254, fd00:ec2::254 is not
# link-local but fe80::/10 is where IPv6 link-local services sit).
LINK_LOCAL_NETWORKS = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))

PROBE_FIELDS = (
    "method",
    "expectedStatus",
    "followRedirects",
    "bodyContains",
    "verifyTls",
    "successesToResolve",
    "allowLinkLocal",
)
RECOVERY_FIELDS = ("stepTimeoutSeconds", "cooldownSeconds", "maxActionsPerHour")


@dataclass(frozen=True)
class ProbeOptions:
    """The request and judgement of an HTTP probe, and the successes that close an incident."""

    method: HttpMethod = "GET"
    expected_status: str = DEFAULT_EXPECTED_STATUS
    follow_redirects: bool = False
    body_contains: str | None = None
    verify_tls: bool = True
    successes_to_resolve: int = DEFAULT_SUCCESSES_TO_RESOLVE
    allow_link_local: bool = False
    expected_ranges: tuple[tuple[int, int], ...] = field(default=((200, 399),), compare=False)

    def status_ok(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expected_ranges)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "expectedStatus": self.expected_status,
            "followRedirects": self.follow_redirects,
            "bodyContains": self.body_contains,
            "verifyTls": self.verify_tls,
            "successesToResolve": self.successes_to_resolve,
            "allowLinkLocal": self.allow_link_local,
        }


@dataclass(frozen=True)
class RecoveryOptions:
    """Bounds of the recovery ladder: the wait for each rung, the pause between actions, the cap."""

    step_timeout_seconds: float = 120
    cooldown_seconds: float = 60
    max_actions_per_hour: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {
            "stepTimeoutSeconds": self.step_timeout_seconds,
            "cooldownSeconds": self.cooldown_seconds,
            "maxActionsPerHour": self.max_actions_per_hour,
        }


Problem = tuple[str, str]


def parse_expected_status(value: str) -> tuple[tuple[int, int], ...]:
    """Parse ``"200-399"`` or ``"200,204,301-302"`` into inclusive ranges; raise ValueError."""
    ranges = []
    for part in value.split(","):
        text = part.strip()
        low_text, _, high_text = text.partition("-")
        if not low_text.isdigit() or (high_text and not high_text.isdigit()):
            raise ValueError(f"{text!r} is not a status code or a range such as 200-399")
        low, high = int(low_text), int(high_text or low_text)
        if not 100 <= low <= high <= 599:
            raise ValueError(f"{text!r} is outside 100-599 or its range is reversed")
        ranges.append((low, high))
    return tuple(ranges)


def probe_kind(url: str) -> ProbeKind:
    return "tcp" if url.startswith("tcp://") else "http"


def is_link_local(host: str) -> bool:
    """Tell whether ``host`` is a literal IP address in a link-local range (IPv4-mapped included)."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in LINK_LOCAL_NETWORKS)


def check_probe_url(value: object, *, allow_link_local: bool) -> tuple[str | None, list[Problem]]:
    """Validate ``healthCheckUrl``: http(s) with a host, or tcp://host:port."""
    expected = (
        "expected an http:// or https:// URL such as 'https://api.example.com/health', "
        "or tcp://HOST:PORT for a TCP connect probe"
    )
    if value is None:
        return None, []
    if not isinstance(value, str) or any(character.isspace() for character in value):
        return None, [("healthCheckUrl", f"invalid healthCheckUrl {value!r}: {expected}")]
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError:
        return None, [("healthCheckUrl", f"invalid healthCheckUrl {value!r}: {expected}")]
    valid = url.scheme in ("http", "https") and bool(url.hostname)
    if url.scheme == "tcp":
        valid = bool(url.hostname) and port is not None and url.path in ("", "/")
    if not valid:
        return None, [("healthCheckUrl", f"invalid healthCheckUrl {value!r}: {expected}")]
    if not allow_link_local and is_link_local(url.hostname or ""):
        return None, [
            (
                "healthCheckUrl",
                f"healthCheckUrl {value!r} targets a link-local address (169.254.0.0/16, fe80::/10), "
                "where cloud metadata endpoints live: probes are not sent there unless "
                "healthProbe.allowLinkLocal is true",
            )
        ]
    return value, []


def parse_probe_options(raw: object) -> tuple[ProbeOptions, list[Problem]]:
    if raw is None:
        return ProbeOptions(), []
    if not isinstance(raw, dict):
        return ProbeOptions(), [("healthProbe", f"invalid healthProbe {raw!r}: expected an object")]
    problems: list[Problem] = [
        (f"healthProbe.{key}", f"unknown field {key!r}: expected one of {', '.join(PROBE_FIELDS)}")
        for key in raw
        if key not in PROBE_FIELDS
    ]
    method = raw.get("method", "GET")
    if method not in ("GET", "HEAD"):
        problems.append(
            ("healthProbe.method", f"invalid healthProbe.method {method!r}: expected GET or HEAD")
        )
        method = "GET"
    expected = raw.get("expectedStatus", DEFAULT_EXPECTED_STATUS)
    ranges: tuple[tuple[int, int], ...] = ((200, 399),)
    if not isinstance(expected, str):
        problems.append(
            (
                "healthProbe.expectedStatus",
                f"invalid healthProbe.expectedStatus {expected!r}: expected a string",
            )
        )
        expected = DEFAULT_EXPECTED_STATUS
    else:
        try:
            ranges = parse_expected_status(expected)
        except ValueError as exc:
            problems.append(("healthProbe.expectedStatus", f"invalid healthProbe.expectedStatus: {exc}"))
            expected = DEFAULT_EXPECTED_STATUS
    flags = {}
    for key, default in (("followRedirects", False), ("verifyTls", True), ("allowLinkLocal", False)):
        value = raw.get(key, default)
        if not isinstance(value, bool):
            problems.append(
                (f"healthProbe.{key}", f"invalid healthProbe.{key} {value!r}: expected true or false")
            )
            value = default
        flags[key] = value
    body = raw.get("bodyContains")
    if body is not None and (not isinstance(body, str) or not body):
        problems.append(
            (
                "healthProbe.bodyContains",
                f"invalid healthProbe.bodyContains {body!r}: expected a non-empty string",
            )
        )
        body = None
    successes = raw.get("successesToResolve", DEFAULT_SUCCESSES_TO_RESOLVE)
    if isinstance(successes, bool) or not isinstance(successes, int) or not 1 <= successes <= 100:
        problems.append(
            (
                "healthProbe.successesToResolve",
                f"invalid healthProbe.successesToResolve {successes!r}: expected an integer from 1 to 100",
            )
        )
        successes = DEFAULT_SUCCESSES_TO_RESOLVE
    options = ProbeOptions(
        method=method,
        expected_status=expected,
        follow_redirects=flags["followRedirects"],
        body_contains=body,
        verify_tls=flags["verifyTls"],
        successes_to_resolve=successes,
        allow_link_local=flags["allowLinkLocal"],
        expected_ranges=ranges,
    )
    return options, problems


def parse_recovery_options(raw: object) -> tuple[RecoveryOptions, list[Problem]]:
    if raw is None:
        return RecoveryOptions(), []
    if not isinstance(raw, dict):
        return RecoveryOptions(), [("recovery", f"invalid recovery {raw!r}: expected an object")]
    problems: list[Problem] = [
        (f"recovery.{key}", f"unknown field {key!r}: expected one of {', '.join(RECOVERY_FIELDS)}")
        for key in raw
        if key not in RECOVERY_FIELDS
    ]
    values: dict[str, float] = {}
    defaults = RecoveryOptions()
    for key, default, minimum in (
        ("stepTimeoutSeconds", defaults.step_timeout_seconds, 1.0),
        ("cooldownSeconds", defaults.cooldown_seconds, 0.0),
        ("maxActionsPerHour", float(defaults.max_actions_per_hour), 1.0),
    ):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            problems.append(
                (f"recovery.{key}", f"invalid recovery.{key} {value!r}: expected a number ≥ {minimum:g}")
            )
            value = default
        values[key] = float(value)
    if values["maxActionsPerHour"] != int(values["maxActionsPerHour"]):
        problems.append(
            ("recovery.maxActionsPerHour", "invalid recovery.maxActionsPerHour: expected an integer")
        )
    options = RecoveryOptions(
        step_timeout_seconds=values["stepTimeoutSeconds"],
        cooldown_seconds=values["cooldownSeconds"],
        max_actions_per_hour=int(values["maxActionsPerHour"]),
    )
    return options, problems


def parse_sla_target(value: object) -> tuple[float, list[Problem]]:
    if value is None:
        return DEFAULT_SLA_TARGET_PERCENT, []
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
        return DEFAULT_SLA_TARGET_PERCENT, [
            (
                "slaTarget",
                f"invalid slaTarget {value!r}: expected a percentage above 0 and at most 100, e.g. 99.9",
            )
        ]
    return float(value), []
