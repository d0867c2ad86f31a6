"""The disaster-recovery policy of an application and the rules a failover decides by.

The policy is the app document's ``dr`` object. A failover moves the app from its active region
to a DR region, tried in order of region priority. A failback moves it to its home region. The
rules here are pure, and the services pass them what they observed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hostcraft.domain.probes import check_probe_url

DrMode = Literal["cold", "warm"]
Problem = tuple[str, str]

DEFAULT_RTO_SECONDS = 300
DEFAULT_RPO_SECONDS = 86400
DEFAULT_GRACE_PERIOD_SECONDS = 60
DEFAULT_FAILOVER_PRIORITY = 100
TRAFFIC_SWITCH_ENTRY_POINTS = "hostcraft.traffic_switches"
DR_FIELDS = (
    "homeRegion",
    "regions",
    "mode",
    "rtoSeconds",
    "rpoSeconds",
    "automatic",
    "gracePeriodSeconds",
    "priority",
    "healthCheckUrls",
    "trafficSwitch",
    "drillSchedule",
    "drillTimezone",
)


@dataclass(frozen=True)
class DrPolicy:
    """The regions an app may run in after a region is lost, and its recovery objectives."""

    home_region: str | None = None
    regions: tuple[str, ...] = ()
    mode: DrMode = "cold"
    rto_seconds: int = DEFAULT_RTO_SECONDS
    rpo_seconds: int = DEFAULT_RPO_SECONDS
    automatic: bool = False
    grace_period_seconds: int = DEFAULT_GRACE_PERIOD_SECONDS
    priority: int = DEFAULT_FAILOVER_PRIORITY
    health_check_urls: dict[str, str] = field(default_factory=dict)
    traffic_switch: dict[str, Any] | None = None
    drill_schedule: str | None = None
    drill_timezone: str = "UTC"

    def to_dict(self) -> dict[str, Any]:
        return {
            "homeRegion": self.home_region,
            "regions": list(self.regions),
            "mode": self.mode,
            "rtoSeconds": self.rto_seconds,
            "rpoSeconds": self.rpo_seconds,
            "automatic": self.automatic,
            "gracePeriodSeconds": self.grace_period_seconds,
            "priority": self.priority,
            "healthCheckUrls": dict(self.health_check_urls),
            "trafficSwitch": self.traffic_switch,
            "drillSchedule": self.drill_schedule,
            "drillTimezone": self.drill_timezone,
        }

    def health_check_url(self, region_code: str, default: str | None) -> str | None:
        """Return the probe URL of the app while it runs in ``region_code``."""
        return self.health_check_urls.get(region_code, default)


def policy_of(spec: dict[str, Any]) -> DrPolicy | None:
    """Return the DR policy of a stored (validated) app document, or None when it has none."""
    raw = spec.get("dr")
    if not raw:
        return None
    policy, problems = parse_dr_policy(raw)
    if problems:
        raise ValueError(f"stored dr policy is invalid: {problems[0][1]}")
    return policy


def parse_dr_policy(raw: object) -> tuple[DrPolicy | None, list[Problem]]:
    """Validate the ``dr`` object of an app document; region codes are checked by the service."""
    if raw is None:
        return None, []
    if not isinstance(raw, dict):
        return None, [("dr", f"invalid dr {raw!r}: expected an object")]
    problems: list[Problem] = [
        (f"dr.{key}", f"unknown field {key!r}: expected one of {', '.join(DR_FIELDS)}")
        for key in raw
        if key not in DR_FIELDS
    ]
    home = _optional_code(raw.get("homeRegion"), "dr.homeRegion", problems)
    regions = _region_codes(raw.get("regions"), problems)
    if home is not None and home in regions:
        problems.append(("dr.regions", f"the home region {home!r} cannot also be a DR region"))
    mode = raw.get("mode", "cold")
    if mode not in ("cold", "warm"):
        problems.append(("dr.mode", f"invalid dr.mode {mode!r}: expected 'cold' or 'warm'"))
        mode = "cold"
    automatic = raw.get("automatic", False)
    if not isinstance(automatic, bool):
        problems.append(("dr.automatic", f"invalid dr.automatic {automatic!r}: expected true or false"))
        automatic = False
    numbers = {
        key: _whole_number(raw.get(key), f"dr.{key}", default, minimum, problems)
        for key, default, minimum in (
            ("rtoSeconds", DEFAULT_RTO_SECONDS, 1),
            ("rpoSeconds", DEFAULT_RPO_SECONDS, 0),
            ("gracePeriodSeconds", DEFAULT_GRACE_PERIOD_SECONDS, 0),
            ("priority", DEFAULT_FAILOVER_PRIORITY, 0),
        )
    }
    urls = _health_check_urls(raw.get("healthCheckUrls"), problems)
    schedule, timezone = _drill_schedule(raw, problems)
    switch = _traffic_switch(raw.get("trafficSwitch"), problems)
    policy = DrPolicy(
        home_region=home,
        regions=tuple(regions),
        mode=mode,
        rto_seconds=numbers["rtoSeconds"],
        rpo_seconds=numbers["rpoSeconds"],
        automatic=automatic,
        grace_period_seconds=numbers["gracePeriodSeconds"],
        priority=numbers["priority"],
        health_check_urls=urls,
        traffic_switch=switch,
        drill_schedule=schedule,
        drill_timezone=timezone,
    )
    return policy, problems


def _optional_code(value: object, path: str, problems: list[Problem]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append((path, f"invalid {path} {value!r}: expected a region code, e.g. eu-west-1"))
        return None
    return value


def _region_codes(value: object, problems: list[Problem]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        problems.append(("dr.regions", f"invalid dr.regions {value!r}: expected a list of region codes"))
        return []
    if len(set(value)) != len(value):
        problems.append(("dr.regions", "dr.regions lists a region twice"))
    return list(dict.fromkeys(value))


def _whole_number(value: object, path: str, default: int, minimum: int, problems: list[Problem]) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.append((path, f"invalid {path} {value!r}: expected a whole number ≥ {minimum}"))
        return default
    return value


def _health_check_urls(value: object, problems: list[Problem]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(
            ("dr.healthCheckUrls", f"invalid dr.healthCheckUrls {value!r}: expected an object region -> URL")
        )
        return {}
    urls: dict[str, str] = {}
    for region, url in value.items():
        checked, url_problems = check_probe_url(url, allow_link_local=False)
        for _, message in url_problems:
            problems.append((f"dr.healthCheckUrls.{region}", message))
        if checked is not None and not url_problems:
            urls[str(region)] = checked
    return urls


def _drill_schedule(raw: dict[str, Any], problems: list[Problem]) -> tuple[str | None, str]:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from hostcraft.domain.backup_policy import next_run

    expression = raw.get("drillSchedule")
    timezone = raw.get("drillTimezone") or "UTC"
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(("dr.drillTimezone", f"invalid dr.drillTimezone {timezone!r}: expected an IANA zone"))
        timezone = "UTC"
    if expression is None:
        return None, str(timezone)
    expected = "expected a 5-field cron expression, e.g. '0 3 * * 0'"
    if not isinstance(expression, str) or len(expression.split()) != 5:
        problems.append(("dr.drillSchedule", f"invalid dr.drillSchedule {expression!r}: {expected}"))
        return None, str(timezone)
    try:
        next_run(expression, str(timezone), after=dt.datetime.now(dt.UTC))
    except (ValueError, KeyError) as exc:
        problems.append(("dr.drillSchedule", f"invalid dr.drillSchedule {expression!r}: {exc}"))
        return None, str(timezone)
    return expression, str(timezone)


def _traffic_switch(value: object, problems: list[Problem]) -> dict[str, Any] | None:
    """Validate ``dr.trafficSwitch``: a webhook, or a kind a plug-in registers as an entry point."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        problems.append(
            ("dr.trafficSwitch", f"invalid dr.trafficSwitch {value!r}: expected an object with a 'type'")
        )
        return None
    kind = value["type"]
    if kind != "webhook":
        # A plug-in validates its own fields when the failover builds it.
        if kind not in installed_traffic_switches():
            problems.append(
                (
                    "dr.trafficSwitch.type",
                    f"unknown traffic switch {kind!r}: expected 'webhook' or an installed plug-in "
                    f"({', '.join(sorted(installed_traffic_switches())) or 'none installed'})",
                )
            )
            return None
        return dict(value)
    unknown = [key for key in value if key not in ("type", "url", "secretName", "timeoutSeconds")]
    for key in unknown:
        problems.append(
            (f"dr.trafficSwitch.{key}", f"unknown field {key!r}: expected url, secretName, timeoutSeconds")
        )
    url, url_problems = check_probe_url(value.get("url"), allow_link_local=False)
    if url is None or url.startswith("tcp://") or url_problems:
        problems.append(
            (
                "dr.trafficSwitch.url",
                f"invalid dr.trafficSwitch.url {value.get('url')!r}: expected an http(s) URL "
                "that is not link-local",
            )
        )
        return None
    timeout = value.get("timeoutSeconds", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 120:
        problems.append(
            (
                "dr.trafficSwitch.timeoutSeconds",
                f"invalid timeoutSeconds {timeout!r}: expected 0 < seconds ≤ 120",
            )
        )
        timeout = 10
    # The signing key is one of the app's secrets, named here, so its value stays encrypted.
    secret_name = value.get("secretName")
    if secret_name is not None and not isinstance(secret_name, str):
        problems.append(
            (
                "dr.trafficSwitch.secretName",
                "invalid dr.trafficSwitch.secretName: expected the name of an app secret",
            )
        )
        secret_name = None
    return {"type": "webhook", "url": url, "secretName": secret_name, "timeoutSeconds": timeout}


def installed_traffic_switches() -> set[str]:
    """Return the traffic switch kinds that installed plug-ins register (entry point group)."""
    from importlib.metadata import entry_points

    return {entry.name for entry in entry_points(group=TRAFFIC_SWITCH_ENTRY_POINTS)}


# Decisions


def dr_targets(policy: DrPolicy, *, active: str, priorities: dict[str, int]) -> list[str]:
    """Return the regions a failover of an app active in ``active`` may go to, best first.

    DR regions come in order of region priority (1 first). The home region is a candidate too
    when the app runs elsewhere, so a second failure can move it home.
    """
    candidates = [code for code in policy.regions if code != active and code in priorities]
    if policy.home_region and policy.home_region != active and policy.home_region in priorities:
        candidates.append(policy.home_region)
    return sorted(dict.fromkeys(candidates), key=lambda code: (priorities[code], code))


@dataclass(frozen=True)
class RegionObservation:
    """One look of the control plane at a region: how many of its managers responded."""

    code: str
    managers_answering: int
    managers_total: int


def control_plane_isolated(observations: Sequence[RegionObservation]) -> bool:
    """Return True when no manager of any region responded, so the control plane is the one cut off."""
    return bool(observations) and all(item.managers_answering == 0 for item in observations)


def region_down(observation: RegionObservation) -> bool:
    """Return True when none of a region's managers responded to the control plane."""
    return observation.managers_total > 0 and observation.managers_answering == 0


def automatic_failover_due(
    *,
    region_down_since: dt.datetime | None,
    app_failing_since: dt.datetime | None,
    now: dt.datetime,
    grace_period_seconds: int,
) -> bool:
    """Return True when the region has been down and the app failing for the whole grace period.

    Both conditions must hold. Managers that do not respond while the app still serves mean that
    the control plane's path to the region is broken, not the region.
    """
    if region_down_since is None or app_failing_since is None:
        return False
    since = max(region_down_since, app_failing_since)
    return (now - since).total_seconds() >= grace_period_seconds


def recovery_point_seconds(*, failure_at: dt.datetime, data_at: dt.datetime | None) -> float:
    """Return the measured RPO: how much time of writes the restored data lacks (0 without data)."""
    if data_at is None:
        return 0.0
    return max(0.0, (failure_at - data_at).total_seconds())
