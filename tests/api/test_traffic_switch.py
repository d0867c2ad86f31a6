"""The traffic switch: the webhook against a real local receiver, validation and plug-in types."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hostcraft.errors import TrafficSwitchFailed, ValidationError
from hostcraft.services.traffic_switch import (
    SwitchEvent,
    WebhookSwitch,
    build_traffic_switch,
    parse_traffic_switch,
    switch_types,
)
from tests.alert_receivers import WebhookReceiver
from tests.registry_servers import free_port
from tests.traffic_switch_plugin import install_plugin

PATH = "dr.trafficSwitch"
SECRET = "receiver-shared-secret"
EVENT = SwitchEvent(
    event="failover",
    application="shop/web",
    application_id=7,
    from_region="lab-a",
    to_region="lab-b",
    run_id=42,
    health_check_url="http://10.77.92.5:8081/",
    at=datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC),
)


def _url(receiver: WebhookReceiver) -> str:
    return f"http://127.0.0.1:{receiver.port}/switch"


def _switch(url: str, **options: Any) -> WebhookSwitch:
    # A short backoff keeps the retry tests quick; the retry count is what they check.
    return WebhookSwitch(url=url, backoff_seconds=0.01, **options)


# The webhook against a real receiver


def test_webhook_posts_event_json(webhook: WebhookReceiver) -> None:
    result = _switch(_url(webhook)).switch(EVENT)

    [request] = webhook.received()
    assert request.path == "/switch"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-hostcraft-event"] == "failover"
    assert "x-hostcraft-signature" not in request.headers
    assert json.loads(request.body) == {
        "event": "failover",
        "application": "shop/web",
        "applicationId": 7,
        "fromRegion": "lab-a",
        "toRegion": "lab-b",
        "runId": 42,
        "healthCheckUrl": "http://10.77.92.5:8081/",
        "at": "2026-03-01T12:30:05Z",
    }
    assert result.attempts == 1
    assert result.status_code == 200
    assert result.target == _url(webhook)


def test_webhook_signature_verifies(webhook: WebhookReceiver) -> None:
    _switch(_url(webhook), secret=SECRET).switch(EVENT)

    [request] = webhook.received()
    expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-hostcraft-signature"] == f"sha256={expected}"


def test_webhook_secret_not_in_repr() -> None:
    assert SECRET not in repr(WebhookSwitch(url="http://127.0.0.1:9/switch", secret=SECRET))


def test_webhook_retries_after_503(webhook: WebhookReceiver) -> None:
    webhook.statuses = [503]

    result = _switch(_url(webhook)).switch(EVENT)

    assert len(webhook.received()) == 2
    assert result.attempts == 2
    assert result.status_code == 200
    assert webhook.received()[0].body == webhook.received()[1].body


def test_webhook_fails_after_three_5xx(webhook: WebhookReceiver) -> None:
    webhook.fail_with = 502
    webhook.error_body = b"upstream router down"

    with pytest.raises(TrafficSwitchFailed) as caught:
        _switch(_url(webhook)).switch(EVENT)

    assert len(webhook.received()) == 3
    assert caught.value.details["attempts"] == 3
    assert caught.value.details["status"] == 502
    assert "after 3 attempts: HTTP 502: upstream router down" in caught.value.message


def test_webhook_4xx_fails_without_retry(webhook: WebhookReceiver) -> None:
    webhook.fail_with = 403
    webhook.error_body = b"unknown application " + b"x" * 500

    with pytest.raises(TrafficSwitchFailed) as caught:
        _switch(_url(webhook)).switch(EVENT)

    assert len(webhook.received()) == 1
    assert caught.value.details["status"] == 403
    assert caught.value.details["attempts"] == 1
    assert "rejected the failover of shop/web with HTTP 403: unknown application x" in caught.value.message
    # The receiver's body is cut to an excerpt.
    assert "x" * 250 not in caught.value.message


def test_webhook_redirect_is_not_followed(webhook: WebhookReceiver) -> None:
    webhook.fail_with = 307

    with pytest.raises(TrafficSwitchFailed) as caught:
        _switch(_url(webhook)).switch(EVENT)

    assert len(webhook.received()) == 1
    assert caught.value.details["status"] == 307


def test_webhook_unreachable_fails_after_attempts() -> None:
    url = f"http://127.0.0.1:{free_port()}/switch"

    with pytest.raises(TrafficSwitchFailed) as caught:
        _switch(url, timeout_seconds=2).switch(EVENT)

    assert caught.value.details["attempts"] == 3
    assert caught.value.details["status"] is None
    assert f"webhook {url} did not confirm the failover of shop/web after 3 attempts" in caught.value.message
    assert "ConnectError" in caught.value.message


def test_built_webhook_switch_posts(webhook: WebhookReceiver) -> None:
    config = parse_traffic_switch({"type": "webhook", "url": _url(webhook), "secret": SECRET}, PATH)
    assert config is not None

    result = build_traffic_switch(config).switch(EVENT)

    assert result.switch_type == "webhook"
    assert len(webhook.received()) == 1
    assert "x-hostcraft-signature" in webhook.received()[0].headers


# Validation of dr.trafficSwitch


def test_parse_null_is_none() -> None:
    assert parse_traffic_switch(None, PATH) is None


def test_parse_webhook_fills_defaults() -> None:
    assert parse_traffic_switch({"type": "webhook", "url": "https://hooks.example.com/failover"}, PATH) == {
        "type": "webhook",
        "url": "https://hooks.example.com/failover",
        "timeoutSeconds": 10.0,
    }


@pytest.mark.parametrize(
    "url",
    ["http://169.254.7.7/switch", "http://[fe80::7]:8080/switch", "http://[::ffff:169.254.7.7]/switch"],
)
def test_parse_rejects_link_local_url(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_traffic_switch({"type": "webhook", "url": url}, PATH)

    assert caught.value.field == "dr.trafficSwitch.url"
    assert "link-local" in caught.value.message


def test_webhook_switch_rejects_link_local_url() -> None:
    with pytest.raises(ValueError, match="link-local"):
        WebhookSwitch(url="http://169.254.7.7/switch")


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ("https://hooks.example.com", PATH, "expected an object"),
        ({"url": "https://hooks.example.com"}, f"{PATH}.type", "expected one of"),
        ({"type": "webhook"}, f"{PATH}.url", "invalid dr.trafficSwitch.url None"),
        ({"type": "webhook", "url": "ftp://hooks.example.com/"}, f"{PATH}.url", "http:// or https://"),
        ({"type": "webhook", "url": "tcp://127.0.0.1:9000"}, f"{PATH}.url", "http:// or https://"),
        ({"type": "webhook", "url": "http://127.0.0.1:99999/"}, f"{PATH}.url", "http:// or https://"),
        ({"type": "webhook", "url": "https://h.example.com", "secret": ""}, f"{PATH}.secret", "non-empty"),
        (
            {"type": "webhook", "url": "https://h.example.com", "timeoutSeconds": 0},
            f"{PATH}.timeoutSeconds",
            "above 0",
        ),
        ({"type": "webhook", "url": "https://h.example.com", "method": "PUT"}, f"{PATH}.method", "unknown"),
        (
            {"type": "route53", "zone": "example.com"},
            f"{PATH}.type",
            "unknown dr.trafficSwitch.type 'route53'",
        ),
    ],
)
def test_parse_rejects_invalid_switch(raw: object, field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_traffic_switch(raw, PATH)

    assert caught.value.field == field
    assert fragment in caught.value.message


def test_parse_lists_every_problem() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_traffic_switch({"type": "webhook", "url": "ftp://x", "timeoutSeconds": -1}, PATH)

    fields = [problem["field"] for problem in caught.value.details["problems"]]
    assert fields == [f"{PATH}.url", f"{PATH}.timeoutSeconds"]


# Plug-in types from entry points


def test_plugin_type_accepted_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path / "site", monkeypatch)
    raw = {"type": "example-dns", "record": "web.example.com", "path": str(tmp_path / "zone")}

    assert "example-dns" in switch_types()
    assert parse_traffic_switch(raw, PATH) == raw


def test_plugin_switch_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path / "site", monkeypatch)
    zone = tmp_path / "zone"
    config = parse_traffic_switch(
        {"type": "example-dns", "record": "web.example.com", "path": str(zone)}, PATH
    )
    assert config is not None

    result = build_traffic_switch(config).switch(EVENT)

    assert result.switch_type == "example-dns"
    assert json.loads(zone.read_text()) == {"record": "web.example.com", "region": "lab-b"}


def test_plugin_invalid_config_names_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path / "site", monkeypatch)

    with pytest.raises(ValidationError) as caught:
        parse_traffic_switch({"type": "example-dns", "path": str(tmp_path / "zone")}, PATH)

    assert caught.value.field == PATH
    assert "invalid record None" in caught.value.message


def test_plugin_that_fails_to_load_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path / "site", monkeypatch)

    with pytest.raises(ValidationError) as caught:
        parse_traffic_switch({"type": "broken"}, PATH)

    assert caught.value.field == f"{PATH}.type"
    assert "traffic switch plug-in 'broken' (tests.traffic_switch_plugin:no_such_factory) failed to load" in (
        caught.value.message
    )
