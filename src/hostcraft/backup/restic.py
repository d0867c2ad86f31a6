"""Run restic: arguments as lists, secrets only in the environment, ``--json`` output parsed.

Every restic failure leaves this module as a ``BackupError`` whose ``reason`` classifies it
(``unreachable``, ``bad_credentials``, ``missing_bucket``, ``access_denied``,
``wrong_password``, ``not_initialised``, ``failed``), so callers and the destination test
report the same reason for the same fault.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, TypeVar

from hostcraft.errors import BackupError

logger = logging.getLogger(__name__)

Reason = Literal[
    "unreachable",
    "bad_credentials",
    "missing_bucket",
    "access_denied",
    "wrong_password",
    "not_initialised",
    "failed",
]

# restic 0.14 writes S3 and network errors as text on stderr; the first matching row wins.
_REASON_PATTERNS: tuple[tuple[Reason, tuple[str, ...]], ...] = (
    ("missing_bucket", ("NoSuchBucket", "bucket does not exist")),
    (
        "bad_credentials",
        (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "Access Key Id you provided does not exist",
            "request signature we calculated does not match",
            "InvalidClientTokenId",
        ),
    ),
    ("access_denied", ("AccessDenied", "Access Denied", "permission denied")),
    ("wrong_password", ("wrong password or no key found",)),
    (
        "unreachable",
        ("connection refused", "no such host", "i/o timeout", "network is unreachable", "no route to host"),
    ),
    ("not_initialised", ("Is there a repository at the following location?", "config file does not exist")),
)

# Messages restic 0.14 prints when another process holds a conflicting lock. restic cannot wait
# for a lock, so such a command fails at once.
LOCK_MESSAGES = ("repository is already locked", "unable to create lock", "lock was created at")

ProgressCallback = Callable[["Progress"], None]
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Repository:
    """A restic repository location and the secrets that open it."""

    url: str
    password: str = field(repr=False)
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    region: str | None = None
    path_style: bool = True

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3:")

    def environment(self) -> dict[str, str]:
        """Return the variables restic reads the password and S3 keys from."""
        env = {"RESTIC_REPOSITORY": self.url, "RESTIC_PASSWORD": self.password}
        if self.is_s3:
            env["AWS_ACCESS_KEY_ID"] = self.access_key or ""
            env["AWS_SECRET_ACCESS_KEY"] = self.secret_key or ""
            if self.region:
                env["AWS_DEFAULT_REGION"] = self.region
        return env

    def options(self) -> list[str]:
        """Return the ``-o`` options for the backend (bucket lookup style, region)."""
        if not self.is_s3:
            return []
        options = ["-o", f"s3.bucket-lookup={'path' if self.path_style else 'dns'}"]
        if self.region:
            options += ["-o", f"s3.region={self.region}"]
        return options


@dataclass(frozen=True)
class Progress:
    """One ``status`` line of ``restic backup --json`` or ``restic restore --json``."""

    percent_done: float
    bytes_done: int
    total_bytes: int
    files_done: int
    total_files: int


@dataclass(frozen=True)
class BackupSummary:
    """The ``summary`` line restic prints when a backup has written its snapshot."""

    snapshot_id: str
    data_added: int
    total_bytes_processed: int
    files_new: int
    files_changed: int
    files_unmodified: int
    duration_seconds: float


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: str
    paths: list[str]
    tags: list[str]
    hostname: str


_init_locks: dict[str, threading.Lock] = {}
_init_locks_guard = threading.Lock()


def _init_lock(url: str) -> threading.Lock:
    with _init_locks_guard:
        return _init_locks.setdefault(url, threading.Lock())


class RepositoryLock:
    """Shared or exclusive use of one repository by this process's restic commands.

    restic 0.14 cannot wait for a lock, so a command that meets a conflicting lock fails at once.
    Commands that write snapshots or read them share the repository, and ``check`` and
    ``forget`` take it alone, so this process's own commands wait for each other instead of
    failing. A waiting exclusive user goes first, so a stream of backups cannot starve a check.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._sharers = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            while self._exclusive or self._waiting_exclusive:
                self._condition.wait()
            self._sharers += 1
        try:
            yield
        finally:
            with self._condition:
                self._sharers -= 1
                self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._waiting_exclusive += 1
            while self._exclusive or self._sharers:
                self._condition.wait()
            self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()


_repository_locks: dict[str, RepositoryLock] = {}


def repository_lock(url: str) -> RepositoryLock:
    """Return this process's lock of the repository at ``url``."""
    with _init_locks_guard:
        return _repository_locks.setdefault(url, RepositoryLock())


def lock_conflict(message: str) -> bool:
    """Return True when a restic error message reports a conflicting lock held by another process."""
    return any(text in message for text in LOCK_MESSAGES)


def retry_while_locked(action: Callable[[], _Result], *, attempts: int, wait_seconds: float) -> _Result:
    """Run ``action`` and return its result, running it again while it fails on a conflicting lock.

    Gives up after ``attempts`` runs and raises the last BackupError. Any other error is raised at once.
    """
    for attempt in range(attempts):
        try:
            return action()
        except BackupError as exc:
            if not lock_conflict(exc.message) or attempt + 1 == attempts:
                raise
            time.sleep(wait_seconds)
    raise ValueError(f"attempts must be at least 1, not {attempts}")


def classify(stderr: str) -> Reason:
    """Return the failure reason restic's error output names."""
    for reason, patterns in _REASON_PATTERNS:
        if any(pattern.lower() in stderr.lower() for pattern in patterns):
            return reason
    return "failed"


def parse_summary(lines: Iterable[str]) -> BackupSummary | None:
    """Return the summary of ``restic backup --json`` output, or None when there is none."""
    for line in lines:
        message = _json_line(line)
        if message.get("message_type") == "summary" and message.get("snapshot_id"):
            return BackupSummary(
                snapshot_id=str(message["snapshot_id"]),
                data_added=int(message.get("data_added", 0)),
                total_bytes_processed=int(message.get("total_bytes_processed", 0)),
                files_new=int(message.get("files_new", 0)),
                files_changed=int(message.get("files_changed", 0)),
                files_unmodified=int(message.get("files_unmodified", 0)),
                duration_seconds=float(message.get("total_duration", 0.0)),
            )
    return None


def parse_progress(line: str) -> Progress | None:
    message = _json_line(line)
    if message.get("message_type") != "status":
        return None
    return Progress(
        percent_done=float(message.get("percent_done", 0.0)),
        bytes_done=int(message.get("bytes_done", 0)),
        total_bytes=int(message.get("total_bytes", 0)),
        files_done=int(message.get("files_done", 0)),
        total_files=int(message.get("total_files", 0)),
    )


def _json_line(line: str) -> dict[str, Any]:
    line = line.strip()
    if not line.startswith("{"):
        return {}
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Restic:
    """The restic command line for one repository, run on this machine."""

    def __init__(
        self, repository: Repository, *, binary: str = "restic", cache_dir: Path | None = None
    ) -> None:
        self.repository = repository
        self.binary = binary
        self.cache_dir = cache_dir

    @property
    def lock(self) -> RepositoryLock:
        return repository_lock(self.repository.url)

    def _command(self, args: list[str]) -> list[str]:
        command = [self.binary, *self.repository.options()]
        command += ["--cache-dir", str(self.cache_dir)] if self.cache_dir else ["--no-cache"]
        return [*command, *args]

    def _environment(self) -> dict[str, str]:
        # Only what restic needs: no inherited AWS_* or RESTIC_* variable may change the target.
        base = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "TMPDIR", "LANG")}
        return {**base, **self.repository.environment()}

    def run(
        self,
        args: list[str],
        *,
        stdin: BinaryIO | None = None,
        stdout: IO[bytes] | None = None,
        on_line: Callable[[str], None] | None = None,
        extra_env: dict[str, str] | None = None,
        action: str,
    ) -> str:
        """Run ``restic ARGS``; return stdout (unless streamed to ``stdout``) or raise BackupError."""
        if shutil.which(self.binary) is None:
            raise BackupError(
                f"failed to {action}: the restic program {self.binary!r} is not installed "
                "(install the restic package)",
                reason="failed",
            )
        process = subprocess.Popen(
            self._command(args),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**self._environment(), **(extra_env or {})},
        )
        stderr_chunks: list[bytes] = []
        reader = threading.Thread(target=_drain, args=(process.stderr, stderr_chunks), daemon=True)
        reader.start()
        writer = None
        if stdin is not None:
            writer = threading.Thread(target=_feed, args=(stdin, process.stdin), daemon=True)
            writer.start()
        output = self._collect(process, stdout=stdout, on_line=on_line)
        returncode = process.wait()
        reader.join()
        if writer is not None:
            writer.join()
        stderr = b"".join(stderr_chunks).decode(errors="replace")
        if returncode != 0:
            raise _error(action, returncode, stderr)
        return output

    @staticmethod
    def _collect(
        process: subprocess.Popen[bytes], *, stdout: IO[bytes] | None, on_line: Callable[[str], None] | None
    ) -> str:
        assert process.stdout is not None
        if stdout is not None:
            shutil.copyfileobj(process.stdout, stdout, 1024 * 1024)
            return ""
        lines = []
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            if on_line is not None:
                on_line(line)
            lines.append(line)
        return "".join(lines)

    # One method per restic command HostCraft uses.

    def init(self) -> None:
        self.run(["init"], action="initialise the repository")

    def is_initialised(self) -> bool:
        """Return whether a repository exists; other failures (credentials, network) raise."""
        try:
            self.run(["--no-lock", "cat", "config"], action="open the repository")
        except BackupError as exc:
            if exc.reason == "not_initialised":
                return False
            raise
        return True

    def ensure_initialised(self) -> None:
        """Create the repository unless it exists.

        Two backups that both find a new repository missing would each run ``restic init``. The
        second overwrites the config, which the first one's key then no longer opens. The check
        and the init run under one lock per repository.
        """
        # NOTE: the lock covers this process only. Scheduled backups run in the engine lease
        # holder alone, but manual backups through two HostCraft processes could still race.
        with _init_lock(self.repository.url):
            if not self.is_initialised():
                self.init()

    def backup_paths(
        self,
        paths: list[str],
        *,
        tags: list[str],
        host: str,
        progress: ProgressCallback | None = None,
    ) -> BackupSummary:
        args = ["backup", "--json", "--host", host, *_tag_args(tags), *paths]
        with self.lock.shared():
            output = self.run(
                args, on_line=_progress_forwarder(progress), action="back up " + ", ".join(paths)
            )
        return _require_summary(output, what=", ".join(paths))

    def backup_stdin(self, source: BinaryIO, *, filename: str, tags: list[str], host: str) -> BackupSummary:
        """Back up a stream (a dump, a document) as one file named ``filename`` in a snapshot."""
        args = ["backup", "--json", "--host", host, "--stdin", "--stdin-filename", filename, *_tag_args(tags)]
        with self.lock.shared():
            output = self.run(args, stdin=source, action=f"back up {filename}")
        return _require_summary(output, what=filename)

    def snapshots(self, *, tags: list[str] | None = None) -> list[Snapshot]:
        args = ["--no-lock", "snapshots", "--json"]
        if tags:
            args += ["--tag", ",".join(tags)]
        raw = json.loads(self.run(args, action="list snapshots") or "[]") or []
        return [
            Snapshot(
                id=str(item["id"]),
                time=str(item.get("time", "")),
                paths=list(item.get("paths") or []),
                tags=list(item.get("tags") or []),
                hostname=str(item.get("hostname", "")),
            )
            for item in raw
        ]

    def check(self, *, read_data_subset: str | None = None) -> None:
        args = ["check"]
        if read_data_subset:
            args += [f"--read-data-subset={read_data_subset}"]
        with self.lock.exclusive():
            self.run(args, action="check the repository")

    def forget(self, snapshot_ids: list[str], *, prune: bool = True) -> None:
        if not snapshot_ids:
            return
        args = ["forget", *(["--prune"] if prune else []), *snapshot_ids]
        with self.lock.exclusive():
            self.run(args, action="forget snapshots " + ", ".join(snapshot_ids))

    def restore(self, snapshot_id: str, *, target: Path, include: str | None = None) -> None:
        args = ["restore", snapshot_id, "--target", str(target)]
        if include:
            args += ["--include", include]
        with self.lock.shared():
            self.run(args, action=f"restore snapshot {snapshot_id}")

    def dump(self, snapshot_id: str, filename: str, sink: IO[bytes]) -> None:
        """Write one file of a snapshot (a ``--stdin`` backup) to ``sink``."""
        self.run(
            ["--no-lock", "dump", snapshot_id, filename],
            stdout=sink,
            action=f"read {filename} from {snapshot_id}",
        )

    def read_file(self, snapshot_id: str, filename: str) -> bytes:
        buffer = io.BytesIO()
        self.dump(snapshot_id, filename, buffer)
        return buffer.getvalue()

    def stats_raw_size(self) -> int:
        """Return the bytes the repository stores (deduplicated, compressed where restic does)."""
        raw = json.loads(self.run(["stats", "--json", "--mode", "raw-data"], action="read repository size"))
        return int(raw.get("total_size", 0))

    def copy_to(self, target: Repository, snapshot_ids: list[str]) -> None:
        """Copy snapshots into the existing repository ``target`` (``restic copy``)."""
        if not snapshot_ids:
            return
        source = self.repository
        if (
            source.is_s3
            and target.is_s3
            and (source.access_key, source.secret_key)
            != (
                target.access_key,
                target.secret_key,
            )
        ):
            # restic 0.14 reads one set of AWS_* variables for both repositories.
            raise BackupError(
                "failed to copy snapshots: restic 0.14 copies between two S3 repositories only when "
                "both use the same access key; give both destinations one key",
                reason="failed",
            )
        extra = {"RESTIC_FROM_PASSWORD": source.password}
        if source.is_s3 and not target.is_s3:
            extra |= {
                "AWS_ACCESS_KEY_ID": source.access_key or "",
                "AWS_SECRET_ACCESS_KEY": source.secret_key or "",
            }
        copier = Restic(target, binary=self.binary, cache_dir=self.cache_dir)
        # Both locks are taken in the order of their URLs, so two copies in opposite directions
        # cannot each hold one lock and wait for the other.
        with contextlib.ExitStack() as held:
            for url in sorted({source.url, target.url}):
                held.enter_context(repository_lock(url).shared())
            copier.run(
                ["copy", "--from-repo", source.url, *snapshot_ids], extra_env=extra, action="copy snapshots"
            )


def _tag_args(tags: list[str]) -> list[str]:
    return [argument for tag in tags for argument in ("--tag", tag)]


def _progress_forwarder(progress: ProgressCallback | None) -> Callable[[str], None] | None:
    if progress is None:
        return None

    def forward(line: str) -> None:
        status = parse_progress(line)
        if status is not None:
            progress(status)

    return forward


def _require_summary(output: str, *, what: str) -> BackupSummary:
    summary = parse_summary(output.splitlines())
    if summary is None:
        raise BackupError(f"failed to back up {what}: restic printed no snapshot id", reason="failed")
    return summary


def _error(action: str, returncode: int, stderr: str) -> BackupError:
    reason = classify(stderr)
    detail = error_summary(stderr)
    if returncode == 3:
        detail = f"some files could not be read, so the snapshot is incomplete: {detail}"
    return BackupError(
        f"failed to {action}: {detail or f'restic exited with status {returncode}'}",
        reason=reason,
        details={"exitCode": returncode},
    )


def error_summary(text: str, count: int = 3) -> str:
    """Return the last distinct error lines of restic output, without Go stack frames or JSON."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        # Frames are "pkg.func(...)" (one token) or "path/file.go:123"; JSON lines are progress.
        if not line or " " not in line or re.search(r"\.(go|s):\d+", line) or line.startswith("{"):
            continue
        if line.startswith(("goroutine ", "hostcraft-job-end")):
            continue
        line = re.sub(r"retrying after [0-9.]+m?s", "retrying", line)
        line = re.sub(r"<(\w+)/[0-9a-f]+>", r"<\1>", line)
        if line in lines:
            lines.remove(line)
        lines.append(line)
    return " / ".join(lines[-count:])[:800]


def _drain(stream: IO[bytes] | None, chunks: list[bytes]) -> None:
    if stream is None:
        return
    for chunk in iter(lambda: stream.read(65536), b""):
        chunks.append(chunk)


def _feed(source: BinaryIO, sink: IO[bytes] | None) -> None:
    if sink is None:
        return
    try:
        for chunk in iter(lambda: source.read(1024 * 1024), b""):
            sink.write(chunk)
    except BrokenPipeError:
        logger.warning("restic closed its input before the stream ended")
    finally:
        with contextlib.suppress(BrokenPipeError):
            sink.close()
