"""Docker Engine endpoints: parsing, validation and connecting.

Supported endpoints:
- ``unix:///path/to/docker.sock``;
- ``tcp://host:port`` with TLS (CA, client certificate and key); plain TCP is rejected because
  an unauthenticated engine socket grants root on the host to anyone who reaches it;
- ``ssh://user@host[:port]`` with a private key and the server's known host key; the host key
  is pinned, never taken from ``~/.ssh`` and never accepted on first use.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import ssl
import tempfile
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import StringIO
from typing import Any, Literal

import docker
import docker.errors
import paramiko
import requests
from docker.transport import SSHHTTPAdapter

from hostcraft.errors import EngineUnavailable, ValidationError

Scheme = Literal["unix", "tcp", "ssh"]
MIN_API_VERSION = "1.41"


@dataclass(frozen=True)
class Endpoint:
    scheme: Scheme
    url: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class Credentials:
    """Decrypted key material for one server; lives only while a connection is made."""

    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    ssh_private_key: str | None = None
    ssh_known_host_key: str | None = None


def parse_endpoint(url: str) -> Endpoint:
    """Parse and check an endpoint URL; raises ValidationError on the ``endpoint`` field."""
    parsed = urllib.parse.urlparse(url.strip())
    if parsed.scheme == "unix":
        path = parsed.path
        if not path.startswith("/"):
            raise ValidationError(
                f"invalid unix endpoint {url!r}: expected unix:///absolute/path/docker.sock",
                field="endpoint",
            )
        return Endpoint(scheme="unix", url=f"unix://{path}", path=path)
    if parsed.scheme in ("tcp", "ssh"):
        if not parsed.hostname:
            raise ValidationError(f"invalid endpoint {url!r}: the host is missing", field="endpoint")
        try:
            port = parsed.port
        except ValueError as exc:
            raise ValidationError(f"invalid endpoint {url!r}: {exc}", field="endpoint") from exc
        if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
            raise ValidationError(
                f"invalid endpoint {url!r}: a {parsed.scheme} endpoint has no path or query",
                field="endpoint",
            )
        if parsed.scheme == "tcp":
            if port is None:
                raise ValidationError(
                    f"invalid tcp endpoint {url!r}: the port is missing (the TLS port is usually 2376)",
                    field="endpoint",
                )
            return Endpoint(
                scheme="tcp", url=f"tcp://{parsed.hostname}:{port}", host=parsed.hostname, port=port
            )
        if not parsed.username:
            raise ValidationError(
                f"invalid ssh endpoint {url!r}: expected ssh://user@host[:port]", field="endpoint"
            )
        port = port or 22
        return Endpoint(
            scheme="ssh",
            url=f"ssh://{parsed.username}@{parsed.hostname}:{port}",
            host=parsed.hostname,
            port=port,
            user=parsed.username,
        )
    raise ValidationError(
        f"unsupported endpoint scheme {parsed.scheme or '(none)'!r} in {url!r}: "
        "use unix:///path, tcp://host:port (with TLS) or ssh://user@host[:port]",
        field="endpoint",
    )


def check_credentials(endpoint: Endpoint, credentials: Credentials) -> None:
    """Check that the key material fits the endpoint before anything connects."""
    if endpoint.scheme == "tcp":
        missing = [
            name
            for name, value in (
                ("tlsCa", credentials.tls_ca),
                ("tlsCert", credentials.tls_cert),
                ("tlsKey", credentials.tls_key),
            )
            if not value
        ]
        if missing:
            raise ValidationError(
                f"a tcp endpoint needs TLS: {', '.join(missing)} missing "
                "(plain TCP would expose the engine's root access unauthenticated)",
                field=missing[0],
            )
    if endpoint.scheme == "ssh":
        if not credentials.ssh_private_key:
            raise ValidationError("an ssh endpoint needs sshPrivateKey", field="sshPrivateKey")
        if not credentials.ssh_known_host_key:
            raise ValidationError(
                "an ssh endpoint needs sshKnownHostKey (the server's public host key, "
                "e.g. the output of ssh-keyscan): host keys are never trusted on first use",
                field="sshKnownHostKey",
            )
        load_private_key(credentials.ssh_private_key)
        load_host_key(credentials.ssh_known_host_key)


def load_private_key(text: str) -> paramiko.PKey:
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise ValidationError(
        "invalid sshPrivateKey: not an unencrypted OpenSSH/PEM ed25519, ECDSA or RSA private key",
        field="sshPrivateKey",
    )


def load_host_key(text: str) -> paramiko.PKey:
    """Read a host key given as ``type base64`` or as a known_hosts line ``host type base64``."""
    fields = text.strip().split()
    if len(fields) >= 3 and not fields[0].startswith(("ssh-", "ecdsa-")):
        fields = fields[1:]
    if len(fields) < 2:
        raise ValidationError(
            "invalid sshKnownHostKey: expected 'ssh-ed25519 AAAA...' or a known_hosts line",
            field="sshKnownHostKey",
        )
    try:
        return paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1], validate=True))
    except (paramiko.SSHException, ValueError, TypeError, binascii.Error) as exc:
        raise ValidationError(f"invalid sshKnownHostKey: {exc}", field="sshKnownHostKey") from exc


class _PinnedHostKeySSHAdapter(SSHHTTPAdapter):  # type: ignore[misc]
    """The SDK's paramiko transport, with the key and host key HostCraft stores."""

    def __init__(
        self, base_url: str, *, private_key: paramiko.PKey, host_key: paramiko.PKey, timeout: float
    ) -> None:
        self._private_key = private_key
        self._host_key = host_key
        self._connect_timeout = timeout
        super().__init__(base_url, timeout=int(max(timeout, 1)))

    def _connect(self) -> None:
        # A refused host key or login leaves paramiko's transport thread and socket open
        # unless the client is closed here.
        try:
            super()._connect()
        except BaseException:
            if self.ssh_client is not None:
                self.ssh_client.close()
            raise

    def _create_paramiko_client(self, base_url: str) -> None:
        parsed = urllib.parse.urlparse(base_url)
        port = parsed.port or 22
        self.ssh_client = paramiko.SSHClient()
        hostname = parsed.hostname or ""
        host_entry = hostname if port == 22 else f"[{hostname}]:{port}"
        self.ssh_client.get_host_keys().add(host_entry, self._host_key.get_name(), self._host_key)
        self.ssh_client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.ssh_params = {
            "hostname": parsed.hostname,
            "port": port,
            "username": parsed.username,
            "pkey": self._private_key,
            "allow_agent": False,
            "look_for_keys": False,
            "timeout": self._connect_timeout,
            "banner_timeout": self._connect_timeout,
            "auth_timeout": self._connect_timeout,
        }


def _root_cause(exc: BaseException) -> BaseException:
    """Find the SSH or TLS error inside the SDK's wrappers (DockerException, ConnectionError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, paramiko.SSHException | ssl.SSLError | requests.exceptions.SSLError):
            return current
        current = current.__cause__ or current.__context__
    return exc


def _raise_connect_error(endpoint: Endpoint, error: Exception) -> None:
    exc = _root_cause(error)
    if isinstance(exc, paramiko.BadHostKeyException):
        raise ValidationError(
            f"host key mismatch for {endpoint.host}:{endpoint.port}: the server presented "
            f"{exc.key.get_name()} {exc.key.get_base64()[:16]}..., which differs from sshKnownHostKey",
            field="sshKnownHostKey",
        ) from exc
    if isinstance(exc, paramiko.AuthenticationException):
        raise ValidationError(
            f"ssh authentication failed for {endpoint.user}@{endpoint.host}: "
            "the server rejected sshPrivateKey",
            field="sshPrivateKey",
        ) from exc
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError):
        raise ValidationError(
            f"TLS handshake with {endpoint.url} failed: {exc}. Check tlsCa against the engine's "
            "certificate and that tlsCert/tlsKey are signed by the CA the engine trusts",
            field="tlsCa",
        ) from error
    raise EngineUnavailable(
        f"engine at {endpoint.url} is unreachable: {error}",
        details={"endpoint": endpoint.url},
    ) from exc


@contextmanager
def connect(
    endpoint_url: str, credentials: Credentials | None = None, *, timeout: float = 10.0
) -> Iterator[docker.DockerClient]:
    """Yield a Docker client for the endpoint, with the API version negotiated.

    Raises ValidationError for key material the endpoint rejects (TLS, host key, SSH auth)
    and EngineUnavailable when the engine does not respond.
    """
    endpoint = parse_endpoint(endpoint_url)
    credentials = credentials or Credentials()
    check_credentials(endpoint, credentials)
    workdir: str | None = None
    client: docker.DockerClient | None = None
    try:
        if endpoint.scheme == "unix":
            client = docker.DockerClient(base_url=endpoint.url, version=MIN_API_VERSION, timeout=int(timeout))
        elif endpoint.scheme == "tcp":
            workdir = tempfile.mkdtemp(prefix="hostcraft-tls-")
            client = _tls_client(endpoint, credentials, workdir, timeout)
        else:
            client = _ssh_client(endpoint, credentials, timeout)
        _negotiate_version(client)
    except (ValidationError, EngineUnavailable):
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    except Exception as exc:  # the SDK and its transports raise many unrelated types
        if client is not None:
            client.close()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        _raise_connect_error(endpoint, exc)
        raise  # unreachable: _raise_connect_error always raises
    try:
        yield client
    except requests.exceptions.RequestException as exc:
        raise EngineUnavailable(
            f"engine at {endpoint.url} did not respond: {type(exc).__name__}: {exc}",
            details={"endpoint": endpoint.url},
        ) from exc
    except docker.errors.APIError as exc:
        from hostcraft.docker.swarm import translate_api_error

        raise translate_api_error(exc, action=f"call the engine at {endpoint.url}") from exc
    finally:
        client.close()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _negotiate_version(client: docker.DockerClient) -> None:
    """Use the engine's own API version, but never one older than HostCraft needs."""
    version = client.api._retrieve_server_version()
    if _version_tuple(version) < _version_tuple(MIN_API_VERSION):
        raise ValidationError(
            f"engine API {version} is too old: HostCraft needs Docker Engine API {MIN_API_VERSION} "
            "(Docker 20.10) or newer",
            field="endpoint",
        )
    client.api._version = version


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _tls_client(
    endpoint: Endpoint, credentials: Credentials, workdir: str, timeout: float
) -> docker.DockerClient:
    # The SDK loads certificates from files on every new connection, so they live in a
    # private directory for the lifetime of the client.
    paths: dict[str, str] = {}
    for name, value in (
        ("ca.pem", credentials.tls_ca),
        ("cert.pem", credentials.tls_cert),
        ("key.pem", credentials.tls_key),
    ):
        path = os.path.join(workdir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value or "")
        paths[name] = path
    tls = docker.tls.TLSConfig(
        client_cert=(paths["cert.pem"], paths["key.pem"]), ca_cert=paths["ca.pem"], verify=True
    )
    client = docker.DockerClient(
        base_url=f"https://{endpoint.host}:{endpoint.port}",
        tls=tls,
        version=MIN_API_VERSION,
        timeout=int(timeout),
    )
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace the pinned CA, and proxy variables
    # redirect engine traffic; neither may apply to an engine connection.
    client.api.trust_env = False
    return client


def _ssh_client(endpoint: Endpoint, credentials: Credentials, timeout: float) -> docker.DockerClient:
    private_key = load_private_key(credentials.ssh_private_key or "")
    host_key = load_host_key(credentials.ssh_known_host_key or "")
    adapter = _PinnedHostKeySSHAdapter(
        endpoint.url, private_key=private_key, host_key=host_key, timeout=timeout
    )
    # An APIClient needs some base URL at construction; the SSH adapter then replaces the transport.
    client = docker.DockerClient(
        base_url="unix:///nonexistent.sock", version=MIN_API_VERSION, timeout=int(timeout)
    )
    api: Any = client.api
    api.mount("http+docker://ssh", adapter)
    api._custom_adapter = adapter
    api.base_url = "http+docker://ssh"
    return client
