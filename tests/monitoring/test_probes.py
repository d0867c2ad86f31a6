"""Probes against a real local HTTP server whose behaviour each test switches."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from hostcraft.engine.probes import CLIENT_SHARDS, ProbeEngine, start_offset
from hostcraft.runtime import Runtime
from hostcraft.services.monitoring import ProbeOutcome, ProbeTarget, probe_targets, record_outcomes
from hostcraft.store.models import (
    Alert,
    AppHealth,
    Application,
    Deployment,
    Incident,
    ProbeResult,
    Region,
    utcnow,
)

WINDOW = dt.timedelta(minutes=30)


class SwitchableServer:
    """A local HTTP server: ``mode`` is ok (200), error (500), hang, redirect (302 to /login)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                if self.path == "/login":
                    self._answer(200, b"login page")
                elif owner.mode == "ok":
                    self._answer(200, b"all good")
                elif owner.mode == "error":
                    self._answer(500, b"broken")
                elif owner.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "/login")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif owner.mode == "hang":
                    time.sleep(1.5)
                    self._answer(200, b"too late")

            def do_HEAD(self) -> None:
                self.do_GET()

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[SwitchableServer]:
    target = SwitchableServer()
    yield target
    target.close()


def add_monitored_app(runtime: Runtime, name: str, **spec: Any) -> int:
    """Store an app that counts as deployed (a service id and a succeeded deployment)."""
    with runtime.store.session() as session:
        region = session.scalars(select(Region)).first()
        if region is None:
            region = Region(name="Lab", code="lab-a", is_primary=True, priority=1)
            session.add(region)
            session.flush()
        document = {"name": name, "project": "default", "image": "web:1", "replicas": 1, **spec}
        app = Application(
            name=name, project="default", region_id=region.id, spec=document, service_id="svc-" + name
        )
        session.add(app)
        session.flush()
        session.add(
            Deployment(
                application_id=app.id,
                kind="deploy",
                status="succeeded",
                spec=document,
                image="web:1",
                image_digest_reference="web:1@sha256:" + "a" * 64,
                actor="test",
                finished_at=utcnow() - dt.timedelta(days=1),
            )
        )
        session.commit()
        return app.id


def target_of(runtime: Runtime, app_id: int) -> ProbeTarget:
    with runtime.store.session() as session:
        return {target.application_id: target for target in probe_targets(session)}[app_id]


def probe_once(runtime: Runtime, engine: ProbeEngine, target: ProbeTarget) -> ProbeOutcome:
    async def run() -> ProbeOutcome:
        import httpx

        async with httpx.AsyncClient(verify=True) as verified, httpx.AsyncClient(verify=False) as unverified:
            engine._clients = {
                (verify, shard): verified if verify else unverified
                for verify in (True, False)
                for shard in range(CLIENT_SHARDS)
            }
            return await engine.measure(target)

    outcome = asyncio.run(run())
    with runtime.store.session() as session:
        record_outcomes(session, [outcome], targets={target.application_id: target}, deployment_window=WINDOW)
        session.commit()
    return outcome


def incidents_of(runtime: Runtime, app_id: int) -> list[Incident]:
    with runtime.store.session() as session:
        return list(
            session.scalars(select(Incident).where(Incident.application_id == app_id).order_by(Incident.id))
        )


def health_of(runtime: Runtime, app_id: int) -> AppHealth:
    with runtime.store.session() as session:
        health = session.get(AppHealth, app_id)
        assert health is not None
        return health


def test_incident_opens_and_closes_at_thresholds(runtime: Runtime, server: SwitchableServer) -> None:
    app_id = add_monitored_app(
        runtime,
        "web",
        healthCheckUrl=server.url,
        healthCheckIntervalSeconds=5,
        healthCheckTimeoutSeconds=1,
        maxConsecutiveFailures=3,
        healthProbe={"successesToResolve": 2},
    )
    engine = ProbeEngine(runtime, recovery=False)
    target = target_of(runtime, app_id)

    assert probe_once(runtime, engine, target).ok
    assert health_of(runtime, app_id).status == "up"

    server.mode = "error"
    first_failure = probe_once(runtime, engine, target)
    assert not first_failure.ok
    assert first_failure.status_code == 500
    probe_once(runtime, engine, target)
    assert incidents_of(runtime, app_id) == []

    server.mode = "hang"
    hung = probe_once(runtime, engine, target)
    assert not hung.ok
    assert "timed out" in (hung.error or "")
    incidents = incidents_of(runtime, app_id)
    assert len(incidents) == 1
    assert incidents[0].status == "open"
    assert incidents[0].began_at == first_failure.at

    server.mode = "redirect"
    redirected = probe_once(runtime, engine, target)
    assert redirected.ok
    assert redirected.status_code == 302
    assert incidents_of(runtime, app_id)[0].status == "open"

    server.mode = "ok"
    probe_once(runtime, engine, target)
    incidents = incidents_of(runtime, app_id)
    assert len(incidents) == 1
    assert incidents[0].status == "resolved"
    assert incidents[0].ended_at == redirected.at


def test_flapping_does_not_open_incident(runtime: Runtime, server: SwitchableServer) -> None:
    app_id = add_monitored_app(runtime, "web", healthCheckUrl=server.url, maxConsecutiveFailures=3)
    engine = ProbeEngine(runtime, recovery=False)
    target = target_of(runtime, app_id)
    for mode in ["error", "error", "ok", "error", "error", "ok", "error"]:
        server.mode = mode
        probe_once(runtime, engine, target)
    assert incidents_of(runtime, app_id) == []


def test_incident_raises_one_alert_and_resolves_it(runtime: Runtime, server: SwitchableServer) -> None:
    app_id = add_monitored_app(
        runtime,
        "web",
        healthCheckUrl=server.url,
        maxConsecutiveFailures=2,
        healthProbe={"successesToResolve": 1},
    )
    engine = ProbeEngine(runtime, recovery=False)
    target = target_of(runtime, app_id)
    server.mode = "error"
    for _ in range(6):
        probe_once(runtime, engine, target)
    with runtime.store.session() as session:
        alerts = list(session.scalars(select(Alert).where(Alert.trigger == "service_health_failure")))
        assert len(alerts) == 1
        assert alerts[0].status == "open"
    server.mode = "ok"
    probe_once(runtime, engine, target)
    with runtime.store.session() as session:
        alerts = list(session.scalars(select(Alert).where(Alert.trigger == "service_health_failure")))
        assert len(alerts) == 1
        assert alerts[0].status == "resolved"


def test_redirect_answer_is_healthy_by_default(runtime: Runtime, server: SwitchableServer) -> None:
    """A 302 from / to /login is healthy by default: the app is not called down."""
    server.mode = "redirect"
    app_id = add_monitored_app(runtime, "web", healthCheckUrl=server.url, maxConsecutiveFailures=1)
    engine = ProbeEngine(runtime, recovery=False)
    target = target_of(runtime, app_id)
    assert target.options.follow_redirects is False
    for _ in range(5):
        outcome = probe_once(runtime, engine, target)
        assert outcome.ok
        assert outcome.status_code == 302
    assert incidents_of(runtime, app_id) == []
    assert server.requests == 5  # the redirect was not followed


def test_redirect_followed_when_asked(runtime: Runtime, server: SwitchableServer) -> None:
    server.mode = "redirect"
    app_id = add_monitored_app(
        runtime,
        "web",
        healthCheckUrl=server.url,
        healthProbe={"followRedirects": True, "bodyContains": "login"},
    )
    engine = ProbeEngine(runtime, recovery=False)
    outcome = probe_once(runtime, engine, target_of(runtime, app_id))
    assert outcome.ok
    assert outcome.status_code == 200
    assert server.requests == 2


def test_redirect_fails_when_only_200_expected(runtime: Runtime, server: SwitchableServer) -> None:
    server.mode = "redirect"
    app_id = add_monitored_app(
        runtime, "web", healthCheckUrl=server.url, healthProbe={"expectedStatus": "200"}
    )
    engine = ProbeEngine(runtime, recovery=False)
    outcome = probe_once(runtime, engine, target_of(runtime, app_id))
    assert not outcome.ok
    assert "redirect to /login not followed" in (outcome.error or "")


def test_body_substring_checked(runtime: Runtime, server: SwitchableServer) -> None:
    app_id = add_monitored_app(
        runtime, "web", healthCheckUrl=server.url, healthProbe={"bodyContains": "missing"}
    )
    engine = ProbeEngine(runtime, recovery=False)
    outcome = probe_once(runtime, engine, target_of(runtime, app_id))
    assert not outcome.ok
    assert "does not contain" in (outcome.error or "")


def test_tcp_probe_connects(runtime: Runtime) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    app_id = add_monitored_app(runtime, "db", healthCheckUrl=f"tcp://127.0.0.1:{port}")
    engine = ProbeEngine(runtime, recovery=False)
    target = target_of(runtime, app_id)
    assert probe_once(runtime, engine, target).ok
    listener.close()
    closed = probe_once(runtime, engine, target)
    assert not closed.ok
    assert closed.error


def test_engine_probes_on_schedule_and_opens_incident(runtime: Runtime, server: SwitchableServer) -> None:
    server.mode = "error"
    app_id = add_monitored_app(
        runtime,
        "web",
        healthCheckUrl=server.url,
        healthCheckIntervalSeconds=1,
        healthCheckTimeoutSeconds=0.5,
        maxConsecutiveFailures=2,
    )
    runtime.settings.probe_refresh_seconds = 0.5
    engine = ProbeEngine(runtime, recovery=False)
    engine.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not incidents_of(runtime, app_id):
            time.sleep(0.2)
    finally:
        engine.stop()
    incidents = incidents_of(runtime, app_id)
    assert len(incidents) == 1
    with runtime.store.session() as session:
        results = list(session.scalars(select(ProbeResult).where(ProbeResult.application_id == app_id)))
    assert len(results) >= 2
    assert all(not result.ok for result in results)


def test_start_offsets_spread_over_interval() -> None:
    offsets = [start_offset(app_id, 10.0) for app_id in range(1, 1001)]
    assert all(0 <= offset < 10.0 for offset in offsets)
    buckets = [sum(1 for offset in offsets if second <= offset < second + 1) for second in range(10)]
    assert max(buckets) < 150  # no second of the interval gets more than 15 % of the first probes


def test_undeployed_and_zero_replica_apps_not_probed(runtime: Runtime, server: SwitchableServer) -> None:
    deployed = add_monitored_app(runtime, "web", healthCheckUrl=server.url)
    scaled_down = add_monitored_app(runtime, "idle", healthCheckUrl=server.url, replicas=0)
    with runtime.store.session() as session:
        never = Application(
            name="new",
            project="default",
            region_id=1,
            spec={"name": "new", "image": "web:1", "healthCheckUrl": server.url},
        )
        session.add(never)
        session.commit()
        ids = {target.application_id for target in probe_targets(session)}
    assert deployed in ids
    assert scaled_down not in ids
    assert never.id not in ids
