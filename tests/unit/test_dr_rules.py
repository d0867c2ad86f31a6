"""The DR policy's validation and the pure rules a failover decides by, with a controlled clock."""

from __future__ import annotations

import datetime as dt

import pytest

from hostcraft.domain.appspec import validate_application
from hostcraft.domain.dr import (
    DrPolicy,
    RegionObservation,
    automatic_failover_due,
    control_plane_isolated,
    dr_targets,
    parse_dr_policy,
    recovery_point_seconds,
    region_down,
)
from hostcraft.errors import ValidationError
from hostcraft.services.regions import registry_of

T0 = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)


def test_policy_defaults_match_the_architecture_objectives() -> None:
    policy, problems = parse_dr_policy({"regions": ["us-east-1"]})

    assert problems == []
    assert policy is not None
    assert policy.mode == "cold"
    assert policy.rto_seconds == 300
    assert policy.automatic is False
    assert policy.grace_period_seconds == 60


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"regions": "us-east-1"}, "dr.regions"),
        ({"regions": ["a", "a"]}, "dr.regions"),
        ({"mode": "hot"}, "dr.mode"),
        ({"rtoSeconds": 0}, "dr.rtoSeconds"),
        ({"rpoSeconds": -1}, "dr.rpoSeconds"),
        ({"gracePeriodSeconds": 1.5}, "dr.gracePeriodSeconds"),
        ({"automatic": "yes"}, "dr.automatic"),
        ({"homeRegion": "a", "regions": ["a"]}, "dr.regions"),
        ({"healthCheckUrls": {"b": "ftp://x/"}}, "dr.healthCheckUrls.b"),
        ({"healthCheckUrls": {"b": "http://169.254.169.254/"}}, "dr.healthCheckUrls.b"),
        ({"trafficSwitch": {"type": "webhook", "url": "http://169.254.1.1/hook"}}, "dr.trafficSwitch.url"),
        ({"trafficSwitch": {"type": "webhook"}}, "dr.trafficSwitch.url"),
        ({"trafficSwitch": {"type": "no-such-plugin"}}, "dr.trafficSwitch.type"),
        (
            {"trafficSwitch": {"type": "webhook", "url": "http://127.0.0.1/", "secret": "x"}},
            "dr.trafficSwitch.secret",
        ),
        ({"drillSchedule": "every sunday"}, "dr.drillSchedule"),
        ({"drillSchedule": "0 3 * * * 0"}, "dr.drillSchedule"),
        ({"drillSchedule": "0 3 * * 0", "drillTimezone": "Mars/Olympus"}, "dr.drillTimezone"),
        ({"failoverTo": "b"}, "dr.failoverTo"),
    ],
)
def test_invalid_policy_names_the_field(raw: dict[str, object], field: str) -> None:
    _, problems = parse_dr_policy(raw)

    assert field in [path for path, _ in problems]


def test_application_document_rejects_invalid_policy_with_field() -> None:
    with pytest.raises(ValidationError) as raised:
        validate_application({"name": "web", "image": "registry.example:5000/web:1", "dr": {"mode": "hot"}})

    assert raised.value.field == "dr.mode"


def test_application_document_returns_policy_with_defaults() -> None:
    spec = validate_application({"name": "web", "image": "web:1", "dr": {"regions": ["b"], "mode": "warm"}})

    assert spec.to_dict()["dr"]["mode"] == "warm"
    assert spec.to_dict()["dr"]["gracePeriodSeconds"] == 60


def test_targets_follow_region_priority_not_policy_order() -> None:
    policy = DrPolicy(home_region="a", regions=("c", "b"))

    assert dr_targets(policy, active="a", priorities={"a": 1, "b": 2, "c": 3}) == ["b", "c"]


def test_targets_include_home_after_a_failover() -> None:
    policy = DrPolicy(home_region="a", regions=("b", "c"))

    assert dr_targets(policy, active="b", priorities={"a": 1, "b": 2, "c": 3}) == ["a", "c"]


def test_targets_skip_unknown_regions() -> None:
    policy = DrPolicy(home_region="a", regions=("gone", "b"))

    assert dr_targets(policy, active="a", priorities={"a": 1, "b": 2}) == ["b"]


def test_region_down_only_when_no_manager_answers() -> None:
    assert region_down(RegionObservation("a", 0, 3))
    assert not region_down(RegionObservation("a", 1, 3))
    assert not region_down(RegionObservation("a", 0, 0))


def test_isolated_control_plane_sees_no_region() -> None:
    assert control_plane_isolated([RegionObservation("a", 0, 3), RegionObservation("b", 0, 3)])
    assert not control_plane_isolated([RegionObservation("a", 0, 3), RegionObservation("b", 2, 3)])
    assert not control_plane_isolated([])


@pytest.mark.parametrize(
    ("down_for", "failing_for", "due"),
    [
        (None, 120, False),  # managers respond: the region is not down
        (120, None, False),  # the app still serves: only the control plane's path is broken
        (59, 120, False),
        (120, 59, False),
        (60, 60, True),
        (300, 61, True),
    ],
)
def test_automatic_failover_waits_for_both_conditions_over_grace(
    down_for: int | None, failing_for: int | None, due: bool
) -> None:
    now = T0 + dt.timedelta(minutes=10)

    result = automatic_failover_due(
        region_down_since=now - dt.timedelta(seconds=down_for) if down_for is not None else None,
        app_failing_since=now - dt.timedelta(seconds=failing_for) if failing_for is not None else None,
        now=now,
        grace_period_seconds=60,
    )

    assert result is due


def test_recovery_point_is_failure_minus_data_time() -> None:
    assert recovery_point_seconds(failure_at=T0, data_at=T0 - dt.timedelta(seconds=75)) == 75.0
    assert recovery_point_seconds(failure_at=T0, data_at=None) == 0.0


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("10.77.91.1:5000/demo/web:1", "10.77.91.1:5000"),
        ("registry.example.com/web@sha256:" + "a" * 64, "registry.example.com"),
        ("localhost/web:1", "localhost"),
        ("library/busybox:1", None),
        ("busybox", None),
    ],
)
def test_registry_part_of_image(image: str, registry: str | None) -> None:
    assert registry_of(image) == registry
