"""Real local receivers for tests: an HTTP webhook server and an SMTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedRequest:
    """One POST as it arrived: path, headers (names in lowercase) and the raw body."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """Collects the JSON bodies of the POSTs it confirms, and every request in ``requests``.

    Each request gets the next status of ``statuses`` (with ``error_body``) while any remain,
    then ``fail_with`` if set, else 200.
    """

    port: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: list[ReceivedRequest] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    fail_with: int | None = None
    error_body: bytes = b""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "hooks/hostcraft-secret-path") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def titles(self) -> list[str]:
        with self.lock:
            return [str(message.get("title")) for message in self.messages]

    def received(self) -> list[ReceivedRequest]:
        with self.lock:
            return list(self.requests)

    def next_status(self, request: ReceivedRequest) -> int | None:
        """Record ``request`` and return the error status to respond with, or None for 200."""
        with self.lock:
            self.requests.append(request)
            return self.statuses.pop(0) if self.statuses else self.fail_with


@contextmanager
def serve_webhook() -> Iterator[WebhookReceiver]:
    """Run a webhook receiver on a free loopback port for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = WebhookReceiver(port=server.server_address[1])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = ReceivedRequest(
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            status = receiver.next_status(request)
            if status is not None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(receiver.error_body)))
                self.end_headers()
                self.wfile.write(receiver.error_body)
                return
            with receiver.lock:
                receiver.messages.append({**json.loads(body), "path": self.path})
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with serve_webhook() as receiver:
        yield receiver


@dataclass
class SmtpReceiver:
    port: int
    subjects: list[str] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)

    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=alerts@example.com&to=ops@example.com&mode=insecure"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.subjects.append(str(message["Subject"]))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver(port=_free_port())
    controller = Controller(receiver, hostname="127.0.0.1", port=receiver.port)
    controller.start()
    yield receiver
    controller.stop()
