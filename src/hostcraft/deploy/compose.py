"""Import a Compose or stack file as HostCraft application documents, one per service.

The import is pure, so it reads no file, no environment variable and no Docker engine. Every key
it does not carry over is listed by its dotted path in ``ImportResult.unsupported``, and every
value whose meaning changes is explained in ``ImportResult.warnings``.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from hostcraft.errors import ValidationError

# Application document keys, in the order a reader expects them.
_DOCUMENT_KEYS = (
    "name",
    "project",
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
)
# Swarm service names are DNS labels, so they can be resolved as hostnames inside the cluster.
_APPLICATION_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Docker volume names. Any other source (./x, /x, ~/x) is a host path, which makes the mount a bind mount.
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Compose durations, parsed by compose-go with go-str2duration: Go's duration syntax ("10s", "1m30s",
# "300ms") plus d for 24 hours and w for 7 days.
_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h|d|w))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w)")
_DURATION_UNIT_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3,
    "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
}  # fmt: skip
# Compose parses sizes with docker/go-units RAMInBytes, whose units are binary: 1k = 1024 bytes.
_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([kmgtp])?i?b?", re.IGNORECASE)
_SIZE_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
# A reference Compose interpolates when it deploys: ${VAR}, ${VAR:-default}, $VAR, or $$ for "$".
_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*|\$)")
_HEALTHCHECK_DURATIONS = {
    "interval": "intervalSeconds",
    "timeout": "timeoutSeconds",
    "start_period": "startPeriodSeconds",
}
_PROTOCOLS = ("tcp", "udp", "sctp")
_PORT_MODES = ("ingress", "host")
# Keys that name the source of a top-level secret's value. HostCraft reads none of these sources.
_SECRET_SOURCES = ("file", "external", "environment", "content")
_BIND_REASON = (
    "a bind mount ties the application to one host's file system, so Swarm could not move its tasks "
    "to another node and HostCraft could not back the data up. Use a named volume instead"
)


@dataclass
class ImportResult:
    """Application documents built from a Compose file, with what the import left out and why."""

    applications: list[dict[str, Any]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Context:
    """Definitions a service can refer to, and what the import of the services left out."""

    volumes: dict[str, object]
    secrets: dict[str, object]
    env_files: dict[str, str]
    used_volumes: set[str] = field(default_factory=set)
    used_secrets: set[str] = field(default_factory=set)
    unsupported: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def skip(self, path: str) -> None:
        self.unsupported.append(path)

    def warn(self, sentence: str) -> None:
        self.warnings.append(sentence)


def import_compose(
    text: str, *, project: str = "default", env_files: dict[str, str] | None = None
) -> ImportResult:
    """Build one application document per service of the Compose or stack file ``text``.

    ``env_files`` maps each ``env_file`` path, as written in the file, to the file's content.
    Raises ValidationError, whose ``field`` is the dotted path of the input that cannot be imported.
    """
    document = _load_document(text)
    services = _services(document)
    context = _Context(
        volumes=_mapping(document.get("volumes"), "volumes"),
        secrets=_mapping(document.get("secrets"), "secrets"),
        env_files=env_files or {},
    )

    applications = [
        _application(key, service, project=project, context=context) for key, service in services.items()
    ]
    _reject_duplicate_names(applications, list(services))

    unsupported: list[str] = []
    for key in document:
        if key == "services":
            unsupported.extend(context.unsupported)
        elif key == "volumes":
            unsupported.extend(
                _unsupported_definitions(
                    "volumes", context.volumes, context.used_volumes, carried=("driver", "driver_opts")
                )
            )
        elif key == "secrets":
            unsupported.extend(
                _unsupported_definitions(
                    "secrets", context.secrets, context.used_secrets, carried=_SECRET_SOURCES
                )
            )
        else:
            unsupported.append(key)
    warnings = context.warnings + _secret_value_warnings(context)
    return ImportResult(applications=applications, unsupported=unsupported, warnings=warnings)


def _load_document(text: str) -> dict[str, object]:
    # NOTE: PyYAML implements YAML 1.1 while Compose reads YAML 1.2, so unquoted values differ:
    # `- 22:22` in ports becomes the integer 1342 (base 60) and `yes`/`on` become true. Quote them.
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValidationError(
            f"invalid YAML{where}: {exc.problem or exc.context}. Fix the file and import it again",
            field="file",
        ) from exc
    except yaml.YAMLError as exc:
        raise ValidationError(f"invalid YAML: {exc}. Fix the file and import it again", field="file") from exc
    if not isinstance(document, dict):
        raise ValidationError(
            f"a Compose file must be a mapping with a services key, not {_kind(document)}", field="file"
        )
    return {str(key): value for key, value in document.items()}


def _services(document: dict[str, object]) -> dict[str, object]:
    services = _mapping(document.get("services"), "services")
    if not services:
        raise ValidationError(
            "the file defines no services: add at least one under the services key", field="services"
        )
    return services


def _application(key: str, raw: object, *, project: str, context: _Context) -> dict[str, Any]:
    path = f"services.{key}"
    service = _mapping(raw, path)
    fields: dict[str, Any] = {
        "name": _application_name(key, path),
        "project": project,
        "image": _image(service, path),
    }
    file_env: dict[str, str] = {}
    environment: dict[str, str] = {}

    for name, value in service.items():
        item_path = f"{path}.{name}"
        match name:
            case "image":
                pass
            case "command":
                fields["command"] = _command(value, item_path)
            case "env_file":
                file_env = _env_files(value, item_path, key, context)
            case "environment":
                environment = _environment(value, item_path, key, context)
            case "ports":
                fields["ports"] = _ports(value, item_path, context)
            case "volumes":
                fields["volumes"] = _volumes(value, item_path, context)
            case "secrets":
                fields["secrets"] = _secret_references(value, item_path, context)
            case "healthcheck":
                fields["healthcheck"] = _healthcheck(value, item_path, context)
            case "deploy":
                fields.update(_deploy(value, item_path, context))
            case _:
                context.skip(item_path)

    # environment overrides env_file whatever their order in the file, as in Compose.
    env = {**file_env, **environment}
    if env:
        fields["env"] = env
    _warn_interpolation(key, fields, context)
    return {name: fields[name] for name in _DOCUMENT_KEYS if name in fields}


def _application_name(key: str, path: str) -> str:
    name = key.lower().replace("_", "-")
    if not _APPLICATION_NAME.fullmatch(name):
        raise ValidationError(
            f"service name {key!r} cannot become an application name: lowercased and with '_' replaced "
            "by '-', it must be 1 to 63 letters, digits or '-' that start and end with a letter or digit. "
            "Rename the service",
            field=path,
        )
    return name


def _image(service: dict[str, object], path: str) -> str:
    image = service.get("image")
    if isinstance(image, str) and image.strip():
        return image.strip()
    built = " only has a build section" if "build" in service else " has no image"
    raise ValidationError(
        f"service {path.removeprefix('services.')}{built}: HostCraft deploys images, so build the image, "
        f"push it to a registry and set {path}.image",
        field=f"{path}.image",
    )


def _reject_duplicate_names(applications: list[dict[str, Any]], keys: list[str]) -> None:
    seen: dict[str, str] = {}
    for application, key in zip(applications, keys, strict=True):
        name = application["name"]
        if name in seen:
            raise ValidationError(
                f"services {seen[name]} and {key} both become application {name}. Rename one of them",
                field=f"services.{key}",
            )
        seen[name] = key


def _command(value: object, path: str) -> list[str]:
    # Compose splits a string command into words like a POSIX shell (go-shellwords) and runs it without one.
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ValidationError(f"invalid command in {path}: {exc}. Fix its quoting", field=path) from exc
    return [_scalar_text(item, f"{path}[{index}]") for index, item in enumerate(_sequence(value, path))]


def _env_files(value: object, path: str, service: str, context: _Context) -> dict[str, str]:
    entries = [value] if isinstance(value, str) else _sequence(value, path)
    env: dict[str, str] = {}
    for index, entry in enumerate(entries):
        file, required = _env_file_reference(
            entry, path if isinstance(value, str) else f"{path}[{index}]", context
        )
        content = context.env_files.get(file)
        if content is None and required:
            raise ValidationError(
                f"env_file {file} of service {service} was not supplied: send its content with the import "
                "(the CLI reads it relative to the compose file)",
                field=path,
            )
        if content is None:
            context.warn(
                f"The optional env_file {file} of service {service} was not supplied, "
                "so none of its variables were imported."
            )
            continue
        env.update(_parse_env_file(content, file=file, service=service, context=context))
    return env


def _env_file_reference(entry: object, path: str, context: _Context) -> tuple[str, bool]:
    if isinstance(entry, str):
        return entry, True
    reference = _mapping(entry, path)
    file = reference.get("path")
    if not isinstance(file, str) or not file:
        raise ValidationError(f"{path}.path is missing: name the env file", field=f"{path}.path")
    for key in reference:
        if key not in ("path", "required"):
            context.skip(f"{path}.{key}")
    return file, _boolean(reference.get("required", True), f"{path}.required")


def _parse_env_file(content: str, *, file: str, service: str, context: _Context) -> dict[str, str]:
    """Parse KEY=VALUE lines, skipping blank lines and comments.

    Values only lose matching surrounding quotes. Compose's parser also expands escapes and
    ``${VAR}``, reads quoted values over several lines and cuts an unquoted value at ``#``. The
    last two change a value silently, so they are warned about. Warnings never quote a value.
    """
    env: dict[str, str] = {}
    for number, line in enumerate(content.splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"Line {number} of env_file {file} of service {service}"
        key, separator, value = text.removeprefix("export ").partition("=")
        key = key.strip()
        if not _ENV_NAME.fullmatch(key):
            context.warn(f"{where} is not KEY=VALUE and was skipped.")
        elif not separator:
            context.warn(
                f"{where} names {key} without a value, which Compose reads from the shell environment. "
                "HostCraft does not, so it was skipped."
            )
        else:
            env[key] = _env_file_value(value.strip(), where=where, context=context)
    return env


def _env_file_value(value: str, *, where: str, context: _Context) -> str:
    quoted = value[:1] in ("'", '"')
    if quoted and len(value) >= 2 and value[-1] == value[0]:
        return value[1:-1]
    if quoted:
        context.warn(
            f"{where} opens a quote that it does not close. HostCraft reads one line per variable, "
            "so the value was imported as written, with the quote."
        )
    elif "#" in value:
        context.warn(
            f"{where} has '#' in an unquoted value, where Compose would cut the value as a comment. "
            "HostCraft kept the whole value, so quote it or remove the comment."
        )
    return value


def _environment(value: object, path: str, service: str, context: _Context) -> dict[str, str]:
    if isinstance(value, list):
        pairs: list[tuple[str, object]] = []
        for index, item in enumerate(value):
            key, separator, text = _scalar_text(item, f"{path}[{index}]").partition("=")
            pairs.append((key, text if separator else None))
    else:
        pairs = list(_mapping(value, path).items())

    env: dict[str, str] = {}
    for key, item in pairs:
        if not key:
            raise ValidationError(f"{path} has a variable without a name", field=path)
        if item is None:
            context.skip(f"{path}.{key}")
            context.warn(
                f"Variable {key} of service {service} has no value, which Compose reads from the shell "
                "environment. HostCraft does not, so set it on the application."
            )
            continue
        env[key] = _scalar_text(item, f"{path}.{key}")
    return env


def _ports(value: object, path: str, context: _Context) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for index, entry in enumerate(_sequence(value, path)):
        entry_path = f"{path}[{index}]"
        if isinstance(entry, dict):
            port = _long_port(_mapping(entry, entry_path), entry_path, context)
        else:
            port = _short_port(_scalar_text(entry, entry_path), entry_path, context)
        if port is not None:
            ports.append(port)
    return ports


def _short_port(text: str, path: str, context: _Context) -> dict[str, Any] | None:
    """Parse ``[[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]``, or return None if the port is not carried over."""
    spec, _, protocol = text.partition("/")
    host_ip = ""
    if spec.startswith("["):
        host_ip, separator, spec = spec[1:].partition("]:")
        if not separator:
            raise ValidationError(
                f"invalid port {text!r} in {path}: close the IPv6 address with ']:'", field=path
            )
    parts = spec.split(":")
    if len(parts) == 3 and not host_ip:
        host_ip = parts.pop(0)
    if len(parts) > 2:
        raise ValidationError(
            f"invalid port {text!r} in {path}: write it as [[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]",
            field=path,
        )
    published, target = parts if len(parts) == 2 else ("", parts[0])

    if not _port_is_importable(host_ip, f"{published}:{target}", path, context):
        return None
    port: dict[str, Any] = {"target": _port_number(target, path)}
    if published:
        port["published"] = _port_number(published, path)
    port["protocol"] = _protocol(protocol or "tcp", path)
    port["mode"] = "ingress"
    return port


def _long_port(entry: dict[str, object], path: str, context: _Context) -> dict[str, Any] | None:
    host_ip = _optional_text(entry.get("host_ip"), f"{path}.host_ip")
    published = entry.get("published")
    if not _port_is_importable(host_ip, str(published or ""), path, context):
        return None
    if "target" not in entry:
        raise ValidationError(f"{path}.target is missing: name the container port", field=f"{path}.target")

    port: dict[str, Any] = {"target": _port_number(entry["target"], f"{path}.target")}
    if published is not None:
        port["published"] = _port_number(published, f"{path}.published")
    port["protocol"] = _protocol(entry.get("protocol", "tcp"), f"{path}.protocol")
    mode = entry.get("mode", "ingress")
    if mode not in _PORT_MODES:
        raise ValidationError(
            f"invalid port mode {mode!r} in {path}.mode: use ingress or host", field=f"{path}.mode"
        )
    port["mode"] = mode
    for key in entry:
        if key not in ("target", "published", "protocol", "mode", "host_ip"):
            context.skip(f"{path}.{key}")
    return port


def _port_is_importable(host_ip: str, numbers: str, path: str, context: _Context) -> bool:
    # 0.0.0.0 is Docker's default binding, so dropping it changes nothing. Any other address
    # narrows who can connect, and publishing the port without it would expose it on every node.
    if host_ip and host_ip != "0.0.0.0":  # noqa: S104 (compared, never bound)
        context.skip(path)
        context.warn(
            f"Port {path} is bound to host address {host_ip}, but Swarm publishes a port on every address "
            "of every node. It was not imported, so the application does not publish it at all."
        )
        return False
    if "-" in numbers:
        context.skip(path)
        context.warn(f"Port {path} is a range, which HostCraft does not import. List each port separately.")
        return False
    return True


def _port_number(value: object, path: str) -> int:
    number = _integer(value, path, minimum=1)
    if number > 65535:
        raise ValidationError(f"invalid port {number} in {path}: ports are 1 to 65535", field=path)
    return number


def _protocol(value: object, path: str) -> str:
    if value not in _PROTOCOLS:
        raise ValidationError(f"invalid protocol {value!r} in {path}: use tcp, udp or sctp", field=path)
    return str(value)


def _volumes(value: object, path: str, context: _Context) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = []
    for index, entry in enumerate(_sequence(value, path)):
        entry_path = f"{path}[{index}]"
        if isinstance(entry, dict):
            volume = _long_volume(_mapping(entry, entry_path), entry_path, context)
        else:
            volume = _short_volume(_scalar_text(entry, entry_path), entry_path, context)
        if volume is not None:
            volumes.append(volume)
    return volumes


def _short_volume(text: str, path: str, context: _Context) -> dict[str, Any] | None:
    """Parse ``[SOURCE:]TARGET[:MODE]``, or return None if the mount is not carried over."""
    parts = text.split(":")
    if len(parts) > 3:
        raise ValidationError(
            f"invalid volume {text!r} in {path}: write it as SOURCE:TARGET[:MODE]", field=path
        )
    if len(parts) == 1:
        parts.insert(0, "")
    source, target, mode = [*parts, ""][:3]
    if not _is_mountable(source, target, "volume", path, context):
        return None

    read_only = False
    for option in filter(None, mode.split(",")):
        if option in ("ro", "rw"):
            read_only = option == "ro"
        elif option == "nocopy":
            context.skip(f"{path}.volume.nocopy")
        elif option in ("consistent", "cached", "delegated"):
            context.skip(f"{path}.consistency")
        else:
            raise ValidationError(f"invalid volume mode {option!r} in {path}: use ro or rw", field=path)
    return _volume_document(source, target, read_only, path, context)


def _long_volume(entry: dict[str, object], path: str, context: _Context) -> dict[str, Any] | None:
    kind = entry.get("type")
    if kind not in ("volume", "bind", "tmpfs", "npipe", "cluster", "image"):
        raise ValidationError(
            f"invalid volume type {kind!r} in {path}.type: use volume", field=f"{path}.type"
        )
    source = _optional_text(entry.get("source"), f"{path}.source")
    target = _optional_text(entry.get("target"), f"{path}.target")
    if not _is_mountable(source, target, str(kind), path, context):
        return None

    read_only = _boolean(entry.get("read_only", False), f"{path}.read_only")
    for key, option in entry.items():
        if key == "volume":
            context.unsupported.extend(f"{path}.volume.{name}" for name in _mapping(option, f"{path}.volume"))
        elif key not in ("type", "source", "target", "read_only"):
            context.skip(f"{path}.{key}")
    return _volume_document(source, target, read_only, path, context)


def _is_mountable(source: str, target: str, kind: str, path: str, context: _Context) -> bool:
    if kind == "bind" or (kind == "volume" and source and not _VOLUME_NAME.fullmatch(source)):
        context.skip(path)
        context.warn(f"Bind mount {path} of {source or 'a host path'} was not imported: {_BIND_REASON}.")
        return False
    if kind != "volume":
        context.skip(path)
        return False
    if not target.startswith("/"):
        raise ValidationError(
            f"{path} needs an absolute container path as target, not {target!r}", field=path
        )
    if not source:
        context.skip(path)
        context.warn(
            f"Anonymous volume {path} was not imported: Swarm creates a new one for each task, so its "
            "data is lost when a task moves. Name the volume under the top-level volumes key."
        )
        return False
    if source not in context.volumes:
        raise ValidationError(
            f"{path} refers to volume {source}, which is not defined: add it under the top-level volumes key",
            field=path,
        )
    return True


def _volume_document(name: str, target: str, read_only: bool, path: str, context: _Context) -> dict[str, Any]:
    definition_path = f"volumes.{name}"
    definition = _mapping(context.volumes[name], definition_path)
    driver = definition.get("driver") or "local"
    if not isinstance(driver, str):
        raise ValidationError(f"{definition_path}.driver must be a string", field=f"{definition_path}.driver")
    options = _mapping(definition.get("driver_opts"), f"{definition_path}.driver_opts")
    context.used_volumes.add(name)
    return {
        "name": name,
        "target": target,
        "readOnly": read_only,
        "driver": driver,
        "driverOptions": {
            key: _scalar_text(option, f"{definition_path}.driver_opts.{key}")
            for key, option in options.items()
        },
    }


def _secret_references(value: object, path: str, context: _Context) -> list[dict[str, str]]:
    references: list[dict[str, str]] = []
    for index, entry in enumerate(_sequence(value, path)):
        entry_path = f"{path}[{index}]"
        if isinstance(entry, str):
            source, target = entry, entry
        else:
            reference = _mapping(entry, entry_path)
            source = _optional_text(reference.get("source"), f"{entry_path}.source")
            if not source:
                raise ValidationError(
                    f"{entry_path}.source is missing: name the secret", field=f"{entry_path}.source"
                )
            target = _optional_text(reference.get("target"), f"{entry_path}.target") or source
            context.unsupported.extend(
                f"{entry_path}.{key}" for key in reference if key not in ("source", "target")
            )
        if source not in context.secrets:
            raise ValidationError(
                f"{entry_path} refers to secret {source!r}, which is not defined: add it under the top-level "
                "secrets key",
                field=entry_path,
            )
        context.used_secrets.add(source)
        references.append({"name": source, "target": target})
    return references


def _secret_value_warnings(context: _Context) -> list[str]:
    return [
        f"Secret {name} was imported without a value, because HostCraft never reads secret files, external "
        "secrets or environment variables during a compose import. Supply its value when you create the "
        "application."
        for name in context.secrets
        if name in context.used_secrets
    ]


def _unsupported_definitions(
    section: str, definitions: dict[str, object], used: set[str], *, carried: tuple[str, ...]
) -> list[str]:
    """List unused top-level definitions whole, and the keys of used ones that are not carried over."""
    unsupported: list[str] = []
    for name, definition in definitions.items():
        if name not in used:
            unsupported.append(f"{section}.{name}")
            continue
        keys = _mapping(definition, f"{section}.{name}")
        unsupported.extend(f"{section}.{name}.{key}" for key in keys if key not in carried)
    return unsupported


def _healthcheck(value: object, path: str, context: _Context) -> dict[str, Any]:
    config = _mapping(value, path)
    healthcheck: dict[str, Any] = {}
    for key, item in config.items():
        item_path = f"{path}.{key}"
        match key:
            case "test":
                healthcheck["test"] = _healthcheck_test(item, item_path)
            case "interval" | "timeout" | "start_period":
                healthcheck[_HEALTHCHECK_DURATIONS[key]] = _duration_seconds(item, item_path)
            case "retries":
                healthcheck["retries"] = _integer(item, item_path, minimum=0)
            case "disable":
                disabled = _boolean(item, item_path)
                if disabled and "test" in config:
                    raise ValidationError(
                        f"{path} sets both test and disable: keep one of them", field=item_path
                    )
                if disabled:
                    healthcheck["test"] = ["NONE"]
            case _:
                context.skip(item_path)
    order = ("test", "intervalSeconds", "timeoutSeconds", "retries", "startPeriodSeconds")
    return {name: healthcheck[name] for name in order if name in healthcheck}


def _healthcheck_test(value: object, path: str) -> list[str]:
    if isinstance(value, str):
        return ["CMD-SHELL", value]
    test = [_scalar_text(item, f"{path}[{index}]") for index, item in enumerate(_sequence(value, path))]
    if not test or test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise ValidationError(f"{path} must start with NONE, CMD or CMD-SHELL", field=path)
    return test


def _deploy(value: object, path: str, context: _Context) -> dict[str, Any]:
    """Return the document fields that ``deploy`` sets: replicas, strategy, resources and placement."""
    fields: dict[str, Any] = {}
    for key, item in _mapping(value, path).items():
        item_path = f"{path}.{key}"
        match key:
            case "replicas":
                fields["replicas"] = _integer(item, item_path, minimum=0)
            case "mode":
                if item != "replicated":
                    context.skip(item_path)
                    context.warn(
                        f"{item_path} is {item}, which HostCraft does not support, so the service was "
                        "imported as a replicated application."
                    )
            case "update_config":
                fields["strategy"] = _strategy(item, item_path, context)
            case "resources":
                resources = _resources(item, item_path, context)
                if resources:
                    fields["resources"] = resources
            case "placement":
                placement = _placement(item, item_path, context)
                if placement:
                    fields["placement"] = placement
            case _:
                context.skip(item_path)
    return fields


def _strategy(value: object, path: str, context: _Context) -> dict[str, Any]:
    strategy: dict[str, Any] = {"type": "rolling"}
    for key, item in _mapping(value, path).items():
        item_path = f"{path}.{key}"
        match key:
            case "parallelism":
                parallelism = _integer(item, item_path, minimum=0)
                if parallelism:
                    strategy["maxUnavailable"] = parallelism
                else:
                    context.skip(item_path)
                    context.warn(
                        f"{item_path} is 0, which updates every task at once. HostCraft updates in "
                        "batches, so set maxUnavailable on the application."
                    )
            case "order":
                orders = {"stop-first": 0, "start-first": 1}
                if item not in orders:
                    raise ValidationError(
                        f"invalid order {item!r} in {item_path}: use start-first or stop-first",
                        field=item_path,
                    )
                strategy["maxSurge"] = orders[str(item)]
            case "delay":
                _duration_seconds(item, item_path)
                strategy["updateDelay"] = item
            case "failure_action":
                if item not in ("rollback", "pause", "continue"):
                    raise ValidationError(
                        f"invalid failure_action {item!r} in {item_path}: use rollback, pause or continue",
                        field=item_path,
                    )
                strategy["rollbackOnFailure"] = item == "rollback"
            case _:
                # monitor and max_failure_ratio among others: HostCraft computes the monitor window itself.
                context.skip(item_path)
    order = ("type", "maxUnavailable", "maxSurge", "updateDelay", "rollbackOnFailure")
    return {name: strategy[name] for name in order if name in strategy}


def _resources(value: object, path: str, context: _Context) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for key, item in _mapping(value, path).items():
        item_path = f"{path}.{key}"
        if key not in ("limits", "reservations"):
            context.skip(item_path)
            continue
        amounts: dict[str, Any] = {}
        for name, amount in _mapping(item, item_path).items():
            if name == "cpus":
                amounts["cpus"] = _cpus(amount, f"{item_path}.cpus")
            elif name == "memory":
                amounts["memoryBytes"] = _memory_bytes(amount, f"{item_path}.memory")
            else:
                context.skip(f"{item_path}.{name}")
        if amounts:
            resources[key] = amounts
    return resources


def _placement(value: object, path: str, context: _Context) -> dict[str, Any]:
    placement: dict[str, Any] = {}
    for key, item in _mapping(value, path).items():
        item_path = f"{path}.{key}"
        match key:
            case "constraints":
                placement["constraints"] = [
                    _scalar_text(entry, f"{item_path}[{index}]")
                    for index, entry in enumerate(_sequence(item, item_path))
                ]
            case "preferences":
                placement["preferences"] = _spread_preferences(item, item_path, context)
            case "max_replicas_per_node":
                # 0 means no limit in Swarm, which is also what leaving the key out means.
                max_per_node = _integer(item, item_path, minimum=0)
                if max_per_node:
                    placement["maxReplicasPerNode"] = max_per_node
            case _:
                context.skip(item_path)
    return placement


def _spread_preferences(value: object, path: str, context: _Context) -> list[str]:
    preferences: list[str] = []
    for index, entry in enumerate(_sequence(value, path)):
        entry_path = f"{path}[{index}]"
        preference = _mapping(entry, entry_path)
        if "spread" not in preference:
            raise ValidationError(
                f"{entry_path} has no spread: write it as spread: node.labels.<label>", field=entry_path
            )
        preferences.append(_scalar_text(preference["spread"], f"{entry_path}.spread"))
        context.unsupported.extend(f"{entry_path}.{key}" for key in preference if key != "spread")
    return preferences


def _warn_interpolation(service: str, fields: dict[str, Any], context: _Context) -> None:
    # The value itself is never quoted in the warning, because an env value may be a secret.
    for field_path, text in _strings(fields, ""):
        if field_path not in ("name", "project") and _VARIABLE.search(text):
            context.warn(
                f"The {field_path} of service {service} contains a $ reference, which Compose "
                "interpolates when it deploys. HostCraft imports the value as written, so replace it."
            )


def _strings(value: object, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [
            found for key, item in value.items() for found in _strings(item, f"{path}.{key}" if path else key)
        ]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _strings(item, f"{path}[{index}]")]
    return []


def _duration_seconds(value: object, path: str) -> float:
    if isinstance(value, str) and value == "0":
        return 0.0
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise ValidationError(
            f"invalid duration {value!r} in {path}: write it like 10s, 1m30s or 500ms", field=path
        )
    return sum(float(number) * _DURATION_UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(value))


def _memory_bytes(value: object, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValidationError(
            f"invalid memory size {value!r} in {path}: write bytes or a size like 512M or 1g", field=path
        )
    power = _SIZE_POWER[(match.group(2) or "").lower()]
    return int(float(match.group(1)) * 1024**power)


def _cpus(value: object, path: str) -> float:
    cpus = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        cpus = float(value)
    elif isinstance(value, str):
        try:
            cpus = float(value)
        except ValueError:
            cpus = math.nan
    if not math.isfinite(cpus) or cpus <= 0:
        raise ValidationError(
            f"invalid cpus {value!r} in {path}: write a positive number such as 0.5", field=path
        )
    return cpus


def _integer(value: object, path: str, *, minimum: int) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if number is None or number < minimum:
        raise ValidationError(
            f"invalid value {value!r} in {path}: expected a whole number of at least {minimum}", field=path
        )
    return number


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"invalid value {value!r} in {path}: expected true or false", field=path)
    return value


def _scalar_text(value: object, path: str) -> str:
    """Return a string, number or boolean as text, with booleans written ``true`` and ``false`` as in YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ValidationError(f"{path} must be a string or a number, not {_kind(value)}", field=path)


def _optional_text(value: object, path: str) -> str:
    return "" if value is None else _scalar_text(value, path)


def _mapping(value: object, path: str) -> dict[str, object]:
    """Return a mapping with string keys, treating a missing section (null) as an empty mapping."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{path} must be a mapping, not {_kind(value)}", field=path)
    return {str(key): item for key, item in value.items()}


def _sequence(value: object, path: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(f"{path} must be a list, not {_kind(value)}", field=path)
    return value


def _kind(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return (
        "a list"
        if isinstance(value, list)
        else "a mapping"
        if isinstance(value, dict)
        else type(value).__name__
    )
