"""Run a command inside a container through the exec API, streaming stdin and stdout.

docker-py's ``exec_run`` either buffers the whole output or hides the exit code of a stream.
Dumps and restores need a stream, its exit code and stdin, so this module reads the
multiplexed stream itself. Each frame has an 8-byte header: the stream type, three zero
bytes and the big-endian payload length.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import docker
from docker.errors import APIError, NotFound

from hostcraft.errors import EngineUnavailable
from hostcraft.errors import NotFound as HostCraftNotFound

_STDOUT = 1
_STDERR = 2
_STDIN_CHUNK = 1024 * 1024
# Kept from the end of stderr; tools print their fatal error last.
STDERR_LIMIT = 64 * 1024


class ByteSource(Protocol):
    """Anything with a binary ``read``: an open file, a pipe, ``sys.stdin.buffer``."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one exec: its exit code and the end of what it wrote to stderr."""

    exit_code: int
    stderr: bytes


def exec_in_container(
    client: docker.DockerClient,
    container_id: str,
    command: list[str],
    *,
    on_stdout: Callable[[bytes], None],
    environment: dict[str, str] | None = None,
    user: str = "",
    stdin: ByteSource | None = None,
) -> ExecResult:
    """Run ``command`` in the container, pass each stdout chunk to ``on_stdout``, and wait.

    ``environment`` goes to the exec's own environment (never to its command line). When
    ``on_stdout`` raises, the stream is closed, so the tool gets a broken pipe, and the
    exception propagates. No read timeout applies, because a dump may be silent for minutes.
    """
    try:
        exec_id = client.api.exec_create(
            container_id,
            command,
            stdout=True,
            stderr=True,
            stdin=stdin is not None,
            environment=environment or {},
            user=user,
        )["Id"]
        stream = client.api.exec_start(exec_id, socket=True)
    except NotFound as exc:
        raise HostCraftNotFound(
            f"container {container_id} not found or not running: {exc.explanation or exc}",
            details={"container": container_id},
        ) from exc
    except APIError as exc:
        raise EngineUnavailable(
            f"failed to run {command[0]} in container {container_id}: {exc.explanation or exc}",
            details={"container": container_id},
        ) from exc

    connection: socket.socket = getattr(stream, "_sock", stream)
    connection.settimeout(None)
    writer_errors: list[OSError] = []
    writer = None
    if stdin is not None:
        writer = threading.Thread(target=_send_stdin, args=(connection, stdin, writer_errors), daemon=True)
        writer.start()
    stderr = bytearray()
    try:
        for stream_type, payload in _frames(connection):
            if stream_type == _STDOUT:
                on_stdout(payload)
            elif stream_type == _STDERR:
                stderr += payload
                del stderr[:-STDERR_LIMIT]
    finally:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
        stream.close()
        connection.close()
        if writer is not None:
            writer.join(timeout=30)
    return ExecResult(exit_code=_exit_code(client, exec_id), stderr=bytes(stderr))


def _send_stdin(connection: socket.socket, source: ByteSource, errors: list[OSError]) -> None:
    try:
        while chunk := source.read(_STDIN_CHUNK):
            connection.sendall(chunk)
        # A half-close is how the engine learns that stdin ended.
        connection.shutdown(socket.SHUT_WR)
    except OSError as exc:  # the command exited early or the stream closed, and its exit code shows why
        errors.append(exc)


def _frames(connection: socket.socket) -> Any:
    while True:
        header = _receive_exactly(connection, 8)
        if header is None:
            return
        stream_type, length = struct.unpack(">BxxxL", header)
        payload = _receive_exactly(connection, length)
        if payload is None:
            return
        yield stream_type, payload


def _receive_exactly(connection: socket.socket, length: int) -> bytes | None:
    parts = bytearray()
    while len(parts) < length:
        chunk = connection.recv(min(length - len(parts), 1024 * 1024))
        if not chunk:
            return None
        parts += chunk
    return bytes(parts)


def _exit_code(client: docker.DockerClient, exec_id: str) -> int:
    # The stream can end a moment before the engine records the exit code.
    deadline = time.monotonic() + 30
    while True:
        state = client.api.exec_inspect(exec_id)
        if not state.get("Running") and state.get("ExitCode") is not None:
            return int(state["ExitCode"])
        if time.monotonic() > deadline:
            raise EngineUnavailable(f"exec {exec_id[:12]} did not report an exit code within 30 s")
        time.sleep(0.1)
