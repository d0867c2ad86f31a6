"""Remote-engine endpoints on 127.0.0.1 for tests, a TLS proxy and a private sshd.

Both front the local engine at ``/var/run/docker.sock``. The TLS proxy terminates TLS,
requires a client certificate signed by its CA and forwards the bytes to the socket. The
sshd lets ``root`` in with one public key, and the SDK runs ``docker system dial-stdio``
through it. Keys and certificates are generated per test with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = "127.0.0.1"
ENGINE_SOCKET = "/var/run/docker.sock"
SSHD = "/usr/sbin/sshd"
# sshd exits at startup when its privilege-separation directory is missing (OpenSSH 9.2, Debian 12).
SSHD_PRIVSEP_DIR = Path("/run/sshd")
STARTUP_TIMEOUT_SECONDS = 10.0


# Certificates


@dataclass(frozen=True)
class CertificateAuthority:
    name: str
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: str
    private_key_pem: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))


def _private_key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def create_certificate_authority(name: str) -> CertificateAuthority:
    """Create a self-signed CA with the extensions strict X.509 verification expects."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    certificate = _validity(builder).sign(key, hashes.SHA256())
    return CertificateAuthority(name=name, certificate=certificate, private_key=key)


def issue_certificate(
    authority: CertificateAuthority, common_name: str, *, server: bool
) -> IssuedCertificate:
    """Issue a leaf certificate for a server (with the SAN IP 127.0.0.1) or for a client."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.private_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False
        )
    certificate = _validity(builder).sign(authority.private_key, hashes.SHA256())
    return IssuedCertificate(
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        private_key_pem=_private_key_pem(key),
    )


# TLS proxy


class DockerTlsProxy:
    """A TLS listener on 127.0.0.1 that forwards each authenticated connection to the engine socket.

    The handshake requires a client certificate signed by ``client_ca_pem``. Rejected
    handshakes are kept in ``handshake_failures``, so a test can tell a rejected certificate
    from any other failure. ``accepted_connections`` counts TCP connections of any outcome.
    """

    def __init__(self, directory: Path, *, server: IssuedCertificate, client_ca_pem: str) -> None:
        cert_path = directory / "proxy-cert.pem"
        key_path = directory / "proxy-key.pem"
        cert_path.write_text(server.certificate_pem)
        key_path.write_text(server.private_key_pem)
        key_path.chmod(0o600)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert_path, key_path)
        self._context.load_verify_locations(cadata=client_ca_pem)
        self._context.verify_mode = ssl.CERT_REQUIRED

        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen()
        # A timeout lets the accept loop notice stop() instead of blocking forever.
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.handshake_failures: list[str] = []
        self.accepted_connections = 0
        self.forwarded_connections = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"tls-proxy-{self.port}", daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"tcp://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self._acceptor.start()

    def stop(self) -> None:
        """Close the listener and every forwarded connection. A second call does nothing."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted_connections += 1
            thread = threading.Thread(target=self._forward, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _forward(self, connection: socket.socket) -> None:
        connection.setblocking(True)
        connection.settimeout(STARTUP_TIMEOUT_SECONDS)
        try:
            tls = self._context.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.handshake_failures.append(str(exc))
            connection.close()
            return
        self.forwarded_connections += 1
        with tls, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as engine:
            engine.connect(ENGINE_SOCKET)
            self._pump(tls, engine)

    def _pump(self, tls: ssl.SSLSocket, engine: socket.socket) -> None:
        peers = {tls: engine, engine: tls}
        while not self._stopping.is_set():
            # Decrypted bytes already buffered inside the SSL object are invisible to select().
            readable = [tls] if tls.pending() else select.select([tls, engine], [], [], 0.2)[0]
            for source in readable:
                try:
                    chunk = source.recv(65536)
                except (ssl.SSLError, OSError):
                    return
                if not chunk:
                    return
                peers[source].sendall(chunk)


@contextmanager
def running_tls_proxy(
    directory: Path, *, server: IssuedCertificate, client_ca_pem: str
) -> Iterator[DockerTlsProxy]:
    proxy = DockerTlsProxy(directory, server=server, client_ca_pem=client_ca_pem)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


# SSH


@dataclass(frozen=True)
class SshKeyPair:
    private_key_openssh: str
    public_key_line: str


def create_ssh_key_pair(kind: str = "ed25519") -> SshKeyPair:
    """Create an unencrypted OpenSSH key pair of ``kind`` ``ed25519`` or ``ecdsa``."""
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    key = (
        ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return SshKeyPair(private_key_openssh=private, public_key_line=public)


@dataclass(frozen=True)
class SshServer:
    port: int
    host_key: SshKeyPair
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"ssh://root@{LOOPBACK}:{self.port}"

    @property
    def known_hosts_line(self) -> str:
        return f"[{LOOPBACK}]:{self.port} {self.host_key.public_key_line}"


def _free_loopback_port() -> int:
    # sshd binds the port itself, so another process could take it in between. The startup
    # check then fails with sshd's own "Address already in use" message.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _write_sshd_config(directory: Path, *, port: int, host_key: SshKeyPair, authorized_key: str) -> Path:
    host_key_path = directory / "ssh_host_key"
    host_key_path.write_text(host_key.private_key_openssh)
    host_key_path.chmod(0o600)
    authorized_keys = directory / "authorized_keys"
    authorized_keys.write_text(authorized_key + "\n")
    authorized_keys.chmod(0o600)
    config = directory / "sshd_config"
    # StrictModes is off because pytest's tmp_path sits under the world-writable /tmp,
    # which sshd's ownership check on the AuthorizedKeysFile path would reject.
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {LOOPBACK}:{port}",
                f"HostKey {host_key_path}",
                f"AuthorizedKeysFile {authorized_keys}",
                f"PidFile {directory / 'sshd.pid'}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "AllowUsers root",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "PrintMotd no",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    return config


def _wait_for_banner(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with status {process.returncode}: {log_path.read_text()}")
        with suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5) as probe:
            if probe.recv(4).startswith(b"SSH-"):
                return
        time.sleep(0.05)
    raise RuntimeError(
        f"sshd did not accept connections on {LOOPBACK}:{port} within "
        f"{STARTUP_TIMEOUT_SECONDS}s: {log_path.read_text()}"
    )


def _child_pids(parent_pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            # The command name in brackets may contain spaces, so fields are counted after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent_pid:
                children.append(int(stat.parent.name))
    return children


def _wait_for_sessions_to_end(listener_pid: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while _child_pids(listener_pid) and time.monotonic() < deadline:
        time.sleep(0.05)


@contextmanager
def running_sshd(directory: Path, *, authorized_key: str) -> Iterator[SshServer]:
    """Run a private sshd on a free loopback port that admits root with ``authorized_key`` only."""
    if not os.path.exists(SSHD):
        raise RuntimeError(f"{SSHD} not found: install Debian's openssh-server")
    if shutil.which("docker") is None:
        raise RuntimeError("the docker CLI is not on PATH: sshd sessions run 'docker system dial-stdio'")
    SSHD_PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    host_key = create_ssh_key_pair()
    port = _free_loopback_port()
    config = _write_sshd_config(directory, port=port, host_key=host_key, authorized_key=authorized_key)
    log_path = directory / "sshd.log"

    with log_path.open("wb") as log:
        # sshd re-executes itself for every connection, so it needs its absolute path.
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_banner(process, port, log_path)
        yield SshServer(port=port, host_key=host_key, log_path=log_path)
    finally:
        # Children that outlive the listener are re-parented to PID 1 and stay zombies until it
        # reaps them, so closed sessions get a moment to end first. A client that keeps its
        # connection open still leaves its session behind.
        _wait_for_sessions_to_end(process.pid)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
