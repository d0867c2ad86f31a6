"""Servers on ``tcp://`` (TLS) and ``ssh://`` endpoints, against real servers on 127.0.0.1.

A TLS proxy that requires a client certificate and a private sshd both lead to the local
engine, so every request below goes through a real handshake. See ``tests/endpoint_servers.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import paramiko
import pytest

from hostcraft.runtime import Runtime
from hostcraft.store.models import Server
from tests.conftest import Api, create_region
from tests.endpoint_servers import (
    LOOPBACK,
    CertificateAuthority,
    DockerTlsProxy,
    IssuedCertificate,
    SshKeyPair,
    SshServer,
    create_certificate_authority,
    create_ssh_key_pair,
    issue_certificate,
    running_sshd,
    running_tls_proxy,
)

pytestmark = pytest.mark.docker

# requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE replace the CA the docker SDK sets,
# and the proxy variables could send a test connection off the loopback interface.
CLIENT_ENVIRONMENT = (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)
SWARM_STATES = {"inactive", "pending", "active", "error", "locked"}


@pytest.fixture(autouse=True)
def isolated_client_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear variables that change where and how requests connects.

    The two REQUESTS_CA_BUNDLE tests set that variable again on purpose.
    """
    for name in CLIENT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@dataclass(frozen=True)
class TlsEngine:
    proxy: DockerTlsProxy
    authority: CertificateAuthority
    client: IssuedCertificate

    def server_body(self, region_id: int, **overrides: Any) -> dict[str, Any]:
        body = {
            "name": "tls-node",
            "endpoint": self.proxy.endpoint,
            "regionId": region_id,
            "tlsCa": self.authority.certificate_pem,
            "tlsCert": self.client.certificate_pem,
            "tlsKey": self.client.private_key_pem,
        }
        body.update(overrides)
        return body

    @property
    def key_material(self) -> tuple[str, ...]:
        return (self.authority.certificate_pem, self.client.certificate_pem, self.client.private_key_pem)


@dataclass(frozen=True)
class SshEngine:
    server: SshServer
    user_key: SshKeyPair

    def server_body(self, region_id: int, **overrides: Any) -> dict[str, Any]:
        body = {
            "name": "ssh-node",
            "endpoint": self.server.endpoint,
            "regionId": region_id,
            "sshPrivateKey": self.user_key.private_key_openssh,
            "sshKnownHostKey": self.server.known_hosts_line,
        }
        body.update(overrides)
        return body

    def log_text(self) -> str:
        return self.server.log_path.read_text()


@pytest.fixture
def tls_engine(tmp_path: Path, docker_engine: docker.DockerClient) -> Iterator[TlsEngine]:
    authority = create_certificate_authority("hostcraft-test-ca")
    server_certificate = issue_certificate(authority, "docker-engine", server=True)
    client_certificate = issue_certificate(authority, "hostcraft", server=False)
    with running_tls_proxy(
        tmp_path, server=server_certificate, client_ca_pem=authority.certificate_pem
    ) as proxy:
        yield TlsEngine(proxy=proxy, authority=authority, client=client_certificate)


@pytest.fixture
def ssh_engine(tmp_path: Path, docker_engine: docker.DockerClient) -> Iterator[SshEngine]:
    user_key = create_ssh_key_pair()
    with running_sshd(tmp_path, authorized_key=user_key.public_key_line) as server:
        yield SshEngine(server=server, user_key=user_key)
        # A connection HostCraft left open would keep an sshd session alive past the listener,
        # so teardown closes it. test_ssh_connection_closed_after_request checks HostCraft itself.
        for transport in active_ssh_transports(server.port):
            transport.close()


@pytest.fixture
def region_id(api: Api) -> int:
    region = create_region(api)
    assert isinstance(region["id"], int)
    return region["id"]


def key_fragments(pem: str) -> list[str]:
    """Return the base64 lines of a PEM or OpenSSH block. Any one of them in a response is a leak."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def assert_no_key_material(text: str, *secrets: str) -> None:
    assert "-----BEGIN" not in text
    for secret in secrets:
        for fragment in key_fragments(secret):
            assert fragment not in text


def error_of(response: Any) -> dict[str, Any]:
    return dict(response.json()["error"])


def registered_servers(api: Api) -> list[dict[str, Any]]:
    response = api.get("/api/servers")
    assert response.status_code == 200, response.text
    return list(response.json())


def stored_server(runtime: Runtime, server_id: int) -> Server:
    with runtime.store.session() as session:
        server = session.get(Server, server_id)
        assert server is not None
        session.expunge(server)
        return server


def active_ssh_transports(port: int) -> list[paramiko.Transport]:
    transports = []
    for thread in threading.enumerate():
        if isinstance(thread, paramiko.Transport) and thread.is_active():
            try:
                peer_port = thread.getpeername()[1]
            except OSError:
                continue
            if peer_port == port:
                transports.append(thread)
    return transports


# TLS


def test_tls_server_records_engine_facts(
    api: Api, region_id: int, tls_engine: TlsEngine, docker_engine: docker.DockerClient
) -> None:
    expected = docker_engine.version()
    operating_system = docker_engine.info()["OperatingSystem"]

    created = api.post("/api/servers", tls_engine.server_body(region_id))

    assert created.status_code == 201, created.text
    server = created.json()
    assert server["endpoint"] == f"tcp://{LOOPBACK}:{tls_engine.proxy.port}"
    assert server["tlsConfigured"] is True
    assert server["engine"]["engineVersion"] == expected["Version"]
    assert server["engine"]["apiVersion"] == expected["ApiVersion"]
    assert operating_system in server["engine"]["os"]
    assert server["engine"]["cpus"] > 0
    assert server["engine"]["memoryBytes"] > 0
    assert server["swarm"]["state"] in SWARM_STATES
    assert server["validatedAt"] is not None
    assert tls_engine.proxy.forwarded_connections > 0

    validated = api.post(f"/api/servers/{server['id']}/validate")

    assert validated.status_code == 200, validated.text
    assert validated.json()["engine"]["engineVersion"] == expected["Version"]
    assert validated.json()["validatedAt"] >= server["validatedAt"]


def test_tls_responses_omit_key_material(api: Api, region_id: int, tls_engine: TlsEngine) -> None:
    created = api.post("/api/servers", tls_engine.server_body(region_id))
    assert created.status_code == 201, created.text
    server_id = created.json()["id"]

    responses = {
        "create": created,
        "get": api.get(f"/api/servers/{server_id}"),
        "list": api.get("/api/servers"),
        "validate": api.post(f"/api/servers/{server_id}/validate"),
        "update": api.put(
            f"/api/servers/{server_id}", tls_engine.server_body(region_id, name="tls-node-renamed")
        ),
    }

    for action, response in responses.items():
        assert response.status_code in (200, 201), f"{action}: {response.text}"
        assert_no_key_material(response.text, *tls_engine.key_material)


def test_tls_keys_encrypted_at_rest(
    api: Api, runtime: Runtime, region_id: int, tls_engine: TlsEngine
) -> None:
    created = api.post("/api/servers", tls_engine.server_body(region_id))
    assert created.status_code == 201, created.text

    row = stored_server(runtime, created.json()["id"])
    columns = {
        "tls_ca_encrypted": (row.tls_ca_encrypted, tls_engine.authority.certificate_pem),
        "tls_cert_encrypted": (row.tls_cert_encrypted, tls_engine.client.certificate_pem),
        "tls_key_encrypted": (row.tls_key_encrypted, tls_engine.client.private_key_pem),
    }

    for column, (stored, plaintext) in columns.items():
        assert stored is not None, column
        assert_no_key_material(stored, *tls_engine.key_material)
        assert runtime.secrets.decrypt(stored) == plaintext, column


def test_tls_ca_mismatch_rejected(api: Api, region_id: int, tls_engine: TlsEngine) -> None:
    unrelated = create_certificate_authority("unrelated-ca")

    response = api.post("/api/servers", tls_engine.server_body(region_id, tlsCa=unrelated.certificate_pem))

    assert response.status_code == 422, response.text
    assert registered_servers(api) == []
    assert tls_engine.proxy.forwarded_connections == 0
    assert_no_key_material(response.text, *tls_engine.key_material)
    error = error_of(response)
    assert error["details"]["field"] == "tlsCa", error
    assert "certificate verify failed" in error["message"].lower()


def test_tls_foreign_client_certificate_rejected(api: Api, region_id: int, tls_engine: TlsEngine) -> None:
    foreign = issue_certificate(create_certificate_authority("foreign-ca"), "hostcraft", server=False)
    body = tls_engine.server_body(region_id, tlsCert=foreign.certificate_pem, tlsKey=foreign.private_key_pem)

    response = api.post("/api/servers", body)

    assert response.status_code == 422, response.text
    assert registered_servers(api) == []
    assert tls_engine.proxy.forwarded_connections == 0
    # The proxy records the failure after sending its alert, so the response can arrive first.
    deadline = time.monotonic() + 2.0
    while not tls_engine.proxy.handshake_failures and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("certificate verify failed" in failure for failure in tls_engine.proxy.handshake_failures)
    assert_no_key_material(response.text, foreign.certificate_pem, foreign.private_key_pem)
    error = error_of(response)
    assert error["details"]["field"] in ("tlsCert", "tlsCa"), error
    assert "tlsCert" in error["message"]


@pytest.mark.parametrize(
    ("omitted", "field"),
    [
        (("tlsCa", "tlsCert", "tlsKey"), "tlsCa"),
        (("tlsCa",), "tlsCa"),
        (("tlsCert",), "tlsCert"),
        (("tlsKey",), "tlsKey"),
    ],
)
def test_tcp_without_tls_rejected(
    api: Api, region_id: int, tls_engine: TlsEngine, omitted: tuple[str, ...], field: str
) -> None:
    body = tls_engine.server_body(region_id)
    for name in omitted:
        del body[name]

    response = api.post("/api/servers", body)

    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["details"]["field"] == field
    assert field in error["message"]
    assert registered_servers(api) == []
    assert tls_engine.proxy.accepted_connections == 0


def test_tls_unreachable_engine_rejected(api: Api, region_id: int, tls_engine: TlsEngine) -> None:
    tls_engine.proxy.stop()

    response = api.post("/api/servers", tls_engine.server_body(region_id))

    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["details"]["field"] == "endpoint"
    assert tls_engine.proxy.endpoint in error["message"]
    assert "unreachable" in error["message"]
    assert registered_servers(api) == []


def test_validate_unreachable_engine_keeps_server(api: Api, region_id: int, tls_engine: TlsEngine) -> None:
    created = api.post("/api/servers", tls_engine.server_body(region_id))
    assert created.status_code == 201, created.text
    server = created.json()
    tls_engine.proxy.stop()

    response = api.post(f"/api/servers/{server['id']}/validate")

    assert response.status_code == 422, response.text
    assert error_of(response)["details"]["field"] == "endpoint"
    kept = api.get(f"/api/servers/{server['id']}").json()
    assert kept["engine"] == server["engine"]
    assert kept["validatedAt"] == server["validatedAt"]


def test_tls_update_with_wrong_ca_keeps_keys(
    api: Api, runtime: Runtime, region_id: int, tls_engine: TlsEngine
) -> None:
    created = api.post("/api/servers", tls_engine.server_body(region_id))
    assert created.status_code == 201, created.text
    server_id = created.json()["id"]
    unrelated = create_certificate_authority("unrelated-ca")

    response = api.put(f"/api/servers/{server_id}", {"tlsCa": unrelated.certificate_pem})

    assert response.status_code == 422, response.text
    row = stored_server(runtime, server_id)
    assert row.tls_ca_encrypted is not None
    assert runtime.secrets.decrypt(row.tls_ca_encrypted) == tls_engine.authority.certificate_pem
    assert api.post(f"/api/servers/{server_id}/validate").status_code == 200


def test_tls_works_with_requests_ca_bundle_set(
    api: Api, region_id: int, tls_engine: TlsEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # REQUESTS_CA_BUNDLE often points at the system store, but tlsCa must still verify the engine.
    bundle = tmp_path / "unrelated-bundle.pem"
    bundle.write_text(create_certificate_authority("unrelated-ca").certificate_pem)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))

    response = api.post("/api/servers", tls_engine.server_body(region_id))

    assert response.status_code == 201, response.text


def test_tls_pinned_ca_beats_requests_ca_bundle(
    api: Api, region_id: int, tls_engine: TlsEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "engine-ca-bundle.pem"
    bundle.write_text(tls_engine.authority.certificate_pem)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    unrelated = create_certificate_authority("unrelated-ca")

    response = api.post("/api/servers", tls_engine.server_body(region_id, tlsCa=unrelated.certificate_pem))

    assert response.status_code == 422, response.text
    assert registered_servers(api) == []


# SSH


@pytest.mark.parametrize("host_key_format", ["known_hosts line", "public key"])
def test_ssh_server_records_engine_facts(
    api: Api, region_id: int, ssh_engine: SshEngine, docker_engine: docker.DockerClient, host_key_format: str
) -> None:
    expected = docker_engine.version()
    host_key = (
        ssh_engine.server.known_hosts_line
        if host_key_format == "known_hosts line"
        else ssh_engine.server.host_key.public_key_line
    )

    created = api.post("/api/servers", ssh_engine.server_body(region_id, sshKnownHostKey=host_key))

    assert created.status_code == 201, created.text
    server = created.json()
    assert server["endpoint"] == f"ssh://root@{LOOPBACK}:{ssh_engine.server.port}"
    assert server["sshKeyConfigured"] is True
    assert server["sshHostKeyPinned"] is True
    assert server["engine"]["engineVersion"] == expected["Version"]
    assert server["engine"]["apiVersion"] == expected["ApiVersion"]
    assert server["swarm"]["state"] in SWARM_STATES
    assert "Accepted publickey for root" in ssh_engine.log_text()

    validated = api.post(f"/api/servers/{server['id']}/validate")

    assert validated.status_code == 200, validated.text
    assert validated.json()["engine"]["engineVersion"] == expected["Version"]


def test_ssh_responses_omit_private_key(api: Api, region_id: int, ssh_engine: SshEngine) -> None:
    created = api.post("/api/servers", ssh_engine.server_body(region_id))
    assert created.status_code == 201, created.text
    server_id = created.json()["id"]

    responses = {
        "create": created,
        "get": api.get(f"/api/servers/{server_id}"),
        "list": api.get("/api/servers"),
        "validate": api.post(f"/api/servers/{server_id}/validate"),
        "update": api.put(
            f"/api/servers/{server_id}", ssh_engine.server_body(region_id, name="ssh-node-renamed")
        ),
    }

    for action, response in responses.items():
        assert response.status_code in (200, 201), f"{action}: {response.text}"
        assert_no_key_material(response.text, ssh_engine.user_key.private_key_openssh)


def test_ssh_private_key_encrypted_at_rest(
    api: Api, runtime: Runtime, region_id: int, ssh_engine: SshEngine
) -> None:
    created = api.post("/api/servers", ssh_engine.server_body(region_id))
    assert created.status_code == 201, created.text

    row = stored_server(runtime, created.json()["id"])

    assert row.ssh_private_key_encrypted is not None
    assert_no_key_material(row.ssh_private_key_encrypted, ssh_engine.user_key.private_key_openssh)
    assert runtime.secrets.decrypt(row.ssh_private_key_encrypted) == ssh_engine.user_key.private_key_openssh


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa"])
def test_ssh_host_key_mismatch_rejected(
    api: Api, region_id: int, ssh_engine: SshEngine, key_type: str
) -> None:
    impostor_host_key = create_ssh_key_pair(key_type).public_key_line

    response = api.post("/api/servers", ssh_engine.server_body(region_id, sshKnownHostKey=impostor_host_key))

    assert response.status_code == 422, response.text
    assert registered_servers(api) == []
    error = error_of(response)
    assert error["details"]["field"] == "sshKnownHostKey"
    assert "mismatch" in error["message"]
    assert_no_key_material(response.text, ssh_engine.user_key.private_key_openssh)
    # The host key is checked before authentication, so the private key was never offered.
    assert "publickey" not in ssh_engine.log_text()


@pytest.mark.parametrize("omitted", ["sshKnownHostKey", "sshPrivateKey"])
def test_ssh_without_key_material_rejected(
    api: Api, region_id: int, ssh_engine: SshEngine, omitted: str
) -> None:
    body = ssh_engine.server_body(region_id)
    del body[omitted]

    response = api.post("/api/servers", body)

    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["details"]["field"] == omitted
    assert omitted in error["message"]
    assert registered_servers(api) == []


def test_ssh_unauthorized_key_rejected(api: Api, region_id: int, ssh_engine: SshEngine) -> None:
    stranger = create_ssh_key_pair()

    response = api.post(
        "/api/servers", ssh_engine.server_body(region_id, sshPrivateKey=stranger.private_key_openssh)
    )

    assert response.status_code == 422, response.text
    assert registered_servers(api) == []
    error = error_of(response)
    assert error["details"]["field"] == "sshPrivateKey"
    assert "rejected" in error["message"]
    assert_no_key_material(response.text, stranger.private_key_openssh)


@pytest.mark.parametrize("case", ["accepted", "host key mismatch", "unauthorized key"])
def test_ssh_connection_closed_after_request(
    api: Api, region_id: int, ssh_engine: SshEngine, case: str
) -> None:
    overrides: dict[str, str] = {}
    if case == "host key mismatch":
        overrides["sshKnownHostKey"] = create_ssh_key_pair().public_key_line
    if case == "unauthorized key":
        overrides["sshPrivateKey"] = create_ssh_key_pair().private_key_openssh

    response = api.post("/api/servers", ssh_engine.server_body(region_id, **overrides))
    assert response.status_code == (201 if case == "accepted" else 422), response.text

    # A transport thread can end a moment after the response was sent, so poll briefly.
    deadline = time.monotonic() + 2.0
    while active_ssh_transports(ssh_engine.server.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert active_ssh_transports(ssh_engine.server.port) == []
