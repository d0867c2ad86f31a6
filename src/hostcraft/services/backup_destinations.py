"""Backup destinations: restic repositories on a local path or in an S3-compatible bucket.

Each destination has its own random restic password, encrypted at rest with the S3 secret
key. The destination test and real backups open the repository through the same
``Restic`` runner, so a test that passes exercises what a backup will do.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import secrets
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.backup.restic import Repository, Restic
from hostcraft.errors import BackupError, ConflictError, NotFound, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services.events import record_event
from hostcraft.store.models import Backup, BackupDestination, utcnow

logger = logging.getLogger(__name__)

Kind = Literal["local", "s3"]
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
REGION_PATTERN = re.compile(r"[A-Za-z0-9-]{1,64}")
REACHABILITY_TIMEOUT_SECONDS = 5.0


@dataclass
class DestinationInput:
    name: str
    kind: Kind
    path: str | None = None
    endpoint: str | None = None
    bucket: str | None = None
    prefix: str = ""
    s3_region: str | None = None
    path_style: bool = True
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    region_id: int | None = None
    replicate_to: list[int] = field(default_factory=list)


@dataclass
class TestStep:
    step: str
    ok: bool
    message: str = ""


@dataclass
class TestReport:
    ok: bool
    reason: str | None
    message: str
    steps: list[TestStep]


def _validate(data: DestinationInput) -> None:
    if not NAME_PATTERN.fullmatch(data.name):
        raise ValidationError(
            f"invalid name {data.name!r}: expected lowercase letters, digits, '.', '_' or '-', "
            "at most 64 characters",
            field="name",
        )
    if data.kind == "local":
        if not data.path or not Path(data.path).is_absolute():
            raise ValidationError(
                "path is missing or not absolute: give a folder like /srv/backups", field="path"
            )
        return
    if not data.endpoint:
        raise ValidationError(
            "endpoint is missing: give the S3 URL, e.g. http://127.0.0.1:9000", field="endpoint"
        )
    parts = urlsplit(data.endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValidationError(
            f"invalid endpoint {data.endpoint!r}: expected http(s)://HOST[:PORT] without a path",
            field="endpoint",
        )
    if not data.bucket or not BUCKET_PATTERN.fullmatch(data.bucket):
        raise ValidationError(
            f"invalid bucket {data.bucket!r}: expected 3 to 63 lowercase letters, digits, '.' or '-'",
            field="bucket",
        )
    if data.prefix.startswith("/") or ".." in data.prefix.split("/"):
        raise ValidationError(
            f"invalid prefix {data.prefix!r}: use a relative path without '..'", field="prefix"
        )
    if data.s3_region is not None and not REGION_PATTERN.fullmatch(data.s3_region):
        raise ValidationError(
            f"invalid s3Region {data.s3_region!r}: expected letters, digits and '-', e.g. us-east-1",
            field="s3Region",
        )
    if not data.access_key:
        raise ValidationError("accessKey is missing", field="accessKey")
    if not data.secret_key:
        raise ValidationError("secretKey is missing", field="secretKey")


def validate_replicate_to(session: Session, destination_id: int | None, replicate_to: list[int]) -> None:
    """Reject a replication policy naming an unknown destination or the destination itself."""
    for index, target_id in enumerate(replicate_to):
        if target_id == destination_id:
            raise ValidationError(
                f"replicateTo[{index}]: a destination cannot replicate to itself", field="replicateTo"
            )
        if session.get(BackupDestination, target_id) is None:
            raise ValidationError(
                f"replicateTo[{index}]: backup destination {target_id} not found", field="replicateTo"
            )


def repository_url(destination: BackupDestination) -> str:
    if destination.kind == "local":
        return str(destination.path)
    endpoint = str(destination.endpoint).rstrip("/")
    prefix = destination.prefix.strip("/")
    return f"s3:{endpoint}/{destination.bucket}" + (f"/{prefix}" if prefix else "")


def repository_for(destination: BackupDestination, runtime: Runtime) -> Repository:
    """Return the restic repository of a destination, with its decrypted secrets."""
    secret_key = (
        runtime.secrets.decrypt(destination.secret_key_encrypted)
        if destination.secret_key_encrypted
        else None
    )
    return Repository(
        url=repository_url(destination),
        password=runtime.secrets.decrypt(destination.password_encrypted),
        access_key=destination.access_key,
        secret_key=secret_key,
        region=destination.s3_region,
        path_style=destination.path_style,
    )


def restic_for(destination: BackupDestination, runtime: Runtime) -> Restic:
    cache = runtime.settings.data_dir / "restic-cache"
    return Restic(
        repository_for(destination, runtime), binary=runtime.settings.restic_binary, cache_dir=cache
    )


def create_destination(
    session: Session, runtime: Runtime, data: DestinationInput, *, actor: str
) -> BackupDestination:
    _validate(data)
    if session.scalar(select(BackupDestination.id).where(BackupDestination.name == data.name)) is not None:
        raise ConflictError(f"backup destination {data.name!r} already exists", details={"field": "name"})
    destination = BackupDestination(
        name=data.name,
        kind=data.kind,
        path=data.path if data.kind == "local" else None,
        endpoint=data.endpoint.rstrip("/") if data.kind == "s3" and data.endpoint else None,
        bucket=data.bucket if data.kind == "s3" else None,
        prefix=data.prefix.strip("/") if data.kind == "s3" else "",
        s3_region=data.s3_region,
        path_style=data.path_style,
        access_key=data.access_key if data.kind == "s3" else None,
        secret_key_encrypted=runtime.secrets.encrypt(data.secret_key)
        if data.kind == "s3" and data.secret_key
        else None,
        # 32 random bytes: restic derives the repository key from it with scrypt.
        password_encrypted=runtime.secrets.encrypt(secrets.token_urlsafe(32)),
        region_id=data.region_id,
        replicate_to=list(dict.fromkeys(data.replicate_to)),
    )
    validate_replicate_to(session, None, destination.replicate_to)
    session.add(destination)
    session.flush()
    _event(session, destination, actor=actor, action="backup_destination.create")
    return destination


def update_destination(
    session: Session, runtime: Runtime, destination_id: int, data: DestinationInput, *, actor: str
) -> BackupDestination:
    """Change where a destination points; the repository password stays, so old snapshots stay readable."""
    destination = get_destination(session, destination_id)
    if data.kind != destination.kind:
        raise ValidationError("kind cannot change: create a new destination instead", field="kind")
    if data.kind == "s3" and not data.secret_key and destination.secret_key_encrypted:
        data.secret_key = runtime.secrets.decrypt(destination.secret_key_encrypted)
    _validate(data)
    clash = session.scalar(
        select(BackupDestination.id).where(
            BackupDestination.name == data.name, BackupDestination.id != destination.id
        )
    )
    if clash is not None:
        raise ConflictError(f"backup destination {data.name!r} already exists", details={"field": "name"})
    destination.name = data.name
    destination.path = data.path if data.kind == "local" else None
    if data.kind == "s3":
        destination.endpoint = (data.endpoint or "").rstrip("/")
        destination.bucket = data.bucket
        destination.prefix = data.prefix.strip("/")
        destination.s3_region = data.s3_region
        destination.path_style = data.path_style
        destination.access_key = data.access_key
        destination.secret_key_encrypted = runtime.secrets.encrypt(data.secret_key or "")
    destination.region_id = data.region_id
    validate_replicate_to(session, destination.id, data.replicate_to)
    destination.replicate_to = list(dict.fromkeys(data.replicate_to))
    session.flush()
    _event(session, destination, actor=actor, action="backup_destination.update")
    return destination


def delete_destination(session: Session, destination_id: int, *, actor: str) -> None:
    """Forget a destination; its repository and snapshots stay where they are."""
    destination = get_destination(session, destination_id)
    used = session.scalar(select(Backup.id).where(Backup.destination_id == destination.id).limit(1))
    if used is not None:
        raise ConflictError(
            f"backup destination {destination.name!r} holds recorded backups: delete or expire them first"
        )
    _event(session, destination, actor=actor, action="backup_destination.delete")
    for other in list_destinations(session):
        if destination.id in other.replicate_to:
            other.replicate_to = [item for item in other.replicate_to if item != destination.id]
    session.delete(destination)
    session.flush()


def get_destination(session: Session, destination_id: int) -> BackupDestination:
    destination = session.get(BackupDestination, destination_id)
    if destination is None:
        raise NotFound(f"backup destination {destination_id} not found")
    return destination


def find_destination(session: Session, reference: str | int) -> BackupDestination:
    if isinstance(reference, int) or str(reference).isdigit():
        return get_destination(session, int(reference))
    destination = session.scalar(select(BackupDestination).where(BackupDestination.name == reference))
    if destination is None:
        raise NotFound(
            f"backup destination {reference!r} not found ('hostcraft backup destination ls' lists them)"
        )
    return destination


def list_destinations(session: Session) -> list[BackupDestination]:
    return list(session.scalars(select(BackupDestination).order_by(BackupDestination.name)))


def export_key(session: Session, runtime: Runtime, destination_id: int, *, actor: str) -> str:
    """Return the repository password; every export is recorded as an event."""
    destination = get_destination(session, destination_id)
    _event(session, destination, actor=actor, action="backup_destination.export_key")
    return runtime.secrets.decrypt(destination.password_encrypted)


def test_destination(session: Session, runtime: Runtime, destination_id: int, *, actor: str) -> TestReport:
    """Write, read, list and delete a probe snapshot; report the first failing step and its reason."""
    destination = get_destination(session, destination_id)
    report = run_destination_test(destination, runtime)
    destination.last_test_at = utcnow()
    destination.last_test_ok = report.ok
    destination.last_test_reason = report.reason
    record_event(
        session,
        actor=actor,
        action="backup_destination.test",
        target_type="backup_destination",
        target_id=destination.id,
        target_name=destination.name,
        outcome="succeeded" if report.ok else "failed",
        reason=report.message if not report.ok else None,
        details={"reason": report.reason},
    )
    session.flush()
    return report


def run_destination_test(destination: BackupDestination, runtime: Runtime) -> TestReport:
    steps: list[TestStep] = []
    if destination.kind == "s3":
        problem = _unreachable(str(destination.endpoint))
        steps.append(TestStep("connect", problem is None, problem or ""))
        if problem is not None:
            return TestReport(
                False, "unreachable", f"S3 endpoint {destination.endpoint} is unreachable: {problem}", steps
            )
    restic = restic_for(destination, runtime)
    probe_tag = f"hostcraft-probe-{uuid.uuid4().hex[:12]}"
    payload = f"hostcraft destination test {probe_tag}\n".encode()
    snapshot_id: str | None = None
    current = "open"
    try:
        if not restic.is_initialised():
            current = "initialise"
            restic.init()
            steps.append(TestStep("initialise", True, "created the restic repository"))
        steps.append(TestStep("open", True))
        current = "write"
        summary = restic.backup_stdin(
            io.BytesIO(payload), filename="probe.txt", tags=[probe_tag], host="hostcraft"
        )
        snapshot_id = summary.snapshot_id
        steps.append(TestStep("write", True, f"snapshot {snapshot_id}"))
        current = "list"
        # restic 0.14 prints the short id in its backup summary and the full id in listings.
        listed = [snapshot.id for snapshot in restic.snapshots(tags=[probe_tag])]
        if not any(full.startswith(snapshot_id) for full in listed):
            raise BackupError(f"snapshot {snapshot_id} was written but is not listed", reason="failed")
        steps.append(TestStep("list", True))
        current = "read"
        if restic.read_file(snapshot_id, "probe.txt") != payload:
            raise BackupError("the probe read back differs from what was written", reason="failed")
        steps.append(TestStep("read", True))
        current = "delete"
        restic.forget([snapshot_id], prune=True)
        steps.append(TestStep("delete", True))
    except BackupError as exc:
        steps.append(TestStep(current, False, exc.message))
        reason = exc.reason
        if reason == "access_denied" and current in ("write", "initialise", "delete"):
            reason = "read_only"
        return TestReport(False, reason, _explain(reason, destination, exc.message), steps)
    return TestReport(True, None, "write, list, read and delete succeeded", steps)


def _unreachable(endpoint: str) -> str | None:
    """Return why the endpoint's TCP port does not accept a connection, or None when it does."""
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((str(parts.hostname), port), timeout=REACHABILITY_TIMEOUT_SECONDS):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


_ADVICE = {
    "bad_credentials": "the access key or secret key is wrong: check both",
    "missing_bucket": "the bucket {bucket} does not exist: create it first",
    "read_only": "the key may read but not write or delete: grant s3:PutObject and s3:DeleteObject",
    "access_denied": "the key is not allowed to read this bucket or prefix",
    "wrong_password": "the repository exists but was made with another password: restore the exported key",
    "unreachable": "the endpoint does not answer",
    "failed": "restic failed",
}


def _explain(reason: str, destination: BackupDestination, detail: str) -> str:
    advice = _ADVICE.get(reason, "restic failed").format(bucket=destination.bucket)
    return f"destination {destination.name}: {advice} ({detail})"


def destination_out(destination: BackupDestination) -> dict[str, Any]:
    """Return the public fields; the secret key and the repository password are write-only."""

    def stamp(value: dt.datetime | None) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {
        "id": destination.id,
        "name": destination.name,
        "kind": destination.kind,
        "path": destination.path,
        "endpoint": destination.endpoint,
        "bucket": destination.bucket,
        "prefix": destination.prefix,
        "s3Region": destination.s3_region,
        "pathStyle": destination.path_style,
        "accessKey": destination.access_key,
        "hasSecretKey": destination.secret_key_encrypted is not None,
        "regionId": destination.region_id,
        "replicateTo": list(destination.replicate_to),
        "repository": repository_url(destination),
        "lastTestAt": stamp(destination.last_test_at),
        "lastTestOk": destination.last_test_ok,
        "lastTestReason": destination.last_test_reason,
        "createdAt": stamp(destination.created_at),
        "updatedAt": stamp(destination.updated_at),
    }


def _event(session: Session, destination: BackupDestination, *, actor: str, action: str) -> None:
    record_event(
        session,
        actor=actor,
        action=action,
        target_type="backup_destination",
        target_id=destination.id,
        target_name=destination.name,
        outcome="succeeded",
    )
