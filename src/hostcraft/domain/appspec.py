"""Validation of the application document, the desired state of one Swarm service.

``validate_application`` checks the API's JSON (camelCase keys, already parsed) and returns an
``AppSpec``. It collects every problem before it raises one ``ValidationError``, whose ``field``
is the path of the first problem and whose ``details["problems"]`` lists each
``{"field", "message"}``. Paths look like ``env.MY KEY``, ``ports[1].published`` or
``strategy.updateDelay``. A key the document does not define is a problem, never dropped.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, croniter

from hostcraft.domain.dr import DrPolicy, parse_dr_policy
from hostcraft.domain.probes import (
    DEFAULT_SLA_TARGET_PERCENT,
    ProbeOptions,
    RecoveryOptions,
    check_probe_url,
    parse_probe_options,
    parse_recovery_options,
    parse_sla_target,
)
from hostcraft.domain.strategy import Healthcheck, Strategy, UpdatePlan, parse_strategy, plan_updates
from hostcraft.errors import ValidationError

Protocol = Literal["tcp", "udp", "sctp"]
PublishMode = Literal["ingress", "host"]
EndpointMode = Literal["vip", "dnsrr"]

MAX_REPLICAS = 1000
SERVICE_NAME_MAX_LENGTH = 63  # Swarm's limit on service names, which are `<project>_<name>`
MAX_SECRET_BYTES = 500 * 1024  # swarmkit's MaxSecretSize
MIN_MEMORY_LIMIT_BYTES = 6 * 1024 * 1024  # dockerd (linuxMinMemory) rejects smaller limits
MIN_MEMORY_RESERVATION_BYTES = 4 * 1024 * 1024  # swarmkit's validateResources minimum
# dockerd turns cpus into a CFS quota per 100 ms period, and the kernel rejects quotas below 1 ms.
MIN_CPUS_LIMIT = 0.01
MIN_CPUS_RESERVATION = 0.001  # swarmkit's validateResources minimum (1e6 NanoCPUs)
MIN_HEALTHCHECK_SECONDS = 0.001  # Docker rejects healthcheck durations below 1 ms
MIN_PROBE_INTERVAL_SECONDS = 1.0

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
REGION_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
OBJECT_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
VOLUME_DRIVER = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.:/-]{0,254}")
SECRET_FILE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}")

# Docker image references, after distribution/reference's grammar. Written with explicit ASCII
# classes, because Python's \w also matches non-ASCII letters.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_MAX_IMAGE_NAME_LENGTH = 255

_CONSTRAINT_ATTRIBUTES = ("node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch")
_LABEL_PREFIXES = ("node.labels.", "engine.labels.")

_FIELDS = (
    "name",
    "project",
    "region",
    "image",
    "command",
    "replicas",
    "env",
    "secrets",
    "volumes",
    "ports",
    "placement",
    "resources",
    "healthcheck",
    "strategy",
    "endpointMode",
    "autoRestart",
    "autoRollback",
    "healthCheckUrl",
    "healthCheckIntervalSeconds",
    "healthCheckTimeoutSeconds",
    "maxConsecutiveFailures",
    "healthProbe",
    "recovery",
    "slaTarget",
    "backupSchedule",
    "backupRetentionDays",
    "backupTimezone",
    "backupKeepLast",
    "backupKeepDaily",
    "backupKeepWeekly",
    "backupKeepMonthly",
    "backupQuiesce",
    "backupDestination",
    "backupReplicateTo",
    "backupDatabases",
    "dr",
)


DatabaseEngine = Literal["postgresql", "mysql", "mariadb", "redis"]
DATABASE_ENGINES: tuple[DatabaseEngine, ...] = ("postgresql", "mysql", "mariadb", "redis")
DATABASE_NAME = re.compile(r"[^\x00/\\.\s][^\x00/\\]{0,62}")


@dataclass(frozen=True)
class BackupDatabase:
    """A database server inside the app's containers that database backups dump.

    ``database`` None dumps every database (and PostgreSQL's roles). The password comes from
    one of the app's secrets (``password_secret``) or env keys (``password_env``), or is None.
    """

    name: str
    engine: DatabaseEngine
    database: str | None = None
    user: str | None = None
    port: int | None = None
    password_secret: str | None = None
    password_env: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "engine": self.engine,
            "database": self.database,
            "user": self.user,
            "port": self.port,
            "passwordSecret": self.password_secret,
            "passwordEnv": self.password_env,
        }


@dataclass(frozen=True)
class Secret:
    """A Swarm secret of the app. ``value`` is None when the caller keeps the stored value."""

    name: str
    target: str
    value: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target}


@dataclass(frozen=True)
class Volume:
    name: str
    target: str
    driver: str = "local"
    driver_options: dict[str, str] = field(default_factory=dict)
    read_only: bool = False

    @property
    def node_local(self) -> bool:
        """Whether the volume's data lives on the one node that created it."""
        # NOTE: a local volume with NFS or CIFS driver options is shared storage in fact, but it is
        # treated as node-local here, which limits such apps to one replica.
        return self.driver == "local"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "driver": self.driver,
            "driverOptions": dict(self.driver_options),
            "readOnly": self.read_only,
        }


@dataclass(frozen=True)
class Port:
    target: int
    published: int | None = None
    protocol: Protocol = "tcp"
    mode: PublishMode = "ingress"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "published": self.published,
            "protocol": self.protocol,
            "mode": self.mode,
        }


@dataclass(frozen=True)
class Placement:
    constraints: tuple[str, ...] = ()
    preferences: tuple[str, ...] = ()
    max_replicas_per_node: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "constraints": list(self.constraints),
            "preferences": list(self.preferences),
            "maxReplicasPerNode": self.max_replicas_per_node,
        }


@dataclass(frozen=True)
class ResourceAmount:
    cpus: float | None = None
    memory_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "memoryBytes": self.memory_bytes}


@dataclass(frozen=True)
class Resources:
    limits: ResourceAmount = field(default_factory=ResourceAmount)
    reservations: ResourceAmount = field(default_factory=ResourceAmount)

    def to_dict(self) -> dict[str, Any]:
        return {"limits": self.limits.to_dict(), "reservations": self.reservations.to_dict()}


@dataclass(frozen=True)
class AppSpec:
    """A validated application document; ``to_dict`` returns it as API JSON without secret values."""

    name: str
    image: str
    project: str = "default"
    region: str | None = None
    command: tuple[str, ...] | None = None
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[Secret, ...] = ()
    volumes: tuple[Volume, ...] = ()
    ports: tuple[Port, ...] = ()
    placement: Placement = field(default_factory=Placement)
    resources: Resources = field(default_factory=Resources)
    healthcheck: Healthcheck | None = None
    strategy: Strategy = field(default_factory=Strategy)
    endpoint_mode: EndpointMode = "vip"
    auto_restart: bool = True
    auto_rollback: bool = True
    health_check_url: str | None = None
    health_check_interval_seconds: float = 60
    health_check_timeout_seconds: float = 10
    max_consecutive_failures: int = 3
    health_probe: ProbeOptions = field(default_factory=ProbeOptions)
    recovery: RecoveryOptions = field(default_factory=RecoveryOptions)
    sla_target: float = DEFAULT_SLA_TARGET_PERCENT
    backup_schedule: str | None = None
    backup_retention_days: int = 30
    backup_timezone: str = "UTC"
    backup_keep_last: int | None = None
    backup_keep_daily: int | None = None
    backup_keep_weekly: int | None = None
    backup_keep_monthly: int | None = None
    backup_quiesce: BackupQuiesce = "none"
    backup_destination: str | None = None
    backup_replicate_to: tuple[str, ...] = ()
    backup_databases: tuple[BackupDatabase, ...] = ()
    dr: DrPolicy | None = None

    @property
    def service_name(self) -> str:
        return f"{self.project}_{self.name}"

    def secret_values(self) -> dict[str, str]:
        """Return the value of each secret that carries one, by secret name, for the deploy code."""
        return {secret.name: secret.value for secret in self.secrets if secret.value is not None}

    def exclusive_resources(self) -> list[str]:
        """List what two tasks of the app cannot use at the same time: local volumes and host-mode ports."""
        volumes = [f"volume {volume.name} (local driver)" for volume in self.volumes if volume.node_local]
        ports = [
            f"host port {port.published}/{port.protocol}"
            for port in self.ports
            if port.mode == "host" and port.published is not None
        ]
        return volumes + ports

    def update_plan(self) -> UpdatePlan:
        """Build the Swarm update and rollback configuration of this app."""
        return plan_updates(
            self.strategy,
            self.healthcheck,
            replicas=self.replicas,
            exclusive_resources=self.exclusive_resources(),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "project": self.project,
            "region": self.region,
            "image": self.image,
            "command": list(self.command) if self.command is not None else None,
            "replicas": self.replicas,
            "env": dict(self.env),
            "secrets": [secret.to_dict() for secret in self.secrets],
            "volumes": [volume.to_dict() for volume in self.volumes],
            "ports": [port.to_dict() for port in self.ports],
            "placement": self.placement.to_dict(),
            "resources": self.resources.to_dict(),
            "healthcheck": self.healthcheck.to_dict() if self.healthcheck is not None else None,
            "strategy": self.strategy.to_dict(),
            "endpointMode": self.endpoint_mode,
            "autoRestart": self.auto_restart,
            "autoRollback": self.auto_rollback,
            "healthCheckUrl": self.health_check_url,
            "healthCheckIntervalSeconds": self.health_check_interval_seconds,
            "healthCheckTimeoutSeconds": self.health_check_timeout_seconds,
            "maxConsecutiveFailures": self.max_consecutive_failures,
            "healthProbe": self.health_probe.to_dict(),
            "recovery": self.recovery.to_dict(),
            "slaTarget": self.sla_target,
            "backupSchedule": self.backup_schedule,
            "backupRetentionDays": self.backup_retention_days,
            "backupTimezone": self.backup_timezone,
            "backupKeepLast": self.backup_keep_last,
            "backupKeepDaily": self.backup_keep_daily,
            "backupKeepWeekly": self.backup_keep_weekly,
            "backupKeepMonthly": self.backup_keep_monthly,
            "backupQuiesce": self.backup_quiesce,
            "backupDestination": self.backup_destination,
            "backupReplicateTo": list(self.backup_replicate_to),
            "backupDatabases": [database.to_dict() for database in self.backup_databases],
            "dr": self.dr.to_dict() if self.dr is not None else None,
        }


class _Problems:
    """The problems found in one document, in document order."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"field": path, "message": message})

    def raise_if_any(self) -> None:
        if not self.items:
            return
        first = self.items[0]
        more = f" ({len(self.items) - 1} more in details.problems)" if len(self.items) > 1 else ""
        raise ValidationError(
            f"invalid application: {first['field']}: {first['message']}{more}",
            field=first["field"],
            details={"problems": list(self.items)},
        )


def validate_application(raw: dict[str, Any], *, require_secret_values: bool = True) -> AppSpec:
    """Validate an application document; missing or null optional fields take their defaults.

    With ``require_secret_values=False`` a secret may come without a value, for callers that keep
    the stored value of an existing secret.
    """
    if not isinstance(raw, dict):
        message = f"expected a JSON object, not {type(raw).__name__}"
        raise ValidationError(
            f"invalid application: {message}", details={"problems": [{"field": "", "message": message}]}
        )
    problems = _Problems()
    _check_fields(raw, _FIELDS, "", problems)

    name = _dns_label(raw.get("name"), "name", problems, default=None)
    project = _dns_label(raw.get("project"), "project", problems, default="default")
    service_name = f"{project}_{name}"
    if name and project and len(service_name) > SERVICE_NAME_MAX_LENGTH:
        problems.add(
            "name",
            f"the Swarm service name {service_name!r} is {len(service_name)} characters long, more than "
            f"the {SERVICE_NAME_MAX_LENGTH} Swarm allows, so shorten the name or the project",
        )
    region = _region(raw.get("region"), problems)
    image = _image(raw.get("image"), problems)
    command = _command(raw.get("command"), problems)
    replicas = _integer(raw.get("replicas"), "replicas", problems, default=1, minimum=0, maximum=MAX_REPLICAS)

    env = _env(raw.get("env"), problems)
    secrets = _secrets(raw.get("secrets"), problems, require_values=require_secret_values)
    volumes = _volumes(raw.get("volumes"), problems)
    endpoint_mode = cast(
        EndpointMode, _choice(raw.get("endpointMode"), "endpointMode", ("vip", "dnsrr"), "vip", problems)
    )
    ports = _ports(raw.get("ports"), problems, endpoint_mode=endpoint_mode)
    placement = _placement(raw.get("placement"), problems)
    resources = _resources(raw.get("resources"), problems)
    healthcheck = _healthcheck(raw.get("healthcheck"), problems)
    strategy = _strategy(raw.get("strategy"), problems)
    _check_local_volumes(volumes, replicas, problems)
    backup_databases = _backup_databases(raw.get("backupDatabases"), problems, env=env, secrets=secrets)

    policy = _health_and_backup_policy(raw, problems)
    backup_policy = _backup_retention_and_placement(raw, problems)
    dr, dr_problems = parse_dr_policy(raw.get("dr"))
    for path, message in dr_problems:
        problems.add(path, message)
    problems.raise_if_any()
    return AppSpec(
        name=name or "",
        image=image,
        project=project or "default",
        region=region,
        command=command,
        replicas=replicas,
        env=env,
        secrets=secrets,
        volumes=volumes,
        ports=ports,
        placement=placement,
        resources=resources,
        healthcheck=healthcheck,
        strategy=strategy,
        endpoint_mode=endpoint_mode,
        **policy,
        **backup_policy,
        backup_databases=backup_databases,
        dr=dr,
    )


# Generic readers. Each records a problem and returns the default when the value is invalid, so
# that validation continues and reports every problem of the document.


def _check_fields(raw: dict[str, Any], allowed: Sequence[str], prefix: str, problems: _Problems) -> None:
    for key in raw:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(allowed)}"
        problems.add(f"{prefix}{key}", f"unknown field {key!r}: {hint}")


def _integer(
    value: object, path: str, problems: _Problems, *, default: int, minimum: int, maximum: int | None = None
) -> int:
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        problems.add(path, f"invalid {path} {value!r}: expected an integer {bounds}")
        return default
    return value


def _seconds(
    value: object, path: str, problems: _Problems, *, default: float, minimum: float, strict: bool = False
) -> float:
    """Read a number of seconds. With ``strict``, ``minimum`` itself is invalid."""
    if value is None:
        return default
    valid = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > minimum if strict else value >= minimum)
    )
    if not valid:
        bound = f"greater than {minimum:g}" if strict else f"of at least {minimum:g}"
        problems.add(path, f"invalid {path} {value!r}: expected a number of seconds {bound}")
        return default
    return cast(float, value)


def _boolean(value: object, path: str, problems: _Problems, *, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        problems.add(path, f"invalid {path} {value!r}: expected true or false")
        return default
    return value


def _choice(value: object, path: str, choices: Sequence[str], default: str, problems: _Problems) -> str:
    if value is None:
        return default
    if value not in choices:
        problems.add(path, f"invalid {path} {value!r}: expected one of {', '.join(choices)}")
        return default
    return cast(str, value)


def _object(value: object, path: str, problems: _Problems) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(path, f"invalid {path}: expected an object, not {type(value).__name__}")
        return {}
    return value


def _item(value: object, path: str, problems: _Problems) -> dict[str, Any] | None:
    """Read one object of a list. Unlike ``_object``, it reports null as a problem too."""
    if not isinstance(value, dict):
        problems.add(path, f"invalid {path}: expected an object, not {type(value).__name__}")
        return None
    return value


def _list(value: object, path: str, problems: _Problems) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(path, f"invalid {path}: expected a list, not {type(value).__name__}")
        return []
    return value


def _string_list(value: object, path: str, problems: _Problems) -> list[str]:
    strings = []
    for index, item in enumerate(_list(value, path, problems)):
        if isinstance(item, str):
            strings.append(item)
        else:
            problems.add(f"{path}[{index}]", f"invalid {path}[{index}] {item!r}: expected a string")
    return strings


# Identity: name, project, region, image, command.


def _dns_label(value: object, path: str, problems: _Problems, *, default: str | None) -> str | None:
    if value is None and default is not None:
        return default
    if value is None:
        problems.add(path, f"missing {path}: expected a DNS label such as 'web'")
        return None
    if not isinstance(value, str) or not DNS_LABEL.fullmatch(value):
        problems.add(
            path,
            f"invalid {path} {value!r}: expected a DNS label of 1 to 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. 'web')",
        )
        return None
    return value


def _region(value: object, problems: _Problems) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not REGION_CODE.fullmatch(value):
        problems.add(
            "region",
            f"invalid region {value!r}: expected a region code of lowercase letters, digits and '-', "
            "starting with a letter or digit, at most 32 characters (e.g. 'eu-west-1')",
        )
        return None
    return value


def _image(value: object, problems: _Problems) -> str:
    if value is None or value == "":
        problems.add("image", "missing image: expected an image reference such as 'nginx:1.27'")
        return ""
    if not isinstance(value, str):
        problems.add("image", f"invalid image {value!r}: expected a string such as 'nginx:1.27'")
        return ""
    reason = image_reference_problem(value)
    if reason is not None:
        problems.add("image", f"invalid image {value!r}: {reason}")
        return ""
    return value


def image_reference_problem(reference: str) -> str | None:
    """Return why ``reference`` is not a valid Docker image reference, or None when it is valid.

    The form is ``[registry[:port]/]path[:tag][@sha256:<64 hex digits>]``.
    """
    if any(character.isspace() for character in reference):
        return "an image reference cannot contain whitespace"
    name, at, digest = reference.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        return f"digest {digest!r} must be 'sha256:' followed by 64 lowercase hexadecimal digits"

    tag = None
    last_colon, last_slash = name.rfind(":"), name.rfind("/")
    if last_colon > last_slash:
        name, tag = name[:last_colon], name[last_colon + 1 :]
    if tag is not None and not _TAG.fullmatch(tag):
        return (
            f"tag {tag!r} must be 1 to 128 letters, digits, '_', '.' or '-', "
            "and must not start with '.' or '-'"
        )
    if not name:
        return "the repository name is missing"
    if len(name) > _MAX_IMAGE_NAME_LENGTH:
        return f"the repository name is longer than {_MAX_IMAGE_NAME_LENGTH} characters"

    components = name.split("/")
    first = components[0]
    # Docker reads the first component as a registry host when it contains "." or ":" or is
    # "localhost". Docker also does so for any uppercase letter, but "MyOrg/app" is far more often
    # a mistyped repository than a registry host, so it is reported as one.
    if len(components) > 1 and ("." in first or ":" in first or first == "localhost"):
        if not _REGISTRY.fullmatch(first):
            return f"registry {first!r} is not a valid host[:port]"
        components = components[1:]
    for component in components:
        if _PATH_COMPONENT.fullmatch(component.lower()) and component != component.lower():
            return f"repository {'/'.join(components)!r} must be lowercase"
        if not _PATH_COMPONENT.fullmatch(component):
            return (
                f"repository path component {component!r} must be lowercase letters and digits, "
                "separated by '.', '_', '__' or '-'"
            )
    return None


def _command(value: object, problems: _Problems) -> tuple[str, ...] | None:
    if value is None:
        return None
    arguments = _string_list(value, "command", problems)
    for index, argument in enumerate(arguments):
        if "\0" in argument:
            problems.add(
                f"command[{index}]", "invalid argument: a NUL character cannot be passed to a process"
            )
    return tuple(arguments)


# Configuration: env, secrets, volumes.


def _env(value: object, problems: _Problems) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, item in _object(value, "env", problems).items():
        path = f"env.{key}"
        if not isinstance(key, str) or not ENV_NAME.fullmatch(key):
            problems.add(
                path,
                f"invalid environment variable name {key!r}: expected letters, digits and '_', "
                "not starting with a digit",
            )
        elif not isinstance(item, str):
            problems.add(
                path, f"invalid value of {key} {item!r}: expected a string, so quote numbers and booleans"
            )
        elif "\0" in item:
            problems.add(
                path, f"invalid value of {key}: an environment variable cannot contain a NUL character"
            )
        else:
            env[key] = item
    return env


def _secrets(value: object, problems: _Problems, *, require_values: bool) -> tuple[Secret, ...]:
    secrets: list[Secret] = []
    first_use: dict[tuple[str, str], int] = {}
    for index, item in enumerate(_list(value, "secrets", problems)):
        path = f"secrets[{index}]"
        secret = _secret(item, path, problems, require_value=require_values)
        if secret is None:
            continue
        if _first_use(first_use, ("name", secret.name), index, f"{path}.name", "secret name", problems):
            continue
        if _first_use(
            first_use, ("target", secret.target), index, f"{path}.target", "secret target", problems
        ):
            continue
        secrets.append(secret)
    return tuple(secrets)


def _secret(item: object, path: str, problems: _Problems, *, require_value: bool) -> Secret | None:
    raw = _item(item, path, problems)
    if raw is None:
        return None
    _check_fields(raw, ("name", "value", "target"), f"{path}.", problems)

    name = raw.get("name")
    if not isinstance(name, str) or not OBJECT_NAME.fullmatch(name):
        problems.add(
            f"{path}.name",
            f"invalid secret name {name!r}: expected 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
        )
        return None
    value = _secret_value(raw.get("value"), name, f"{path}.value", problems, required=require_value)
    target = raw.get("target")
    target = name if target is None else target
    if not _secret_target_valid(target):
        problems.add(
            f"{path}.target",
            f"invalid secret target {target!r}: expected a file name (mounted under /run/secrets) "
            "or an absolute path without '..'",
        )
        return None
    return Secret(name=name, target=cast(str, target), value=value)


def _secret_value(value: object, name: str, path: str, problems: _Problems, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if value is None or value == "":
        problems.add(path, f"missing value of secret {name!r}: expected a non-empty string")
        return None
    if not isinstance(value, str):
        problems.add(path, f"invalid value of secret {name!r}: expected a string")
        return None
    size = len(value.encode())
    if size > MAX_SECRET_BYTES:
        problems.add(
            path, f"secret {name!r} is {size} bytes, more than the {MAX_SECRET_BYTES} bytes Swarm stores"
        )
        return None
    return value


def _secret_target_valid(target: object) -> bool:
    if not isinstance(target, str) or "\0" in target:
        return False
    if target.startswith("/"):
        return target != "/" and ".." not in target.split("/")
    return bool(SECRET_FILE_NAME.fullmatch(target)) and target not in (".", "..")


def _first_use(
    seen: dict[tuple[str, str], int],
    key: tuple[str, str],
    index: int,
    path: str,
    subject: str,
    problems: _Problems,
) -> bool:
    """Record ``key`` as used by item ``index``, or report it and return True if an earlier item used it."""
    collection = path.split("[", 1)[0]
    if key in seen:
        problems.add(path, f"duplicate {subject} {key[1]!r}: {collection}[{seen[key]}] already uses it")
        return True
    seen[key] = index
    return False


def _volumes(value: object, problems: _Problems) -> tuple[Volume, ...]:
    volumes: list[Volume] = []
    first_use: dict[tuple[str, str], int] = {}
    for index, item in enumerate(_list(value, "volumes", problems)):
        path = f"volumes[{index}]"
        volume = _volume(item, path, problems)
        if volume is None:
            continue
        if _first_use(first_use, ("name", volume.name), index, f"{path}.name", "volume name", problems):
            continue
        if _first_use(
            first_use, ("target", volume.target), index, f"{path}.target", "volume target", problems
        ):
            continue
        volumes.append(volume)
    return tuple(volumes)


def _volume(item: object, path: str, problems: _Problems) -> Volume | None:
    raw = _item(item, path, problems)
    if raw is None:
        return None
    _check_fields(raw, ("name", "target", "driver", "driverOptions", "readOnly"), f"{path}.", problems)

    name, target = raw.get("name"), raw.get("target")
    driver = raw.get("driver")
    driver = "local" if driver is None else driver
    options = _driver_options(raw.get("driverOptions"), f"{path}.driverOptions", problems)
    read_only = _boolean(raw.get("readOnly"), f"{path}.readOnly", problems, default=False)
    if not isinstance(name, str) or not OBJECT_NAME.fullmatch(name):
        problems.add(
            f"{path}.name",
            f"invalid volume name {name!r}: expected 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
        )
        return None
    if not isinstance(target, str) or not target.startswith("/") or target == "/" or "\0" in target:
        problems.add(
            f"{path}.target",
            f"invalid volume target {target!r}: expected an absolute path in the container other "
            "than '/', such as '/data'",
        )
        return None
    if not isinstance(driver, str) or not VOLUME_DRIVER.fullmatch(driver):
        problems.add(
            f"{path}.driver", f"invalid volume driver {driver!r}: expected a driver name such as 'local'"
        )
        return None
    return Volume(name=name, target=target, driver=driver, driver_options=options, read_only=read_only)


def _driver_options(value: object, path: str, problems: _Problems) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, item in _object(value, path, problems).items():
        if not isinstance(key, str) or not key or not isinstance(item, str):
            problems.add(
                f"{path}.{key}", f"invalid driver option {key!r}: expected a non-empty name and a string"
            )
        else:
            options[key] = item
    return options


def _check_local_volumes(volumes: Sequence[Volume], replicas: int, problems: _Problems) -> None:
    local = [volume.name for volume in volumes if volume.node_local]
    if local and replicas > 1:
        problems.add(
            "replicas",
            f"invalid replicas {replicas}: volume {local[0]!r} uses the local driver, and a local volume "
            "lives on one node, so the app runs as one replica pinned to that node. Set replicas to 1, "
            "or use a volume driver with shared storage to run more replicas",
        )


# Network and scheduling: ports, placement, resources.


def _ports(value: object, problems: _Problems, *, endpoint_mode: EndpointMode) -> tuple[Port, ...]:
    ports: list[Port] = []
    first_use: dict[tuple[str, str], int] = {}
    for index, item in enumerate(_list(value, "ports", problems)):
        path = f"ports[{index}]"
        port = _port(item, path, problems, endpoint_mode=endpoint_mode)
        if port is None:
            continue
        if port.published is not None:
            key = ("published", f"{port.published}/{port.protocol}")
            if _first_use(first_use, key, index, f"{path}.published", "published port", problems):
                continue
        ports.append(port)
    return tuple(ports)


def _port(item: object, path: str, problems: _Problems, *, endpoint_mode: EndpointMode) -> Port | None:
    raw = _item(item, path, problems)
    if raw is None:
        return None
    _check_fields(raw, ("target", "published", "protocol", "mode"), f"{path}.", problems)

    if raw.get("target") is None:
        problems.add(f"{path}.target", "missing target: expected the container port, from 1 to 65535")
    target = _integer(raw.get("target"), f"{path}.target", problems, default=0, minimum=1, maximum=65535)
    published = raw.get("published")
    if published is not None:
        published = _integer(published, f"{path}.published", problems, default=0, minimum=1, maximum=65535)
    protocol = _choice(raw.get("protocol"), f"{path}.protocol", ("tcp", "udp", "sctp"), "tcp", problems)
    mode = _choice(raw.get("mode"), f"{path}.mode", ("ingress", "host"), "ingress", problems)
    if endpoint_mode == "dnsrr" and mode == "ingress":
        problems.add(
            f"{path}.mode",
            "invalid mode 'ingress' with endpointMode 'dnsrr': the routing mesh balances through a "
            "virtual IP, which dnsrr does not have, so publish in mode 'host' or use endpointMode 'vip'",
        )
    if target == 0 or published == 0:
        return None
    return Port(
        target=target, published=published, protocol=cast(Protocol, protocol), mode=cast(PublishMode, mode)
    )


def _placement(value: object, problems: _Problems) -> Placement:
    raw = _object(value, "placement", problems)
    _check_fields(raw, ("constraints", "preferences", "maxReplicasPerNode"), "placement.", problems)

    constraints = _string_list(raw.get("constraints"), "placement.constraints", problems)
    for index, constraint in enumerate(constraints):
        reason = constraint_problem(constraint)
        if reason is not None:
            problems.add(f"placement.constraints[{index}]", f"invalid constraint {constraint!r}: {reason}")
    preferences = _string_list(raw.get("preferences"), "placement.preferences", problems)
    for index, preference in enumerate(preferences):
        if not _is_label_key(preference):
            problems.add(
                f"placement.preferences[{index}]",
                f"invalid preference {preference!r}: expected a label to spread tasks over, "
                "such as 'node.labels.zone' or 'engine.labels.<name>'",
            )
    max_per_node = raw.get("maxReplicasPerNode")
    if max_per_node is not None:
        max_per_node = _integer(max_per_node, "placement.maxReplicasPerNode", problems, default=0, minimum=1)
    return Placement(
        constraints=tuple(constraints),
        preferences=tuple(preferences),
        max_replicas_per_node=max_per_node or None,
    )


def constraint_problem(constraint: str) -> str | None:
    """Return why ``constraint`` is not a valid Swarm placement constraint, or None when it is valid."""
    expected = "expected key==value or key!=value, such as 'node.role==worker'"
    operators = [operator for operator in ("==", "!=") if operator in constraint]
    if len(operators) != 1 or constraint.count(operators[0]) != 1:
        return expected
    key, value = (part.strip() for part in constraint.split(operators[0]))
    if not key or not value:
        return expected
    if key not in _CONSTRAINT_ATTRIBUTES and not _is_label_key(key):
        return (
            f"unknown attribute {key!r}: expected {', '.join(_CONSTRAINT_ATTRIBUTES)}, "
            "node.labels.<name> or engine.labels.<name>"
        )
    if key == "node.role" and value.lower() not in ("manager", "worker"):
        return f"node.role is manager or worker, not {value!r}"
    return None


def _is_label_key(key: str) -> bool:
    return any(key.startswith(prefix) and len(key) > len(prefix) for prefix in _LABEL_PREFIXES) and not any(
        character.isspace() for character in key
    )


def _resources(value: object, problems: _Problems) -> Resources:
    raw = _object(value, "resources", problems)
    _check_fields(raw, ("limits", "reservations"), "resources.", problems)
    limits = _resource_amount(
        raw.get("limits"), "resources.limits", problems, MIN_CPUS_LIMIT, MIN_MEMORY_LIMIT_BYTES
    )
    reservations = _resource_amount(
        raw.get("reservations"),
        "resources.reservations",
        problems,
        MIN_CPUS_RESERVATION,
        MIN_MEMORY_RESERVATION_BYTES,
    )

    for key, reserved, limit in (
        ("cpus", reservations.cpus, limits.cpus),
        ("memoryBytes", reservations.memory_bytes, limits.memory_bytes),
    ):
        if reserved is not None and limit is not None and reserved > limit:
            problems.add(
                f"resources.reservations.{key}",
                f"invalid reservation {reserved!r}: it is above the limit of {limit!r}, "
                "but a task cannot reserve more than it may use",
            )
    return Resources(limits=limits, reservations=reservations)


def _resource_amount(
    value: object, path: str, problems: _Problems, min_cpus: float, min_memory: int
) -> ResourceAmount:
    raw = _object(value, path, problems)
    _check_fields(raw, ("cpus", "memoryBytes"), f"{path}.", problems)
    cpus, memory = raw.get("cpus"), raw.get("memoryBytes")

    if cpus is not None and (
        isinstance(cpus, bool)
        or not isinstance(cpus, int | float)
        or not math.isfinite(cpus)
        or cpus < min_cpus
    ):
        problems.add(
            f"{path}.cpus", f"invalid cpus {cpus!r}: expected a number of CPUs of at least {min_cpus:g}"
        )
        cpus = None
    if memory is not None and (
        isinstance(memory, bool) or not isinstance(memory, int) or memory < min_memory
    ):
        problems.add(
            f"{path}.memoryBytes",
            f"invalid memoryBytes {memory!r}: expected an integer number of bytes of at least {min_memory} "
            f"({min_memory // (1024 * 1024)} MiB)",
        )
        memory = None
    return ResourceAmount(cpus=cpus, memory_bytes=memory)


# Health and recovery: container healthcheck, strategy, HostCraft's probe and backup policy.


def _healthcheck(value: object, problems: _Problems) -> Healthcheck | None:
    if value is None:
        return None
    raw = _item(value, "healthcheck", problems)
    if raw is None:
        return None
    keys = ("test", "intervalSeconds", "timeoutSeconds", "retries", "startPeriodSeconds")
    _check_fields(raw, keys, "healthcheck.", problems)

    test = _healthcheck_test(raw.get("test"), problems)
    interval = _seconds(
        raw.get("intervalSeconds"),
        "healthcheck.intervalSeconds",
        problems,
        default=30,
        minimum=MIN_HEALTHCHECK_SECONDS,
    )
    timeout = _seconds(
        raw.get("timeoutSeconds"),
        "healthcheck.timeoutSeconds",
        problems,
        default=10,
        minimum=MIN_HEALTHCHECK_SECONDS,
    )
    retries = _integer(raw.get("retries"), "healthcheck.retries", problems, default=3, minimum=1)
    start_period = _seconds(
        raw.get("startPeriodSeconds"), "healthcheck.startPeriodSeconds", problems, default=0, minimum=0
    )
    if 0 < start_period < MIN_HEALTHCHECK_SECONDS:
        problems.add(
            "healthcheck.startPeriodSeconds",
            f"invalid healthcheck.startPeriodSeconds {start_period!r}: expected 0 or at least "
            f"{MIN_HEALTHCHECK_SECONDS:g} seconds, Docker's minimum",
        )
    if timeout >= interval:
        problems.add(
            "healthcheck.timeoutSeconds",
            f"invalid healthcheck.timeoutSeconds {timeout!r}: expected less than intervalSeconds "
            f"{interval!r}, so that a hanging check ends before the next one is due",
        )
    if test is None:
        return None
    return Healthcheck(
        test=test,
        interval_seconds=interval,
        timeout_seconds=timeout,
        retries=retries,
        start_period_seconds=start_period,
    )


def _healthcheck_test(value: object, problems: _Problems) -> list[str] | None:
    expected = (
        'expected ["CMD", "executable", "arg", ...], ["CMD-SHELL", "shell command"] or ["NONE"] '
        "to disable the image's healthcheck"
    )
    if value is None:
        problems.add("healthcheck.test", f"missing healthcheck.test: {expected}")
        return None
    if not isinstance(value, list) or not all(isinstance(part, str) for part in value):
        problems.add("healthcheck.test", f"invalid healthcheck.test {value!r}: {expected}")
        return None
    valid = (
        (len(value) >= 2 and value[0] == "CMD" and value[1] != "")
        or (len(value) == 2 and value[0] == "CMD-SHELL" and value[1].strip() != "")
        or value == ["NONE"]
    )
    if not valid:
        problems.add("healthcheck.test", f"invalid healthcheck.test {value!r}: {expected}")
        return None
    return list(value)


def _strategy(value: object, problems: _Problems) -> Strategy:
    try:
        return parse_strategy(cast("dict[str, Any] | None", value))
    except ValidationError as exc:
        for problem in exc.details["problems"]:
            problems.add(problem["field"], problem["message"])
        return Strategy()


class _PolicyFields(TypedDict):
    auto_restart: bool
    auto_rollback: bool
    health_check_url: str | None
    health_check_interval_seconds: float
    health_check_timeout_seconds: float
    max_consecutive_failures: int
    health_probe: ProbeOptions
    recovery: RecoveryOptions
    sla_target: float
    backup_schedule: str | None
    backup_retention_days: int


def _health_and_backup_policy(raw: dict[str, Any], problems: _Problems) -> _PolicyFields:
    """Read the fields of HostCraft's own health probe and backup policy, as AppSpec arguments."""
    auto_restart = _boolean(raw.get("autoRestart"), "autoRestart", problems, default=True)
    auto_rollback = _boolean(raw.get("autoRollback"), "autoRollback", problems, default=True)
    probe_options, found = parse_probe_options(raw.get("healthProbe"))
    url, url_problems = check_probe_url(
        raw.get("healthCheckUrl"), allow_link_local=probe_options.allow_link_local
    )
    recovery, recovery_problems = parse_recovery_options(raw.get("recovery"))
    sla_target, sla_problems = parse_sla_target(raw.get("slaTarget"))
    for path, message in [*found, *url_problems, *recovery_problems, *sla_problems]:
        problems.add(path, message)
    interval = _seconds(
        raw.get("healthCheckIntervalSeconds"),
        "healthCheckIntervalSeconds",
        problems,
        default=60,
        minimum=MIN_PROBE_INTERVAL_SECONDS,
    )
    timeout = _seconds(
        raw.get("healthCheckTimeoutSeconds"),
        "healthCheckTimeoutSeconds",
        problems,
        default=10,
        minimum=0,
        strict=True,
    )
    if timeout >= interval:
        problems.add(
            "healthCheckTimeoutSeconds",
            f"invalid healthCheckTimeoutSeconds {timeout!r}: expected less than healthCheckIntervalSeconds "
            f"{interval!r}, so that a probe ends before the next one is due",
        )
    failures = _integer(
        raw.get("maxConsecutiveFailures"), "maxConsecutiveFailures", problems, default=3, minimum=1
    )
    schedule = _backup_schedule(raw.get("backupSchedule"), problems)
    retention = _integer(
        raw.get("backupRetentionDays"), "backupRetentionDays", problems, default=30, minimum=1
    )
    return _PolicyFields(
        auto_restart=auto_restart,
        auto_rollback=auto_rollback,
        health_check_url=url,
        health_check_interval_seconds=interval,
        health_check_timeout_seconds=timeout,
        max_consecutive_failures=failures,
        health_probe=probe_options,
        recovery=recovery,
        sla_target=sla_target,
        backup_schedule=schedule,
        backup_retention_days=retention,
    )


def _backup_schedule(value: object, problems: _Problems) -> str | None:
    if value is None:
        return None
    expected = (
        "expected a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. '0 */6 * * *'"
    )
    # croniter also accepts 6 and 7 fields (seconds, years) and @-aliases, which the API does not.
    if not isinstance(value, str) or len(value.split()) != 5 or not croniter.is_valid(value):
        problems.add("backupSchedule", f"invalid backupSchedule {value!r}: {expected}")
        return None
    try:
        croniter(value, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        problems.add(
            "backupSchedule",
            f"invalid backupSchedule {value!r}: it names no date that exists, so it would never run",
        )
        return None
    return value


BackupQuiesce = Literal["none", "stop", "pause"]
DESTINATION_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


class _BackupFields(TypedDict):
    backup_timezone: str
    backup_keep_last: int | None
    backup_keep_daily: int | None
    backup_keep_weekly: int | None
    backup_keep_monthly: int | None
    backup_quiesce: BackupQuiesce
    backup_destination: str | None
    backup_replicate_to: tuple[str, ...]


def _backup_retention_and_placement(raw: dict[str, Any], problems: _Problems) -> _BackupFields:
    """Read the schedule time zone, keep-* retention, quiescing and destinations of backups."""
    keep: dict[str, int | None] = {}
    for key in ("backupKeepLast", "backupKeepDaily", "backupKeepWeekly", "backupKeepMonthly"):
        value = raw.get(key)
        keep[key] = (
            None if value is None else _integer(value, key, problems, default=1, minimum=1, maximum=10_000)
        )
    quiesce = cast(
        BackupQuiesce,
        _choice(raw.get("backupQuiesce"), "backupQuiesce", ("none", "stop", "pause"), "none", problems),
    )
    destination = raw.get("backupDestination")
    if destination is not None and not (
        isinstance(destination, str) and DESTINATION_NAME_PATTERN.fullmatch(destination)
    ):
        problems.add(
            "backupDestination", f"invalid backupDestination {destination!r}: expected a destination name"
        )
        destination = None
    replicate_to = _string_list(raw.get("backupReplicateTo"), "backupReplicateTo", problems)
    for index, name in enumerate(replicate_to):
        if not DESTINATION_NAME_PATTERN.fullmatch(name):
            problems.add(f"backupReplicateTo[{index}]", f"invalid destination name {name!r}")
    return _BackupFields(
        backup_timezone=_timezone(raw.get("backupTimezone"), problems),
        backup_keep_last=keep["backupKeepLast"],
        backup_keep_daily=keep["backupKeepDaily"],
        backup_keep_weekly=keep["backupKeepWeekly"],
        backup_keep_monthly=keep["backupKeepMonthly"],
        backup_quiesce=quiesce,
        backup_destination=destination,
        backup_replicate_to=tuple(replicate_to),
    )


def _timezone(value: object, problems: _Problems) -> str:
    if value is None:
        return "UTC"
    if isinstance(value, str) and value:
        try:
            ZoneInfo(value)
            return value
        except (ZoneInfoNotFoundError, ValueError):
            pass
    close = difflib.get_close_matches(str(value), sorted(available_timezones()), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    problems.add(
        "backupTimezone",
        f"invalid backupTimezone {value!r}: expected an IANA time zone like 'Europe/Berlin'{hint}",
    )
    return "UTC"


_DATABASE_FIELDS = ("name", "engine", "database", "user", "port", "passwordSecret", "passwordEnv")


def _backup_databases(
    value: object, problems: _Problems, *, env: dict[str, str], secrets: tuple[Secret, ...]
) -> tuple[BackupDatabase, ...]:
    """Read ``backupDatabases``: the database servers a database backup of the app dumps."""
    databases: list[BackupDatabase] = []
    seen: set[str] = set()
    for index, item in enumerate(_list(value, "backupDatabases", problems)):
        path = f"backupDatabases[{index}]"
        raw = _item(item, path, problems)
        if raw is None:
            continue
        _check_fields(raw, _DATABASE_FIELDS, f"{path}.", problems)
        before = len(problems.items)
        name = _dns_label(raw.get("name"), f"{path}.name", problems, default=None)
        if name is not None and name in seen:
            problems.add(f"{path}.name", f"duplicate database name {name!r}: each entry needs its own name")
        engine = raw.get("engine")
        if engine not in DATABASE_ENGINES:
            problems.add(
                f"{path}.engine", f"invalid engine {engine!r}: expected one of {', '.join(DATABASE_ENGINES)}"
            )
        database = raw.get("database")
        if database is not None and not (isinstance(database, str) and DATABASE_NAME.fullmatch(database)):
            problems.add(
                f"{path}.database",
                f"invalid database {database!r}: expected a name of 1 to 63 characters without slashes, "
                "or null for every database",
            )
        elif database is not None and engine == "redis":
            problems.add(f"{path}.database", "a Redis backup dumps the whole server: leave database null")
        user = raw.get("user")
        if user is not None and not (isinstance(user, str) and user.strip() and "\0" not in user):
            problems.add(f"{path}.user", f"invalid user {user!r}: expected a non-blank string")
        port = raw.get("port")
        if port is not None:
            port = _integer(port, f"{path}.port", problems, default=0, minimum=1, maximum=65535)
        password_secret, password_env = raw.get("passwordSecret"), raw.get("passwordEnv")
        if password_secret is not None and password_env is not None:
            problems.add(f"{path}.passwordEnv", "give passwordSecret or passwordEnv, not both")
        elif password_secret is not None and password_secret not in {secret.name for secret in secrets}:
            problems.add(
                f"{path}.passwordSecret",
                f"invalid passwordSecret {password_secret!r}: expected the name of one of the app's secrets",
            )
        elif password_env is not None and password_env not in env:
            problems.add(
                f"{path}.passwordEnv",
                f"invalid passwordEnv {password_env!r}: expected a key of the app's env",
            )
        if len(problems.items) > before or name is None:
            continue
        seen.add(name)
        databases.append(
            BackupDatabase(
                name=name,
                engine=cast(DatabaseEngine, engine),
                database=database,
                user=user,
                port=port,
                password_secret=password_secret,
                password_env=password_env,
            )
        )
    return tuple(databases)
