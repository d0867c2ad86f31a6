"""Validation of the health probe fields of an application document."""

from __future__ import annotations

from typing import Any

import pytest

from hostcraft.domain.appspec import validate_application
from hostcraft.domain.probes import is_link_local, parse_expected_status
from hostcraft.errors import ValidationError


def fields_with_problems(**changes: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        validate_application({"name": "web", "image": "nginx:1", **changes})
    return [problem["field"] for problem in caught.value.details["problems"]]


def test_default_probe_keeps_redirects_as_answers() -> None:
    spec = validate_application({"name": "web", "image": "nginx:1", "healthCheckUrl": "http://127.0.0.1/"})
    assert spec.health_probe.follow_redirects is False
    assert spec.health_probe.status_ok(302)
    assert spec.health_probe.status_ok(200)
    assert not spec.health_probe.status_ok(404)
    assert not spec.health_probe.status_ok(500)


def test_tcp_url_accepted_with_port() -> None:
    spec = validate_application({"name": "web", "image": "nginx:1", "healthCheckUrl": "tcp://127.0.0.1:5432"})
    assert spec.health_check_url == "tcp://127.0.0.1:5432"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:80/path",
        "http://",
        "x y",
    ],
)
def test_non_http_urls_rejected(url: str) -> None:
    assert fields_with_problems(healthCheckUrl=url) == ["healthCheckUrl"]


def test_timeout_not_below_interval_rejected() -> None:
    problems = fields_with_problems(healthCheckIntervalSeconds=10, healthCheckTimeoutSeconds=10)
    assert problems == ["healthCheckTimeoutSeconds"]


def test_threshold_below_one_rejected() -> None:
    assert fields_with_problems(maxConsecutiveFailures=0) == ["maxConsecutiveFailures"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.1.1:8443/",
        "http://[fe80::1]/",
        "http://[fe80::1%25eth0]/",
        "http://[::ffff:169.254.169.254]/",
        "tcp://169.254.0.5:80",
    ],
)
def test_link_local_targets_rejected_unless_allowed(url: str) -> None:
    assert fields_with_problems(healthCheckUrl=url) == ["healthCheckUrl"]
    allowed = validate_application(
        {"name": "web", "image": "nginx:1", "healthCheckUrl": url, "healthProbe": {"allowLinkLocal": True}}
    )
    assert allowed.health_check_url == url


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("169.254.169.254", True),
        ("fe80::1", True),
        ("[fe80::2]", True),
        ("127.0.0.1", False),
        ("example.org", False),
    ],
)
def test_is_link_local(host: str, expected: bool) -> None:
    assert is_link_local(host) is expected


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"healthProbe": {"method": "POST"}}, "healthProbe.method"),
        ({"healthProbe": {"expectedStatus": "2xx"}}, "healthProbe.expectedStatus"),
        ({"healthProbe": {"expectedStatus": "399-200"}}, "healthProbe.expectedStatus"),
        ({"healthProbe": {"expectedStatus": 200}}, "healthProbe.expectedStatus"),
        ({"healthProbe": {"followRedirects": "yes"}}, "healthProbe.followRedirects"),
        ({"healthProbe": {"successesToResolve": 0}}, "healthProbe.successesToResolve"),
        ({"healthProbe": {"bodyContains": ""}}, "healthProbe.bodyContains"),
        ({"healthProbe": {"folowRedirects": True}}, "healthProbe.folowRedirects"),
        ({"healthProbe": []}, "healthProbe"),
        ({"recovery": {"maxActionsPerHour": 0}}, "recovery.maxActionsPerHour"),
        ({"recovery": {"maxActionsPerHour": 1.5}}, "recovery.maxActionsPerHour"),
        ({"recovery": {"stepTimeoutSeconds": 0}}, "recovery.stepTimeoutSeconds"),
        ({"recovery": {"cooldown": 5}}, "recovery.cooldown"),
        ({"slaTarget": 0}, "slaTarget"),
        ({"slaTarget": 100.5}, "slaTarget"),
        ({"slaTarget": "99.9"}, "slaTarget"),
    ],
)
def test_invalid_probe_fields_named(changes: dict[str, Any], field: str) -> None:
    assert fields_with_problems(**changes) == [field]


def test_expected_status_ranges_parsed() -> None:
    assert parse_expected_status("200, 204,301-302") == ((200, 200), (204, 204), (301, 302))
