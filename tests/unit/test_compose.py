from __future__ import annotations

from typing import Any

import pytest
import yaml

from hostcraft.deploy.compose import ImportResult, import_compose
from hostcraft.errors import ValidationError

STACK = """\
version: "3.9"
name: shop
x-logging: &logging
  driver: json-file
services:
  web:
    image: registry.example.com/shop/web:1.4.2
    ports:
      - "8080:80"
      - target: 443
        published: 8443
        protocol: tcp
        mode: host
      - "127.0.0.1:9090:9090"
    healthcheck:
      test: curl -fsS http://localhost/healthz
      interval: 10s
      timeout: 5s
      retries: 3
      start_period: 1m30s
    deploy:
      replicas: 3
      update_config:
        parallelism: 1
        delay: 10s
        order: start-first
        failure_action: rollback
        monitor: 30s
      resources:
        limits:
          cpus: "0.5"
          memory: 256M
        reservations:
          cpus: 0.1
          memory: 64m
      placement:
        constraints:
          - node.role==worker
        preferences:
          - spread: node.labels.zone
        max_replicas_per_node: 2
    logging: *logging
    depends_on:
      - db
  queue_worker:
    image: registry.example.com/shop/worker:1.4.2
    command: python -m shop.worker --queue "orders high"
    env_file: ./worker.env
    environment:
      LOG_LEVEL: debug
      CONCURRENCY: 4
    deploy:
      replicas: 2
      restart_policy:
        condition: on-failure
        window: 120s
  db:
    image: postgres:16
    environment:
      - POSTGRES_PASSWORD_FILE=/run/secrets/db_password
    volumes:
      - dbdata:/var/lib/postgresql/data
      - ./init.sql:/docker-entrypoint-initdb.d/init.sql:ro
    secrets:
      - db_password
    cap_add:
      - SYS_NICE
volumes:
  dbdata:
    driver: local
    driver_opts:
      type: nfs
      o: addr=10.0.0.5,rw
      device: ":/exports/shop-db"
secrets:
  db_password:
    file: ./secrets/db_password.txt
networks:
  backend:
    driver: overlay
"""

WORKER_ENV = """\
# worker settings
LOG_LEVEL=info
QUEUE_URL="amqp://mq:5672"

"""


def import_service(
    service: dict[str, Any], *, env_files: dict[str, str] | None = None, **top_level: Any
) -> ImportResult:
    """Import a file whose one service, ``app``, runs nginx with the extra ``service`` keys."""
    document = {"services": {"app": {"image": "nginx:1.27", **service}}, **top_level}
    return import_compose(yaml.safe_dump(document, sort_keys=False), project="demo", env_files=env_files)


def rejection(text: str, *, env_files: dict[str, str] | None = None) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        import_compose(text, env_files=env_files)
    return caught.value


def service_rejection(service: dict[str, Any], **top_level: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        import_service(service, **top_level)
    return caught.value


# The whole stack file.


def test_stack_file_becomes_three_applications() -> None:
    result = import_compose(STACK, project="shop", env_files={"./worker.env": WORKER_ENV})

    web = {
        "name": "web",
        "project": "shop",
        "image": "registry.example.com/shop/web:1.4.2",
        "replicas": 3,
        "ports": [
            {"target": 80, "published": 8080, "protocol": "tcp", "mode": "ingress"},
            {"target": 443, "published": 8443, "protocol": "tcp", "mode": "host"},
        ],
        "placement": {
            "constraints": ["node.role==worker"],
            "preferences": ["node.labels.zone"],
            "maxReplicasPerNode": 2,
        },
        "resources": {
            "limits": {"cpus": 0.5, "memoryBytes": 268435456},
            "reservations": {"cpus": 0.1, "memoryBytes": 67108864},
        },
        "healthcheck": {
            "test": ["CMD-SHELL", "curl -fsS http://localhost/healthz"],
            "intervalSeconds": 10.0,
            "timeoutSeconds": 5.0,
            "retries": 3,
            "startPeriodSeconds": 90.0,
        },
        "strategy": {
            "type": "rolling",
            "maxUnavailable": 1,
            "maxSurge": 1,
            "updateDelay": "10s",
            "rollbackOnFailure": True,
        },
    }
    worker = {
        "name": "queue-worker",
        "project": "shop",
        "image": "registry.example.com/shop/worker:1.4.2",
        "command": ["python", "-m", "shop.worker", "--queue", "orders high"],
        "replicas": 2,
        "env": {"LOG_LEVEL": "debug", "QUEUE_URL": "amqp://mq:5672", "CONCURRENCY": "4"},
    }
    db = {
        "name": "db",
        "project": "shop",
        "image": "postgres:16",
        "env": {"POSTGRES_PASSWORD_FILE": "/run/secrets/db_password"},
        "secrets": [{"name": "db_password", "target": "db_password"}],
        "volumes": [
            {
                "name": "dbdata",
                "target": "/var/lib/postgresql/data",
                "readOnly": False,
                "driver": "local",
                "driverOptions": {"type": "nfs", "o": "addr=10.0.0.5,rw", "device": ":/exports/shop-db"},
            }
        ],
    }
    assert result.applications == [web, worker, db]
    assert list(result.applications[0]) == [
        "name", "project", "image", "replicas", "ports", "placement", "resources", "healthcheck", "strategy",
    ]  # fmt: skip
    assert result.unsupported == [
        "version",
        "name",
        "x-logging",
        "services.web.ports[2]",
        "services.web.deploy.update_config.monitor",
        "services.web.logging",
        "services.web.depends_on",
        "services.queue_worker.deploy.restart_policy",
        "services.db.volumes[1]",
        "services.db.cap_add",
        "networks",
    ]


def test_stack_file_warnings_explain_omissions() -> None:
    result = import_compose(STACK, project="shop", env_files={"./worker.env": WORKER_ENV})

    assert len(result.warnings) == 3
    assert result.warnings[0].startswith("Port services.web.ports[2] is bound to host address 127.0.0.1")
    assert result.warnings[1].startswith("Bind mount services.db.volumes[1] of ./init.sql was not imported")
    assert "one host's file system" in result.warnings[1]
    assert result.warnings[2].startswith("Secret db_password was imported without a value")
    assert "Supply its value when you create the application" in result.warnings[2]


# Names and top-level keys.


@pytest.mark.parametrize(
    ("service", "name"),
    [("web", "web"), ("Web_App", "web-app"), ("api2", "api2"), ("a", "a"), ("x" * 63, "x" * 63)],
)
def test_service_name_becomes_app_name(service: str, name: str) -> None:
    result = import_compose(f"services:\n  {service}:\n    image: nginx\n")

    assert result.applications[0]["name"] == name


@pytest.mark.parametrize("service", ["api.v1", "_web", "web_", "x" * 64, "café"])
def test_non_dns_service_name_rejected(service: str) -> None:
    error = rejection(f"services:\n  {service}:\n    image: nginx\n")

    assert error.field == f"services.{service}"
    assert "Rename the service" in error.message


def test_colliding_application_names_rejected() -> None:
    error = rejection("services:\n  web_app:\n    image: nginx\n  web-app:\n    image: nginx\n")

    assert error.field == "services.web-app"
    assert "web_app and web-app both become application web-app" in error.message


def test_project_defaults_to_default() -> None:
    result = import_compose("services:\n  web:\n    image: nginx\n")

    assert result.applications == [{"name": "web", "project": "default", "image": "nginx"}]
    assert result.unsupported == []
    assert result.warnings == []


def test_top_level_keys_listed_in_file_order() -> None:
    text = (
        "version: '3.8'\nx-defaults: {restart: always}\nservices:\n  web:\n    image: nginx\n"
        "configs:\n  site: {file: ./site.conf}\nnetworks: {front: {}}\ninclude: [other.yml]\n"
    )

    result = import_compose(text)

    assert result.unsupported == ["version", "x-defaults", "configs", "networks", "include"]


@pytest.mark.parametrize(
    "key", ["build", "cap_add", "networks", "depends_on", "restart", "labels", "logging", "configs", "x-team"]
)
def test_unsupported_service_key_listed(key: str) -> None:
    result = import_service({key: ["anything"]})

    assert result.unsupported == [f"services.app.{key}"]
    assert result.applications == [{"name": "app", "project": "demo", "image": "nginx:1.27"}]


def test_yaml_merge_keys_are_resolved() -> None:
    text = (
        "x-common: &common\n  image: nginx:1.27\n  environment: {TZ: UTC}\n"
        "services:\n  web:\n    <<: *common\n    command: [nginx, -g, daemon off;]\n"
    )

    result = import_compose(text)

    assert result.applications[0]["env"] == {"TZ": "UTC"}
    assert result.applications[0]["command"] == ["nginx", "-g", "daemon off;"]
    assert result.unsupported == ["x-common"]


# command


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("nginx -g 'daemon off;'", ["nginx", "-g", "daemon off;"]),
        ('sh -c "echo one && echo two"', ["sh", "-c", "echo one && echo two"]),
        ("sleep   10", ["sleep", "10"]),
        (["sleep", 10], ["sleep", "10"]),
        (["sh", "-c", "echo $$HOME"], ["sh", "-c", "echo $$HOME"]),
        ("", []),
    ],
)
def test_command_is_split_like_compose(command: object, expected: list[str]) -> None:
    result = import_service({"command": command})

    assert result.applications[0]["command"] == expected


def test_command_with_unclosed_quote_rejected() -> None:
    error = service_rejection({"command": "echo 'unclosed"})

    assert error.field == "services.app.command"
    assert "Fix its quoting" in error.message


def test_command_mapping_rejected() -> None:
    error = service_rejection({"command": {"run": "x"}})

    assert error.field == "services.app.command"


# environment and env_file


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        (["A=1", "B=two words", "C=", "D=x=y"], {"A": "1", "B": "two words", "C": "", "D": "x=y"}),
        (['Q="kept"'], {"Q": '"kept"'}),
        ({"A": 1, "B": 2.5, "C": True, "D": False, "E": "text", "F": ""},
         {"A": "1", "B": "2.5", "C": "true", "D": "false", "E": "text", "F": ""}),
    ],
)  # fmt: skip
def test_environment_values_become_strings(environment: object, expected: dict[str, str]) -> None:
    result = import_service({"environment": environment})

    assert result.applications[0]["env"] == expected
    assert result.unsupported == []


@pytest.mark.parametrize("environment", [["HOME", "A=1"], {"HOME": None, "A": "1"}])
def test_environment_variable_without_value_listed(environment: object) -> None:
    result = import_service({"environment": environment})

    assert result.applications[0]["env"] == {"A": "1"}
    assert result.unsupported == ["services.app.environment.HOME"]
    assert len(result.warnings) == 1
    assert "Variable HOME of service app has no value" in result.warnings[0]
    assert "shell environment" in result.warnings[0]


@pytest.mark.parametrize(
    ("environment", "field"),
    [
        (["=value"], "services.app.environment"),
        ({"A": ["list"]}, "services.app.environment.A"),
        ("A=1", "services.app.environment"),
    ],
)
def test_invalid_environment_rejected(environment: object, field: str) -> None:
    error = service_rejection({"environment": environment})

    assert error.field == field


def test_environment_overrides_env_file() -> None:
    text = (
        "services:\n  app:\n    image: nginx\n    environment: {A: from-environment}\n    env_file: app.env\n"
    )

    result = import_compose(text, env_files={"app.env": "A=from-file\nB=from-file\n"})

    assert result.applications[0]["env"] == {"A": "from-environment", "B": "from-file"}


def test_later_env_file_overrides_earlier() -> None:
    result = import_service(
        {"env_file": ["base.env", "prod.env"]},
        env_files={"base.env": "A=base\nB=base\n", "prod.env": "B=prod\n"},
    )

    assert result.applications[0]["env"] == {"A": "base", "B": "prod"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("A=1\n\n# comment\n  # indented comment\nB=2\n", {"A": "1", "B": "2"}),
        ("A=\"double\"\nB='single'\nC=''\nD=\"a 'b'\"\n",
         {"A": "double", "B": "single", "C": "", "D": "a 'b'"}),
        ("A= padded \nB=x=y\nC=\n", {"A": "padded", "B": "x=y", "C": ""}),
        ("export A=1\n", {"A": "1"}),
        ("A=\"a \\\"b\\\"\"\n", {"A": 'a \\"b\\"'}),
        ("A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
    ],
)  # fmt: skip
def test_env_file_lines_parsed_as_key_value(content: str, expected: dict[str, str]) -> None:
    result = import_service({"env_file": "app.env"}, env_files={"app.env": content})

    assert result.applications[0]["env"] == expected
    assert result.warnings == []


def test_env_file_malformed_line_warned() -> None:
    result = import_service({"env_file": "app.env"}, env_files={"app.env": "A=1\nHOME\nnot valid s3cr3t\n"})

    assert result.applications[0]["env"] == {"A": "1"}
    assert result.warnings[0].startswith(
        "Line 2 of env_file app.env of service app names HOME without a value"
    )
    assert result.warnings[1] == "Line 3 of env_file app.env of service app is not KEY=VALUE and was skipped."
    assert all("s3cr3t" not in warning for warning in result.warnings)


@pytest.mark.parametrize(
    ("content", "expected", "warning"),
    [
        ("A=1 # port\n", "1 # port", "has '#' in an unquoted value"),
        ("A=s3cr3t#x\n", "s3cr3t#x", "has '#' in an unquoted value"),
        ('A="s3cr3t\n', '"s3cr3t', "opens a quote that it does not close"),
        ("A='s3cr3t\"\n", "'s3cr3t\"", "opens a quote that it does not close"),
        ('A="\n', '"', "opens a quote that it does not close"),
    ],
)
def test_env_file_value_unlike_compose_warned(content: str, expected: str, warning: str) -> None:
    result = import_service({"env_file": "app.env"}, env_files={"app.env": content})

    assert result.applications[0]["env"] == {"A": expected}
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(f"Line 1 of env_file app.env of service app {warning}")
    assert "s3cr3t" not in result.warnings[0]


def test_missing_env_file_rejected_with_its_name() -> None:
    text = "services:\n  worker:\n    image: app\n    env_file: [./common.env, ./worker.env]\n"

    error = rejection(text, env_files={"./common.env": "A=1\n"})

    assert error.field == "services.worker.env_file"
    assert "env_file ./worker.env of service worker was not supplied" in error.message


def test_optional_env_file_that_is_missing_warned() -> None:
    result = import_service(
        {"env_file": [{"path": "base.env"}, {"path": "local.env", "required": False}]},
        env_files={"base.env": "A=1\n"},
    )

    assert result.applications[0]["env"] == {"A": "1"}
    assert result.warnings == [
        "The optional env_file local.env of service app was not supplied, "
        "so none of its variables were imported."
    ]


def test_env_file_format_listed() -> None:
    result = import_service({"env_file": [{"path": "a.env", "format": "raw"}]}, env_files={"a.env": "A=1\n"})

    assert result.unsupported == ["services.app.env_file[0].format"]


# ports


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        ("8080:80", {"target": 80, "published": 8080, "protocol": "tcp", "mode": "ingress"}),
        ("80", {"target": 80, "protocol": "tcp", "mode": "ingress"}),
        (80, {"target": 80, "protocol": "tcp", "mode": "ingress"}),
        ("5353:53/udp", {"target": 53, "published": 5353, "protocol": "udp", "mode": "ingress"}),
        ("9000:9000/sctp", {"target": 9000, "published": 9000, "protocol": "sctp", "mode": "ingress"}),
        ("0.0.0.0:8080:80", {"target": 80, "published": 8080, "protocol": "tcp", "mode": "ingress"}),
        ({"target": 80, "published": 8080},
         {"target": 80, "published": 8080, "protocol": "tcp", "mode": "ingress"}),
        ({"target": 80, "published": "8080", "protocol": "udp", "mode": "host"},
         {"target": 80, "published": 8080, "protocol": "udp", "mode": "host"}),
        ({"target": 80}, {"target": 80, "protocol": "tcp", "mode": "ingress"}),
    ],
)  # fmt: skip
def test_port_imported(port: object, expected: dict[str, Any]) -> None:
    result = import_service({"ports": [port]})

    assert result.applications[0]["ports"] == [expected]
    assert result.unsupported == []
    assert result.warnings == []


@pytest.mark.parametrize(
    ("port", "reason"),
    [
        ("127.0.0.1:8080:80/udp", "bound to host address 127.0.0.1"),
        ("127.0.0.1::80", "bound to host address 127.0.0.1"),
        ("[::1]:8080:80", "bound to host address ::1"),
        ({"target": 80, "published": 8080, "host_ip": "10.0.0.1"}, "bound to host address 10.0.0.1"),
        ("8000-8010:80", "is a range"),
        ("8000-8001:8000-8001", "is a range"),
        ("3000-3005", "is a range"),
        ({"target": 80, "published": "8000-8010"}, "is a range"),
    ],
)
def test_port_not_importable_listed_with_reason(port: object, reason: str) -> None:
    result = import_service({"ports": ["8080:80", port]})

    assert result.applications[0]["ports"] == [
        {"target": 80, "published": 8080, "protocol": "tcp", "mode": "ingress"}
    ]
    assert result.unsupported == ["services.app.ports[1]"]
    assert len(result.warnings) == 1
    assert reason in result.warnings[0]


def test_host_bound_port_never_widened() -> None:
    result = import_service({"ports": ["127.0.0.1:5432:5432"]})

    assert result.applications[0]["ports"] == []
    assert "does not publish it at all" in result.warnings[0]


def test_long_port_extra_keys_listed() -> None:
    result = import_service({"ports": [{"target": 80, "name": "http", "app_protocol": "http"}]})

    assert result.applications[0]["ports"] == [{"target": 80, "protocol": "tcp", "mode": "ingress"}]
    assert result.unsupported == ["services.app.ports[0].name", "services.app.ports[0].app_protocol"]


@pytest.mark.parametrize(
    ("port", "field"),
    [
        ("http", "services.app.ports[0]"),
        ("70000:80", "services.app.ports[0]"),
        ("0:80", "services.app.ports[0]"),
        ("8080:80/icmp", "services.app.ports[0]"),
        ("1:2:3:4", "services.app.ports[0]"),
        ("[::1:80:80", "services.app.ports[0]"),
        ({"published": 8080}, "services.app.ports[0].target"),
        ({"target": 80, "mode": "bridge"}, "services.app.ports[0].mode"),
        ({"target": 80, "protocol": "icmp"}, "services.app.ports[0].protocol"),
        ({"target": True}, "services.app.ports[0].target"),
        (["8080:80"], "services.app.ports[0]"),
    ],
)
def test_invalid_port_rejected(port: object, field: str) -> None:
    error = service_rejection({"ports": [port]})

    assert error.field == field


# volumes


DATA = {"data": {"driver": "local", "driver_opts": {"type": "none", "o": "bind", "device": "/srv/data"}}}
DATA_OPTIONS = {"type": "none", "o": "bind", "device": "/srv/data"}


@pytest.mark.parametrize(
    ("volume", "read_only", "unsupported"),
    [
        ("data:/data", False, []),
        ("data:/data:ro", True, []),
        ("data:/data:rw", False, []),
        ("data:/data:ro,nocopy", True, ["services.app.volumes[0].volume.nocopy"]),
        ("data:/data:cached", False, ["services.app.volumes[0].consistency"]),
        ({"type": "volume", "source": "data", "target": "/data"}, False, []),
        ({"type": "volume", "source": "data", "target": "/data", "read_only": True}, True, []),
        ({"type": "volume", "source": "data", "target": "/data", "volume": {"nocopy": True, "subpath": "x"}},
         False, ["services.app.volumes[0].volume.nocopy", "services.app.volumes[0].volume.subpath"]),
    ],
)  # fmt: skip
def test_named_volume_imported_with_its_driver(
    volume: object, read_only: bool, unsupported: list[str]
) -> None:
    result = import_service({"volumes": [volume]}, volumes=DATA)

    assert result.applications[0]["volumes"] == [
        {
            "name": "data",
            "target": "/data",
            "readOnly": read_only,
            "driver": "local",
            "driverOptions": DATA_OPTIONS,
        }
    ]
    assert result.unsupported == unsupported


def test_bare_volume_definition_uses_local_driver() -> None:
    result = import_service({"volumes": ["cache:/cache"]}, volumes={"cache": None})

    assert result.applications[0]["volumes"] == [
        {"name": "cache", "target": "/cache", "readOnly": False, "driver": "local", "driverOptions": {}}
    ]


def test_volume_driver_options_become_strings() -> None:
    volumes = {"data": {"driver": "rexray/ebs", "driver_opts": {"size": 20, "encrypted": True}}}

    result = import_service({"volumes": ["data:/data"]}, volumes=volumes)

    volume = result.applications[0]["volumes"][0]
    assert volume["driver"] == "rexray/ebs"
    assert volume["driverOptions"] == {"size": "20", "encrypted": "true"}


@pytest.mark.parametrize(
    "volume",
    [
        "./config:/etc/app",
        "/srv/config:/etc/app:ro",
        "~/config:/etc/app",
        "../shared:/shared:z",
        {"type": "bind", "source": "./config", "target": "/etc/app"},
    ],
)
def test_bind_mount_listed_with_reason(volume: object) -> None:
    result = import_service({"volumes": [volume]})

    assert result.applications[0]["volumes"] == []
    assert result.unsupported == ["services.app.volumes[0]"]
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("Bind mount services.app.volumes[0] of ")
    assert "ties the application to one host's file system" in result.warnings[0]


@pytest.mark.parametrize(
    "volume",
    [
        {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 1000}},
        {"type": "npipe", "source": r"\\.\pipe\docker_engine", "target": r"\\.\pipe\docker_engine"},
        {"type": "cluster", "source": "group:data", "target": "/data"},
    ],
)
def test_mount_type_other_than_volume_listed(volume: object) -> None:
    result = import_service({"volumes": [volume]})

    assert result.applications[0]["volumes"] == []
    assert result.unsupported == ["services.app.volumes[0]"]


@pytest.mark.parametrize("volume", ["/data", {"type": "volume", "target": "/data"}])
def test_anonymous_volume_listed_with_reason(volume: object) -> None:
    result = import_service({"volumes": [volume]})

    assert result.unsupported == ["services.app.volumes[0]"]
    assert result.warnings[0].startswith("Anonymous volume services.app.volumes[0] was not imported")


def test_volume_definition_extra_keys_listed() -> None:
    volumes = {
        "data": {"driver": "local", "name": "shop_data", "external": False, "labels": {"team": "db"}},
        "unused": {"driver": "local"},
    }

    result = import_service({"volumes": ["data:/data"]}, volumes=volumes)

    assert result.unsupported == [
        "volumes.data.name",
        "volumes.data.external",
        "volumes.data.labels",
        "volumes.unused",
    ]


@pytest.mark.parametrize(
    ("volume", "field"),
    [
        ("missing:/data", "services.app.volumes[0]"),
        ("data:relative", "services.app.volumes[0]"),
        ("data:/data:shared", "services.app.volumes[0]"),
        ("data:/data:ro:extra", "services.app.volumes[0]"),
        ({"source": "data", "target": "/data"}, "services.app.volumes[0].type"),
        ({"type": "volume", "source": "data", "target": "/data", "read_only": "yes"},
         "services.app.volumes[0].read_only"),
    ],
)  # fmt: skip
def test_invalid_volume_rejected(volume: object, field: str) -> None:
    error = service_rejection({"volumes": [volume]}, volumes=DATA)

    assert error.field == field


def test_undefined_volume_message_names_fix() -> None:
    error = service_rejection({"volumes": ["missing:/data"]})

    assert "volume missing, which is not defined" in error.message
    assert "top-level volumes key" in error.message


# deploy: replicas, mode, update_config


@pytest.mark.parametrize(("replicas", "expected"), [(0, 0), (1, 1), (5, 5), ("3", 3)])
def test_replicas_imported(replicas: object, expected: int) -> None:
    result = import_service({"deploy": {"replicas": replicas}})

    assert result.applications[0]["replicas"] == expected


@pytest.mark.parametrize("replicas", [-1, "two", 1.5, True, None])
def test_invalid_replicas_rejected(replicas: object) -> None:
    error = service_rejection({"deploy": {"replicas": replicas}})

    assert error.field == "services.app.deploy.replicas"


def test_replicated_mode_is_the_default() -> None:
    result = import_service({"deploy": {"mode": "replicated", "replicas": 2}})

    assert result.unsupported == []
    assert result.warnings == []


@pytest.mark.parametrize("mode", ["global", "global-job", "replicated-job"])
def test_other_deploy_mode_listed(mode: str) -> None:
    result = import_service({"deploy": {"mode": mode}})

    assert result.unsupported == ["services.app.deploy.mode"]
    assert result.warnings == [
        f"services.app.deploy.mode is {mode}, which HostCraft does not support, so "
        "the service was imported as a replicated application."
    ]


@pytest.mark.parametrize(
    ("update_config", "strategy"),
    [
        ({"parallelism": 2}, {"type": "rolling", "maxUnavailable": 2}),
        ({"order": "start-first"}, {"type": "rolling", "maxSurge": 1}),
        ({"order": "stop-first"}, {"type": "rolling", "maxSurge": 0}),
        ({"delay": "1m30s"}, {"type": "rolling", "updateDelay": "1m30s"}),
        ({"failure_action": "rollback"}, {"type": "rolling", "rollbackOnFailure": True}),
        ({"failure_action": "pause"}, {"type": "rolling", "rollbackOnFailure": False}),
        ({"failure_action": "continue"}, {"type": "rolling", "rollbackOnFailure": False}),
        ({}, {"type": "rolling"}),
    ],
)
def test_update_config_becomes_strategy(update_config: dict[str, Any], strategy: dict[str, Any]) -> None:
    result = import_service({"deploy": {"update_config": update_config}})

    assert result.applications[0]["strategy"] == strategy
    assert result.unsupported == []


def test_update_monitor_keys_listed() -> None:
    result = import_service({"deploy": {"update_config": {"monitor": "30s", "max_failure_ratio": 0.2}}})

    assert result.unsupported == [
        "services.app.deploy.update_config.monitor",
        "services.app.deploy.update_config.max_failure_ratio",
    ]


def test_update_parallelism_zero_listed() -> None:
    result = import_service({"deploy": {"update_config": {"parallelism": 0}}})

    assert result.applications[0]["strategy"] == {"type": "rolling"}
    assert result.unsupported == ["services.app.deploy.update_config.parallelism"]
    assert "updates every task at once" in result.warnings[0]


@pytest.mark.parametrize(
    ("update_config", "field"),
    [
        ({"order": "random"}, "services.app.deploy.update_config.order"),
        ({"failure_action": "retry"}, "services.app.deploy.update_config.failure_action"),
        ({"delay": 10}, "services.app.deploy.update_config.delay"),
        ({"delay": "ten seconds"}, "services.app.deploy.update_config.delay"),
        ({"parallelism": -1}, "services.app.deploy.update_config.parallelism"),
    ],
)
def test_invalid_update_config_rejected(update_config: dict[str, Any], field: str) -> None:
    error = service_rejection({"deploy": {"update_config": update_config}})

    assert error.field == field


@pytest.mark.parametrize("key", ["restart_policy", "rollback_config", "labels", "endpoint_mode"])
def test_unsupported_deploy_key_listed(key: str) -> None:
    result = import_service({"deploy": {key: {"anything": 1}}})

    assert result.unsupported == [f"services.app.deploy.{key}"]


# deploy: resources and placement


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("512M", 536870912),
        ("1g", 1073741824),
        ("256m", 268435456),
        ("1k", 1024),
        ("1.5g", 1610612736),
        ("512mb", 536870912),
        ("2GiB", 2147483648),
        ("3Gi", 3221225472),
        ("64 m", 67108864),
        ("100b", 100),
        ("100", 100),
        (1048576, 1048576),
    ],
)
def test_memory_size_becomes_bytes(memory: object, expected: int) -> None:
    result = import_service({"deploy": {"resources": {"limits": {"memory": memory}}}})

    assert result.applications[0]["resources"] == {"limits": {"memoryBytes": expected}}


@pytest.mark.parametrize(("cpus", "expected"), [("0.5", 0.5), (0.25, 0.25), (2, 2.0), ("1", 1.0)])
def test_cpus_become_number(cpus: object, expected: float) -> None:
    result = import_service({"deploy": {"resources": {"reservations": {"cpus": cpus}}}})

    assert result.applications[0]["resources"] == {"reservations": {"cpus": expected}}


@pytest.mark.parametrize(
    ("amounts", "field"),
    [
        ({"memory": "12X"}, "services.app.deploy.resources.limits.memory"),
        ({"memory": "-1g"}, "services.app.deploy.resources.limits.memory"),
        ({"memory": 0}, "services.app.deploy.resources.limits.memory"),
        ({"memory": "0m"}, "services.app.deploy.resources.limits.memory"),
        ({"memory": 1.5}, "services.app.deploy.resources.limits.memory"),
        ({"cpus": "half"}, "services.app.deploy.resources.limits.cpus"),
        ({"cpus": 0}, "services.app.deploy.resources.limits.cpus"),
        ({"cpus": "nan"}, "services.app.deploy.resources.limits.cpus"),
        ({"cpus": True}, "services.app.deploy.resources.limits.cpus"),
    ],
)
def test_invalid_resources_rejected(amounts: dict[str, Any], field: str) -> None:
    error = service_rejection({"deploy": {"resources": {"limits": amounts}}})

    assert error.field == field


def test_resource_extra_keys_listed() -> None:
    resources = {
        "limits": {"cpus": "1", "pids": 100},
        "reservations": {"devices": [{"capabilities": ["gpu"]}], "generic_resources": []},
    }

    result = import_service({"deploy": {"resources": resources}})

    assert result.applications[0]["resources"] == {"limits": {"cpus": 1.0}}
    assert result.unsupported == [
        "services.app.deploy.resources.limits.pids",
        "services.app.deploy.resources.reservations.devices",
        "services.app.deploy.resources.reservations.generic_resources",
    ]


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        ({"constraints": ["node.role==worker", "node.labels.disk == ssd"]},
         {"constraints": ["node.role==worker", "node.labels.disk == ssd"]}),
        ({"preferences": [{"spread": "node.labels.zone"}, {"spread": "node.labels.rack"}]},
         {"preferences": ["node.labels.zone", "node.labels.rack"]}),
        ({"max_replicas_per_node": 1}, {"maxReplicasPerNode": 1}),
        ({"max_replicas_per_node": 0, "constraints": []}, {"constraints": []}),
    ],
)  # fmt: skip
def test_placement_imported(placement: dict[str, Any], expected: dict[str, Any]) -> None:
    result = import_service({"deploy": {"placement": placement}})

    assert result.applications[0]["placement"] == expected
    assert result.unsupported == []


def test_invalid_placement_preference_rejected() -> None:
    error = service_rejection({"deploy": {"placement": {"preferences": [{"pack": "node.labels.zone"}]}}})

    assert error.field == "services.app.deploy.placement.preferences[0]"
    assert "spread: node.labels.<label>" in error.message


def test_placement_extra_keys_listed() -> None:
    placement = {"constraints": ["node.role==worker"], "platforms": [{"os": "linux"}]}

    result = import_service({"deploy": {"placement": placement}})

    assert result.unsupported == ["services.app.deploy.placement.platforms"]


# healthcheck


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1.5m", 90.0),
        ("2h45m", 9900.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("1500us", 0.0015),
        ("2d", 172800.0),
        ("1w", 604800.0),
    ],
)
def test_healthcheck_duration_becomes_seconds(duration: str, seconds: float) -> None:
    result = import_service({"healthcheck": {"interval": duration}})

    assert result.applications[0]["healthcheck"]["intervalSeconds"] == pytest.approx(seconds)


@pytest.mark.parametrize("duration", ["10", 10, "ten", "10x", "-5s", "1m 30s", ""])
def test_invalid_healthcheck_duration_rejected(duration: object) -> None:
    error = service_rejection({"healthcheck": {"timeout": duration}})

    assert error.field == "services.app.healthcheck.timeout"
    assert "write it like 10s, 1m30s or 500ms" in error.message


@pytest.mark.parametrize(
    ("healthcheck", "expected"),
    [
        ({"test": "curl -f http://localhost/"}, {"test": ["CMD-SHELL", "curl -f http://localhost/"]}),
        ({"test": ["CMD", "pg_isready", "-U", "app"]}, {"test": ["CMD", "pg_isready", "-U", "app"]}),
        ({"test": ["CMD-SHELL", "exit 0"]}, {"test": ["CMD-SHELL", "exit 0"]}),
        ({"test": ["NONE"]}, {"test": ["NONE"]}),
        ({"disable": True}, {"test": ["NONE"]}),
        ({"disable": False, "retries": 5}, {"retries": 5}),
        ({"retries": 3, "start_period": "40s", "timeout": "3s"},
         {"timeoutSeconds": 3.0, "retries": 3, "startPeriodSeconds": 40.0}),
    ],
)  # fmt: skip
def test_healthcheck_imported(healthcheck: dict[str, Any], expected: dict[str, Any]) -> None:
    result = import_service({"healthcheck": healthcheck})

    assert result.applications[0]["healthcheck"] == expected


def test_healthcheck_start_interval_listed() -> None:
    result = import_service({"healthcheck": {"test": "true", "start_interval": "5s"}})

    assert result.unsupported == ["services.app.healthcheck.start_interval"]


@pytest.mark.parametrize(
    ("healthcheck", "field"),
    [
        ({"test": ["curl", "-f", "http://localhost/"]}, "services.app.healthcheck.test"),
        ({"test": []}, "services.app.healthcheck.test"),
        ({"test": "true", "disable": True}, "services.app.healthcheck.disable"),
        ({"disable": "yes please"}, "services.app.healthcheck.disable"),
        ({"retries": -1}, "services.app.healthcheck.retries"),
    ],
)
def test_invalid_healthcheck_rejected(healthcheck: dict[str, Any], field: str) -> None:
    error = service_rejection({"healthcheck": healthcheck})

    assert error.field == field


# secrets


def test_secret_references_imported() -> None:
    secrets = {"api_key": {"external": True}, "tls_key": {"file": "./tls.key"}}
    references = ["api_key", {"source": "tls_key", "target": "server.key"}, {"source": "api_key"}]

    result = import_service({"secrets": references}, secrets=secrets)

    assert result.applications[0]["secrets"] == [
        {"name": "api_key", "target": "api_key"},
        {"name": "tls_key", "target": "server.key"},
        {"name": "api_key", "target": "api_key"},
    ]
    assert result.unsupported == []
    assert [warning.split(" was imported")[0] for warning in result.warnings] == [
        "Secret api_key",
        "Secret tls_key",
    ]
    assert all("never reads secret files" in warning for warning in result.warnings)


def test_secret_extra_keys_listed() -> None:
    secrets = {
        "cert": {"file": "./cert.pem", "name": "shop_cert_v2", "labels": {"a": "b"}},
        "unused": {"file": "x"},
    }
    references = [{"source": "cert", "target": "cert.pem", "uid": "103", "gid": "103", "mode": 0o440}]

    result = import_service({"secrets": references}, secrets=secrets)

    assert result.unsupported == [
        "services.app.secrets[0].uid",
        "services.app.secrets[0].gid",
        "services.app.secrets[0].mode",
        "secrets.cert.name",
        "secrets.cert.labels",
        "secrets.unused",
    ]


@pytest.mark.parametrize(
    ("references", "field"),
    [
        (["missing"], "services.app.secrets[0]"),
        ([{"target": "x"}], "services.app.secrets[0].source"),
        ([["nested"]], "services.app.secrets[0]"),
    ],
)
def test_invalid_secret_reference_rejected(references: list[object], field: str) -> None:
    error = service_rejection({"secrets": references}, secrets={"known": {"external": True}})

    assert error.field == field


# interpolation


def test_variable_reference_warned_without_value() -> None:
    result = import_service(
        {"image": "nginx:${TAG:-latest}", "env_file": "app.env"},
        env_files={"app.env": "DB_PASSWORD=pa$$w0rd\n"},
    )

    assert result.applications[0]["image"] == "nginx:${TAG:-latest}"
    assert result.applications[0]["env"] == {"DB_PASSWORD": "pa$$w0rd"}
    assert [warning.split(" contains")[0] for warning in result.warnings] == [
        "The image of service app",
        "The env.DB_PASSWORD of service app",
    ]
    assert all("w0rd" not in warning for warning in result.warnings)


@pytest.mark.parametrize("value", ["price in $", "100$ flat", "a $ b"])
def test_lone_dollar_not_warned(value: str) -> None:
    result = import_service({"environment": {"NOTE": value}})

    assert result.warnings == []


# Files that cannot be imported.


def test_invalid_yaml_rejected_with_line_and_column() -> None:
    error = rejection("services:\n  web:\n    image: nginx\n   ports: [80\n")

    assert error.field == "file"
    assert error.message.startswith("invalid YAML at line 4, column ")


@pytest.mark.parametrize("text", ["", "- web\n- db\n", "just text\n", "42\n"])
def test_non_mapping_file_rejected(text: str) -> None:
    error = rejection(text)

    assert error.field == "file"
    assert "must be a mapping with a services key" in error.message


@pytest.mark.parametrize("text", ["version: '3'\n", "services:\n", "services: {}\n"])
def test_file_without_services_rejected(text: str) -> None:
    error = rejection(text)

    assert error.field == "services"
    assert "defines no services" in error.message


def test_non_mapping_services_rejected() -> None:
    error = rejection("services:\n  - web\n")

    assert error.field == "services"


@pytest.mark.parametrize(
    "text",
    [
        "services:\n  web:\n    build: .\n",
        "services:\n  web:\n    build: {context: ., dockerfile: Dockerfile}\n    ports: ['80']\n",
        "services:\n  web:\n",
        "services:\n  web:\n    image: ''\n",
    ],
)
def test_service_without_image_rejected(text: str) -> None:
    error = rejection(text)

    assert error.field == "services.web.image"
    assert "HostCraft deploys images" in error.message
    assert "push it to a registry" in error.message


def test_non_mapping_service_rejected() -> None:
    error = rejection("services:\n  web: nginx\n")

    assert error.field == "services.web"
    assert error.message == "services.web must be a mapping, not a string"


def test_validation_error_carries_field_in_details() -> None:
    error = rejection("services:\n  web:\n    build: .\n")

    assert error.details == {"field": "services.web.image"}
