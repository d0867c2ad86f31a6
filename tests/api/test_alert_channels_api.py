"""Alert channel API: URL validation, write-only secrets, roles and the test message."""

from __future__ import annotations

from hostcraft.services.alert_delivery import deliver_pending
from hostcraft.services.alerts import open_alert
from tests.alert_receivers import SmtpReceiver, WebhookReceiver
from tests.conftest import Api

SECRET_PATH = "hooks/T0KEN-abc123-secret"


def test_channel_url_is_never_returned(api: Api, webhook: WebhookReceiver) -> None:
    created = api.post("/api/alert-channels", {"name": "ops", "url": webhook.url(SECRET_PATH)})
    assert created.status_code == 201, created.text
    channel = created.json()
    with api.runtime.store.session() as session:
        open_alert(
            session, trigger="quorum_lost", cause="region:1:quorum_lost", title="Quorum lost", message="x"
        )
    deliver_pending(api.runtime)
    alerts = api.get("/api/alerts").json()

    responses = [
        created.text,
        api.get("/api/alert-channels").text,
        api.get(f"/api/alert-channels/{channel['id']}").text,
        api.get("/api/alerts").text,
        api.get(f"/api/alerts/{alerts[0]['id']}").text,
        api.get("/api/events").text,
    ]
    for text in responses:
        assert "T0KEN-abc123-secret" not in text
    assert channel["service"] == "JSON"
    assert channel["urlMasked"] == f"json://127.0.0.1:{webhook.port}/…"
    assert "url" not in channel
    with api.runtime.store.session() as session:
        from hostcraft.store.models import AlertChannel

        stored = session.get(AlertChannel, channel["id"])
        assert stored is not None
        assert "T0KEN" not in stored.url_encrypted


def test_email_password_is_masked(api: Api) -> None:
    url = "mailto://alerts:pa55-w0rd-x@example.com?to=ops@example.com"
    channel = api.post("/api/alert-channels", {"name": "mail", "url": url}).json()

    assert channel["service"] == "E-Mail"
    assert "pa55-w0rd-x" not in str(channel)
    assert channel["urlMasked"].startswith("mailto://example.com")


def test_invalid_url_is_rejected_naming_url(api: Api) -> None:
    for url in ["nonsense://x", "json://", "not a url"]:
        response = api.post("/api/alert-channels", {"name": "bad", "url": url})
        assert response.status_code == 422, url
        assert response.json()["error"]["details"]["field"] == "url"
    assert api.get("/api/alert-channels").json() == []


def test_invalid_filters_are_rejected(api: Api, webhook: WebhookReceiver) -> None:
    unknown_trigger = api.post(
        "/api/alert-channels", {"name": "a", "url": webhook.url(), "triggers": ["quorum_lost", "coffee"]}
    )
    unknown_severity = api.post(
        "/api/alert-channels", {"name": "b", "url": webhook.url(), "minSeverity": "urgent"}
    )
    missing_url = api.post("/api/alert-channels", {"name": "c"})

    assert unknown_trigger.status_code == 422
    assert unknown_trigger.json()["error"]["details"]["field"] == "triggers[1]"
    assert unknown_severity.status_code == 422
    assert unknown_severity.json()["error"]["details"]["field"] == "minSeverity"
    assert missing_url.status_code == 422
    assert missing_url.json()["error"]["details"]["field"] == "url"


def test_duplicate_channel_name_conflicts(api: Api, webhook: WebhookReceiver) -> None:
    assert api.post("/api/alert-channels", {"name": "ops", "url": webhook.url()}).status_code == 201
    assert api.post("/api/alert-channels", {"name": "ops", "url": webhook.url()}).status_code == 409


def test_viewer_reads_but_cannot_change_channels(api: Api, webhook: WebhookReceiver) -> None:
    by_operator = api.post("/api/alert-channels", {"name": "ops", "url": webhook.url()}, role="operator")
    channel_id = by_operator.json()["id"]

    assert by_operator.status_code == 201
    assert api.get("/api/alert-channels", role="viewer").status_code == 200
    assert (
        api.post("/api/alert-channels", {"name": "x", "url": webhook.url()}, role="viewer").status_code == 403
    )
    assert api.post(f"/api/alert-channels/{channel_id}/test", role="viewer").status_code == 403
    assert api.delete(f"/api/alert-channels/{channel_id}", role="viewer").status_code == 403
    assert api.delete(f"/api/alert-channels/{channel_id}", role="operator").status_code == 204
    assert api.get(f"/api/alert-channels/{channel_id}").status_code == 404


def test_test_message_reaches_webhook_and_mail(
    api: Api, webhook: WebhookReceiver, smtp: SmtpReceiver
) -> None:
    hook = api.post("/api/alert-channels", {"name": "hook", "url": webhook.url()}).json()
    mail = api.post("/api/alert-channels", {"name": "mail", "url": smtp.url()}).json()

    hook_result = api.post(f"/api/alert-channels/{hook['id']}/test").json()
    mail_result = api.post(f"/api/alert-channels/{mail['id']}/test").json()

    assert hook_result == {"channelId": hook["id"], "delivered": True, "error": None}
    assert mail_result["delivered"] is True
    assert webhook.titles() == ["HostCraft test message"]
    assert smtp.subjects == ["HostCraft test message"]


def test_test_message_reports_delivery_error(api: Api, webhook: WebhookReceiver) -> None:
    channel = api.post("/api/alert-channels", {"name": "hook", "url": webhook.url(SECRET_PATH)}).json()
    webhook.fail_with = 500

    result = api.post(f"/api/alert-channels/{channel['id']}/test").json()

    assert result["delivered"] is False
    assert result["error"].startswith("delivery failed")
    assert "T0KEN-abc123-secret" not in result["error"]
    events = api.get("/api/events", params={"action": "alert-channel.test"}).json()
    assert events[0]["outcome"] == "failed"
