"""Alert delivery to a real local webhook receiver and SMTP server, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from hostcraft.services.alert_delivery import deliver_pending
from hostcraft.services.alerts import notify_once, open_alert, resolve_alert
from hostcraft.store.models import AlertDelivery, utcnow
from tests.alert_receivers import SmtpReceiver, WebhookReceiver
from tests.conftest import Api, create_region


def _channel(api: Api, url: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/api/alert-channels", {"name": fields.pop("name", "ops"), "url": url, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _open(api: Api, cause: str = "region:1:quorum_lost", **fields: Any) -> int:
    arguments: dict[str, Any] = {
        "trigger": "quorum_lost",
        "cause": cause,
        "title": f"Quorum lost ({cause})",
        "message": "2 of 3 managers are unreachable",
        **fields,
    }
    with api.runtime.store.session() as session:
        return open_alert(session, **arguments).id


def _resolve(api: Api, cause: str = "region:1:quorum_lost", **fields: Any) -> None:
    with api.runtime.store.session() as session:
        resolve_alert(session, cause=cause, message="quorum is back", **fields)


def _deliveries(api: Api, alert_id: int) -> list[AlertDelivery]:
    with api.runtime.store.session() as session:
        rows = list(session.scalars(select(AlertDelivery).where(AlertDelivery.alert_id == alert_id)))
        session.expunge_all()
        return rows


def test_repeated_open_sends_one_message(api: Api, webhook: WebhookReceiver) -> None:
    _channel(api, webhook.url())
    ids = {_open(api) for _ in range(5)}

    report = deliver_pending(api.runtime)
    deliver_pending(api.runtime)

    assert len(ids) == 1
    assert report.sent == 1
    assert webhook.titles() == ["[CRITICAL] Quorum lost (region:1:quorum_lost)"]
    assert api.get(f"/api/alerts/{ids.pop()}").json()["occurrences"] == 5


def test_resolve_sends_one_message(api: Api, webhook: WebhookReceiver) -> None:
    _channel(api, webhook.url())
    _open(api)
    deliver_pending(api.runtime)

    _resolve(api)
    _resolve(api)
    deliver_pending(api.runtime)
    deliver_pending(api.runtime)

    assert webhook.titles() == [
        "[CRITICAL] Quorum lost (region:1:quorum_lost)",
        "[RESOLVED] Quorum lost (region:1:quorum_lost)",
    ]
    assert "quorum is back" in webhook.messages[1]["message"]
    assert webhook.messages[1]["type"] == "success"


def test_new_occurrence_after_resolve_opens_new_alert(api: Api, webhook: WebhookReceiver) -> None:
    _channel(api, webhook.url())
    first = _open(api)
    _resolve(api)
    second = _open(api)
    deliver_pending(api.runtime)

    assert first != second
    assert len(webhook.titles()) == 3


def test_notify_once_sends_one_message_and_no_resolve(api: Api, webhook: WebhookReceiver) -> None:
    _channel(api, webhook.url())
    open_id = _open(api, cause="app:7:health")
    with api.runtime.store.session() as session:
        notice = notify_once(
            session,
            trigger="recovery_action",
            cause="app:7:health",
            title="Restarted web",
            message="force-update after 3 failed probes",
        )
        notice_id = notice.id
    _resolve(api, cause="app:7:health")
    deliver_pending(api.runtime)

    assert notice_id != open_id
    assert webhook.titles().count("[NOTICE] Restarted web") == 1
    assert [delivery.kind for delivery in _deliveries(api, notice_id)] == ["notice"]
    assert api.get(f"/api/alerts/{open_id}").json()["status"] == "resolved"
    assert sum(title.startswith("[RESOLVED]") for title in webhook.titles()) == 1


def test_email_channel_gets_open_and_resolve(api: Api, smtp: SmtpReceiver) -> None:
    _channel(api, smtp.url(), name="mail")
    _open(api)
    _open(api)
    deliver_pending(api.runtime)
    _resolve(api)
    deliver_pending(api.runtime)

    assert smtp.subjects == [
        "[CRITICAL] Quorum lost (region:1:quorum_lost)",
        "[RESOLVED] Quorum lost (region:1:quorum_lost)",
    ]
    assert smtp.recipients[0] == ["ops@example.com"]


def test_failed_delivery_is_retried(api: Api, webhook: WebhookReceiver) -> None:
    _channel(api, webhook.url())
    alert_id = _open(api)
    webhook.fail_with = 500
    now = utcnow()

    failed = deliver_pending(api.runtime, now=now)
    webhook.fail_with = None
    too_early = deliver_pending(api.runtime, now=now + dt.timedelta(seconds=5))
    retried = deliver_pending(api.runtime, now=now + dt.timedelta(seconds=16))

    assert failed.failed == 1
    assert "delivery failed" in failed.errors[0]
    assert too_early.sent == 0
    assert retried.sent == 1
    assert len(webhook.titles()) == 1
    (delivery,) = _deliveries(api, alert_id)
    assert delivery.status == "sent"
    assert delivery.attempts == 2


def test_delivery_gives_up_after_max_attempts(api: Api, webhook: WebhookReceiver) -> None:
    api.runtime.settings.alert_delivery_max_attempts = 2
    _channel(api, webhook.url())
    alert_id = _open(api)
    webhook.fail_with = 503
    now = utcnow()

    deliver_pending(api.runtime, now=now)
    deliver_pending(api.runtime, now=now + dt.timedelta(hours=1))
    webhook.fail_with = None
    deliver_pending(api.runtime, now=now + dt.timedelta(hours=2))

    (delivery,) = _deliveries(api, alert_id)
    assert delivery.status == "failed"
    assert delivery.attempts == 2
    assert delivery.last_error
    detail = api.get(f"/api/alerts/{alert_id}").json()
    assert detail["deliveries"][0]["status"] == "failed"


def test_resolve_waits_for_unsent_open(api: Api, webhook: WebhookReceiver) -> None:
    _channel(api, webhook.url())
    _open(api)
    webhook.fail_with = 500
    now = utcnow()
    deliver_pending(api.runtime, now=now)
    _resolve(api)
    webhook.fail_with = None

    deliver_pending(api.runtime, now=now + dt.timedelta(seconds=1))
    assert webhook.titles() == []
    deliver_pending(api.runtime, now=now + dt.timedelta(seconds=20))
    deliver_pending(api.runtime, now=now + dt.timedelta(seconds=21))
    assert [title.split("]")[0] for title in webhook.titles()] == ["[CRITICAL", "[RESOLVED"]


def test_rate_limit_collapses_excess_into_digest(api: Api, webhook: WebhookReceiver) -> None:
    api.runtime.settings.alert_rate_limit_messages = 3
    _channel(api, webhook.url())
    alert_ids = [_open(api, cause=f"server:{index}:unreachable") for index in range(6)]

    report = deliver_pending(api.runtime)

    assert report.sent == 6
    assert report.digests == 1
    titles = webhook.titles()
    assert len(titles) == 3
    assert titles[2] == "HostCraft: 4 alert messages (rate-limit digest)"
    for alert_id in alert_ids[2:]:
        assert f"(alert #{alert_id})" in webhook.messages[2]["message"]
    for alert_id in alert_ids:
        assert [delivery.status for delivery in _deliveries(api, alert_id)] == ["sent"]


def test_rate_limit_delays_when_budget_is_used(api: Api, webhook: WebhookReceiver) -> None:
    api.runtime.settings.alert_rate_limit_messages = 2
    api.runtime.settings.alert_rate_limit_window_seconds = 60
    _channel(api, webhook.url())
    _open(api, cause="server:1:unreachable")
    _open(api, cause="server:2:unreachable")
    now = utcnow()
    deliver_pending(api.runtime, now=now)
    third = _open(api, cause="server:3:unreachable")

    limited = deliver_pending(api.runtime, now=now + dt.timedelta(seconds=30))
    assert limited.delayed == 1
    assert len(webhook.titles()) == 2
    (delivery,) = _deliveries(api, third)
    assert delivery.status == "pending"
    assert delivery.next_attempt_at == now + dt.timedelta(seconds=60)

    released = deliver_pending(api.runtime, now=now + dt.timedelta(seconds=61))
    assert released.sent == 1
    assert webhook.titles()[-1] == "[CRITICAL] Quorum lost (server:3:unreachable)"


def test_channel_filters_select_alerts(api: Api, webhook: WebhookReceiver) -> None:
    _channel(api, webhook.url("backups"), name="backups", triggers=["backup_failure"])
    _channel(api, webhook.url("critical"), name="pager", minSeverity="critical")
    _open(api, cause="server:1:disk", trigger="disk_space_low", severity="warning")
    _open(api, cause="app:1:backup", trigger="backup_failure", severity="critical")

    deliver_pending(api.runtime)

    received = sorted((message["path"], message["title"]) for message in webhook.messages)
    assert received == [
        ("/backups", "[CRITICAL] Quorum lost (app:1:backup)"),
        ("/critical", "[CRITICAL] Quorum lost (app:1:backup)"),
    ]


def test_deleted_channel_gets_nothing(api: Api, webhook: WebhookReceiver) -> None:
    channel = _channel(api, webhook.url())
    _open(api)
    assert api.delete(f"/api/alert-channels/{channel['id']}").status_code == 204

    report = deliver_pending(api.runtime)

    assert report.sent == 0
    assert webhook.titles() == []


def test_alert_history_filters_and_order(api: Api) -> None:
    region = create_region(api)
    first = _open(api, cause="server:1:unreachable", trigger="node_unreachable", region_id=region["id"])
    second = _open(api, cause="region:1:quorum_lost", region_id=region["id"])
    _resolve(api, cause="server:1:unreachable")

    everything = api.get("/api/alerts").json()
    still_open = api.get("/api/alerts", params={"status": "open"}).json()
    by_trigger = api.get("/api/alerts", params={"trigger": "node_unreachable"}).json()
    by_region = api.get("/api/alerts", params={"regionId": region["id"], "limit": 1}).json()

    assert [alert["id"] for alert in everything] == [second, first]
    assert [alert["id"] for alert in still_open] == [second]
    assert [alert["id"] for alert in by_trigger] == [first]
    assert [alert["id"] for alert in by_region] == [second]
    assert api.get("/api/alerts", params={"status": "gone"}).status_code == 422
    assert api.get("/api/alerts/999").status_code == 404
