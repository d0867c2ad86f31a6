"""The one exception hierarchy of HostCraft, mapped to HTTP statuses in ``api/errors.py``.

    HostCraftError                 500  internal_error
    ├── BadRequest                 400  bad_request
    ├── ValidationError            422  validation_error   (``field`` names the input)
    ├── AuthenticationError        401  unauthenticated
    ├── PermissionDenied           403  forbidden
    ├── NotFound                   404  not_found
    ├── ConflictError              409  conflict
    │   └── QuorumError            409  quorum_guard       (the arithmetic is in ``details``)
    ├── EngineUnavailable          503  engine_unavailable  (a Docker engine did not respond)
    │   └── QuorumLost             503  quorum_lost         (cluster writes while Raft has no quorum)
    ├── OperationTimedOut          504  timeout             (a change did not settle in time)
    ├── LabError                   400  lab_error           (the local test lab cannot do this)
    ├── BackupError                502  backup_failed       (restic or a backup job failed; ``reason``)
    ├── DumpFailed                 502  dump_failed         (a dump tool failed or wrote an incomplete dump)
    ├── RestoreFailed              502  restore_failed      (a restore failed; the original data is unchanged)
    ├── RegistryError              502  registry_error      (an image registry failed a request; ``reason``)
    └── TrafficSwitchFailed        502  traffic_switch_failed (a traffic switch, e.g. a webhook, failed)

Messages say what happened and what to do next; ``details`` carries machine-readable context.
"""

from __future__ import annotations

from typing import Any


class HostCraftError(Exception):
    """Base of every error HostCraft raises on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class BadRequest(HostCraftError):
    status_code = 400
    code = "bad_request"


class ValidationError(HostCraftError):
    """Input that cannot be accepted; ``field`` is the path of the offending input."""

    status_code = 422
    code = "validation_error"

    def __init__(
        self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        merged = dict(details or {})
        if field is not None:
            merged.setdefault("field", field)
        super().__init__(message, details=merged)
        self.field = field


class AuthenticationError(HostCraftError):
    status_code = 401
    code = "unauthenticated"


class PermissionDenied(HostCraftError):
    status_code = 403
    code = "forbidden"


class NotFound(HostCraftError):
    status_code = 404
    code = "not_found"


class ConflictError(HostCraftError):
    status_code = 409
    code = "conflict"


class QuorumError(ConflictError):
    """An operation would lose quorum or leave an even number of managers."""

    code = "quorum_guard"


class EngineUnavailable(HostCraftError):
    """A Docker engine (or every manager of a region) could not be reached."""

    status_code = 503
    code = "engine_unavailable"


class QuorumLost(EngineUnavailable):
    """The region's managers have no Raft quorum, so the cluster state is read-only."""

    code = "quorum_lost"


class OperationTimedOut(HostCraftError):
    """A change was sent but did not settle within its time limit; the message states what was undone."""

    status_code = 504
    code = "timeout"


class LabError(HostCraftError):
    """The local multi-node lab cannot do what was asked (not root, not Linux, bad name, ...)."""

    status_code = 400
    code = "lab_error"


class BackupError(HostCraftError):
    """restic or a backup job failed; ``reason`` classifies the fault (see ``backup/restic.py``)."""

    status_code = 502
    code = "backup_failed"

    def __init__(self, message: str, *, reason: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={**(details or {}), "reason": reason})
        self.reason = reason


class DumpFailed(HostCraftError):
    """A database's dump tool exited non-zero, or its output was empty, truncated or invalid."""

    status_code = 502
    code = "dump_failed"


class RestoreFailed(HostCraftError):
    """A database restore failed before the swap, so the original data is unchanged."""

    status_code = 502
    code = "restore_failed"


class RegistryError(HostCraftError):
    """An image registry could not be reached or failed a request; ``reason`` classifies the fault.

    Reasons: ``unreachable``, ``timeout``, ``not_found``, ``unauthorized``, ``digest_mismatch``,
    ``invalid_response``, ``unsupported`` and ``rejected`` (any other HTTP error).
    """

    status_code = 502
    code = "registry_error"

    def __init__(self, message: str, *, reason: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={**(details or {}), "reason": reason})
        self.reason = reason


class TrafficSwitchFailed(HostCraftError):
    """A traffic switch (a webhook or a plug-in) did not confirm the switch."""

    status_code = 502
    code = "traffic_switch_failed"
