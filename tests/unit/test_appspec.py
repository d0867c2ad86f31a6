from __future__ import annotations

import copy
from typing import Any

import pytest

from hostcraft.domain.appspec import AppSpec, Secret, image_reference_problem, validate_application
from hostcraft.domain.strategy import Healthcheck, Strategy
from hostcraft.errors import ValidationError

DIGEST = "sha256:" + "a" * 64
MINIMAL = {"name": "web", "image": "nginx:1.27"}
FULL: dict[str, Any] = {
    "name": "web",
    "project": "shop",
    "region": "eu-west-1",
    "image": "10.77.1.1:5000/hostcraft/webapp:v1",
    "command": ["sh", "-c", "exec web --port 80"],
    "replicas": 3,
    "env": {"KEY": "value with = ; # \n and ünïcode"},
    "secrets": [{"name": "db-password", "value": "s3cret", "target": "db-password"}],
    "volumes": [
        {
            "name": "data",
            "target": "/data",
            "driver": "nfs",
            "driverOptions": {"share": "x"},
            "readOnly": False,
        }
    ],
    "ports": [{"target": 80, "published": 8080, "protocol": "tcp", "mode": "host"}],
    "placement": {
        "constraints": ["node.role==worker"],
        "preferences": ["node.labels.zone"],
        "maxReplicasPerNode": None,
    },
    "resources": {
        "limits": {"cpus": 0.5, "memoryBytes": 268435456},
        "reservations": {"cpus": 0.1, "memoryBytes": 67108864},
    },
    "healthcheck": {
        "test": ["CMD", "true"],
        "intervalSeconds": 10,
        "timeoutSeconds": 5,
        "retries": 3,
        "startPeriodSeconds": 0,
    },
    "strategy": {
        "type": "rolling",
        "maxUnavailable": 1,
        "maxSurge": 1,
        "updateDelay": "10s",
        "rollbackOnFailure": True,
    },
    "endpointMode": "vip",
    "autoRestart": True,
    "autoRollback": True,
    "healthCheckUrl": "https://api.example.com/health",
    "healthCheckIntervalSeconds": 30,
    "healthCheckTimeoutSeconds": 10,
    "maxConsecutiveFailures": 3,
    "healthProbe": {
        "method": "HEAD",
        "expectedStatus": "200,204,301-302",
        "followRedirects": True,
        "bodyContains": "ok",
        "verifyTls": False,
        "successesToResolve": 3,
        "allowLinkLocal": False,
    },
    "recovery": {"stepTimeoutSeconds": 45, "cooldownSeconds": 30, "maxActionsPerHour": 5},
    "slaTarget": 99.95,
    "backupSchedule": "0 */6 * * *",
    "backupRetentionDays": 90,
    "backupTimezone": "Europe/Berlin",
    "backupKeepLast": 7,
    "backupKeepDaily": 14,
    "backupKeepWeekly": 8,
    "backupKeepMonthly": 12,
    "backupQuiesce": "stop",
    "backupDestination": "offsite",
    "backupReplicateTo": ["dr-copy"],
    "backupDatabases": [],
    "dr": None,
}


def document(**changes: Any) -> dict[str, Any]:
    return {**MINIMAL, **changes}


def problems_of(raw: Any, **options: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        validate_application(raw, **options)
    problems: list[dict[str, str]] = caught.value.details["problems"]
    assert caught.value.field == problems[0]["field"]
    return problems


def assert_one_problem(raw: dict[str, Any], field: str, fragment: str) -> None:
    problems = problems_of(raw)
    assert [problem["field"] for problem in problems] == [field]
    assert fragment in problems[0]["message"]


# --- defaults and round trip -----------------------------------------------------------------


def test_minimal_document_gets_defaults() -> None:
    spec = validate_application(MINIMAL)
    assert spec.to_dict() == {
        "name": "web",
        "project": "default",
        "region": None,
        "image": "nginx:1.27",
        "command": None,
        "replicas": 1,
        "env": {},
        "secrets": [],
        "volumes": [],
        "ports": [],
        "placement": {"constraints": [], "preferences": [], "maxReplicasPerNode": None},
        "resources": {
            "limits": {"cpus": None, "memoryBytes": None},
            "reservations": {"cpus": None, "memoryBytes": None},
        },
        "healthcheck": None,
        "strategy": {
            "type": "rolling",
            "maxUnavailable": 1,
            "maxSurge": 1,
            "updateDelay": "10s",
            "rollbackOnFailure": True,
        },
        "endpointMode": "vip",
        "autoRestart": True,
        "autoRollback": True,
        "healthCheckUrl": None,
        "healthCheckIntervalSeconds": 60,
        "healthCheckTimeoutSeconds": 10,
        "maxConsecutiveFailures": 3,
        "healthProbe": {
            "method": "GET",
            "expectedStatus": "200-399",
            "followRedirects": False,
            "bodyContains": None,
            "verifyTls": True,
            "successesToResolve": 2,
            "allowLinkLocal": False,
        },
        "recovery": {"stepTimeoutSeconds": 120, "cooldownSeconds": 60, "maxActionsPerHour": 3},
        "slaTarget": 99.9,
        "backupSchedule": None,
        "backupRetentionDays": 30,
        "backupTimezone": "UTC",
        "backupKeepLast": None,
        "backupKeepDaily": None,
        "backupKeepWeekly": None,
        "backupKeepMonthly": None,
        "backupQuiesce": "none",
        "backupDestination": None,
        "backupReplicateTo": [],
        "backupDatabases": [],
        "dr": None,
    }
    assert spec.service_name == "default_web"
    assert spec.strategy == Strategy()


def test_null_optional_fields_take_defaults() -> None:
    optional = [key for key in FULL if key not in ("name", "image")]
    spec = validate_application(document(**dict.fromkeys(optional)))
    assert spec == validate_application(MINIMAL)


def test_full_document_round_trips() -> None:
    spec = validate_application(copy.deepcopy(FULL))
    expected = copy.deepcopy(FULL)
    expected["secrets"] = [{"name": "db-password", "target": "db-password"}]
    assert spec.to_dict() == expected
    assert spec.secret_values() == {"db-password": "s3cret"}
    assert spec.service_name == "shop_web"


def test_to_dict_validates_again() -> None:
    spec = validate_application(copy.deepcopy(FULL))
    again = validate_application(spec.to_dict(), require_secret_values=False)
    assert again.to_dict() == spec.to_dict()
    assert again.secret_values() == {}
    assert again.secrets == (Secret(name="db-password", target="db-password", value=None),)


def test_secret_value_stays_out_of_repr() -> None:
    spec = validate_application(copy.deepcopy(FULL))
    assert "s3cret" not in repr(spec)
    assert "s3cret" not in str(spec.to_dict())


def test_validation_leaves_document_unchanged() -> None:
    raw = copy.deepcopy(FULL)
    validate_application(raw)
    assert raw == FULL


@pytest.mark.parametrize(
    "value",
    [
        "a=b;c#d\nline2 ünï",
        "value with = ; # \n and ünïcode",
        "",
        "  leading and trailing spaces  ",
        "tab\tcarriage\r\nreturn",
        "emoji 🚀 and 中文",
        "$HOME ${PATH} `date` $(id)",
        "'single' \"double\" \\backslash",
        "x" * 100_000,
    ],
)
def test_env_value_round_trips_exactly(value: str) -> None:
    spec = validate_application(document(env={"VALUE": value}))
    assert spec.env == {"VALUE": value}
    assert spec.to_dict()["env"] == {"VALUE": value}


# --- problem collection ----------------------------------------------------------------------


def test_problems_collected_in_one_error() -> None:
    raw = document(
        name="Web",
        image="Nginx latest",
        replicas=2000,
        env={"MY KEY": "x", "OK": "a\0b"},
        ports=[{"target": 80, "published": 8080}, {"target": 81, "published": 8080}],
        strategy={"updateDelay": "10"},
        extra=True,
    )
    with pytest.raises(ValidationError) as caught:
        validate_application(raw)
    fields = [problem["field"] for problem in caught.value.details["problems"]]
    assert fields == [
        "extra",
        "name",
        "image",
        "replicas",
        "env.MY KEY",
        "env.OK",
        "ports[1].published",
        "strategy.updateDelay",
    ]
    assert caught.value.field == "extra"
    assert caught.value.message.startswith("invalid application: extra: unknown field 'extra'")
    assert caught.value.message.endswith("(7 more in details.problems)")
    assert caught.value.status_code == 422


@pytest.mark.parametrize("raw", [None, [], "web", 3])
def test_document_must_be_an_object(raw: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_application(raw)
    assert "expected a JSON object" in caught.value.message


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        (document(replica=2), "replica", "did you mean 'replicas'?"),
        (document(envs={}), "envs", "did you mean 'env'?"),
        (document(zzz=1), "zzz", "expected one of name, project"),
        (document(ports=[{"target": 80, "publish": 8080}]), "ports[0].publish", "did you mean 'published'?"),
        (
            document(secrets=[{"name": "a", "value": "b", "mode": 1}]),
            "secrets[0].mode",
            "unknown field 'mode'",
        ),
        (
            document(volumes=[{"name": "a", "target": "/a", "size": 1}]),
            "volumes[0].size",
            "unknown field 'size'",
        ),
        (document(placement={"constraint": []}), "placement.constraint", "did you mean 'constraints'?"),
        (document(resources={"limit": {}}), "resources.limit", "did you mean 'limits'?"),
        (
            document(resources={"limits": {"memory": 1}}),
            "resources.limits.memory",
            "did you mean 'memoryBytes'?",
        ),
        (document(healthcheck={"test": ["NONE"], "interval": 5}), "healthcheck.interval", "did you mean"),
        (document(strategy={"delay": "5s"}), "strategy.delay", "unknown field 'delay'"),
    ],
)
def test_unknown_fields_are_problems(raw: dict[str, Any], field: str, fragment: str) -> None:
    assert_one_problem(raw, field, fragment)


# --- name, project, region -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "web", "a-b", "0abc", "web-2", "a" * 40])
def test_name_accepts_dns_labels(name: str) -> None:
    assert validate_application(document(name=name)).name == name


@pytest.mark.parametrize("name", ["", "Web", "-web", "web-", "we_b", "we.b", "wéb", "a" * 64, 1, ["web"]])
def test_name_rejects(name: Any) -> None:
    assert_one_problem(document(name=name), "name", f"invalid name {name!r}: expected a DNS label")


def test_name_is_required() -> None:
    assert_one_problem({"image": "nginx"}, "name", "missing name")


@pytest.mark.parametrize("project", ["Shop", "shop_1", "-shop", ""])
def test_project_rejects(project: str) -> None:
    assert_one_problem(document(project=project), "project", "expected a DNS label")


def test_service_name_fits_swarm_limit() -> None:
    assert (
        validate_application(document(project="p" * 30, name="n" * 32)).service_name
        == "p" * 30 + "_" + "n" * 32
    )
    assert_one_problem(
        document(project="p" * 31, name="n" * 32),
        "name",
        "is 64 characters long, more than the 63 Swarm allows, so shorten the name or the project",
    )


@pytest.mark.parametrize(
    ("region", "valid"),
    [("eu-west-1", True), ("us1", True), ("EU", False), ("-eu", False), ("a" * 33, False)],
)
def test_region_is_a_region_code(region: str, valid: bool) -> None:
    if valid:
        assert validate_application(document(region=region)).region == region
    else:
        assert_one_problem(document(region=region), "region", "expected a region code")


# --- image -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "nginx",
        "nginx:1.27",
        "nginx:latest",
        "library/nginx:1.27-alpine",
        "10.77.1.1:5000/hostcraft/webapp:v1",
        "localhost:5000/app",
        "localhost/app",
        "ghcr.io/owner/repo:v1.2.3",
        f"ghcr.io/owner/repo@{DIGEST}",
        f"registry.example.com/a/b/c:tag@{DIGEST}",
        "Registry.Example.com/app",
        "[::1]:5000/app",
        "my_app__x",
        "a-b--c.d",
        "app:_underscore",
        "app:" + "t" * 128,
    ],
)
def test_image_accepts_docker_references(image: str) -> None:
    assert image_reference_problem(image) is None
    assert validate_application(document(image=image)).image == image


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        ("nginx latest", "cannot contain whitespace"),
        ("nginx\t", "cannot contain whitespace"),
        ("Nginx", "repository 'Nginx' must be lowercase"),
        ("hostcraft/WebApp:v1", "repository 'hostcraft/WebApp' must be lowercase"),
        ("ghcr.io/Owner/repo", "repository 'Owner/repo' must be lowercase"),
        ("MyOrg/app", "repository 'MyOrg/app' must be lowercase"),
        ("app:", "tag '' must be 1 to 128"),
        ("app:-bad", "tag '-bad'"),
        ("app:.bad", "tag '.bad'"),
        ("app:" + "t" * 129, "must be 1 to 128"),
        ("app:ünï", "tag 'ünï'"),
        ("app@sha256:abc", "digest 'sha256:abc' must be 'sha256:' followed by 64"),
        ("app@md5:" + "a" * 32, "digest"),
        ("app@sha256:" + "A" * 64, "digest"),
        (f"app@{DIGEST}@{DIGEST}", "digest"),
        ("/app", "repository path component ''"),
        ("app/", "repository path component ''"),
        ("a//b", "repository path component ''"),
        ("-app", "repository path component '-app'"),
        ("app_", "repository path component 'app_'"),
        ("app___x", "repository path component 'app___x'"),
        ("registry:abc/app", "registry 'registry:abc' is not a valid host[:port]"),
        ("-registry.io/app", "registry '-registry.io'"),
        (":tag", "the repository name is missing"),
        ("a/" * 130 + "b", "longer than 255 characters"),
    ],
)
def test_image_rejects(image: str, fragment: str) -> None:
    problem = image_reference_problem(image)
    assert problem is not None
    assert fragment in problem
    assert_one_problem(document(image=image), "image", f"invalid image {image!r}: ")


@pytest.mark.parametrize("image", [None, ""])
def test_image_is_required(image: Any) -> None:
    assert_one_problem(document(image=image), "image", "missing image")


def test_image_must_be_a_string() -> None:
    assert_one_problem(document(image=["nginx"]), "image", "expected a string")


# --- command and replicas --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"), [(None, None), ([], ()), (["sh", "-c", "a; b"], ("sh", "-c", "a; b"))]
)
def test_command_accepts(command: Any, expected: Any) -> None:
    assert validate_application(document(command=command)).command == expected


@pytest.mark.parametrize(
    ("command", "field", "fragment"),
    [
        ("sh -c 'echo'", "command", "expected a list"),
        (["sh", 1], "command[1]", "expected a string"),
        (["sh", "a\0b"], "command[1]", "NUL character"),
    ],
)
def test_command_rejects(command: Any, field: str, fragment: str) -> None:
    assert_one_problem(document(command=command), field, fragment)


@pytest.mark.parametrize("replicas", [0, 1, 7, 1000])
def test_replicas_accepts(replicas: int) -> None:
    assert validate_application(document(replicas=replicas)).replicas == replicas


@pytest.mark.parametrize("replicas", [-1, 1001, 1.5, 2.0, True, "3"])
def test_replicas_rejects(replicas: Any) -> None:
    assert_one_problem(document(replicas=replicas), "replicas", "expected an integer from 0 to 1000")


# --- env -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["A", "_X", "a", "A1_B", "PATH", "lower_case"])
def test_env_accepts_names(key: str) -> None:
    assert validate_application(document(env={key: "v"})).env == {key: "v"}


@pytest.mark.parametrize(
    ("env", "field", "fragment"),
    [
        ({"MY KEY": "v"}, "env.MY KEY", "invalid environment variable name 'MY KEY'"),
        ({"1ABC": "v"}, "env.1ABC", "not starting with a digit"),
        ({"A-B": "v"}, "env.A-B", "invalid environment variable name"),
        ({"A=B": "v"}, "env.A=B", "invalid environment variable name"),
        ({"": "v"}, "env.", "invalid environment variable name ''"),
        ({"ÜBER": "v"}, "env.ÜBER", "invalid environment variable name"),
        ({"PORT": 8080}, "env.PORT", "expected a string, so quote numbers and booleans"),
        ({"DEBUG": True}, "env.DEBUG", "expected a string"),
        ({"EMPTY": None}, "env.EMPTY", "expected a string"),
        ({"LIST": ["a"]}, "env.LIST", "expected a string"),
        ({"NUL": "a\0b"}, "env.NUL", "cannot contain a NUL character"),
        ({1: "v"}, "env.1", "invalid environment variable name 1"),
        (["A=B"], "env", "expected an object"),
    ],
)
def test_env_rejects(env: Any, field: str, fragment: str) -> None:
    assert_one_problem(document(env=env), field, fragment)


# --- secrets ---------------------------------------------------------------------------------


def test_secret_target_defaults_to_name() -> None:
    spec = validate_application(document(secrets=[{"name": "api.key", "value": "k"}]))
    assert spec.secrets == (Secret(name="api.key", target="api.key", value="k"),)
    assert spec.to_dict()["secrets"] == [{"name": "api.key", "target": "api.key"}]


@pytest.mark.parametrize("target", ["token", "token.txt", "/etc/app/token", "/run/secrets/x"])
def test_secret_target_accepts(target: str) -> None:
    spec = validate_application(document(secrets=[{"name": "s", "value": "v", "target": target}]))
    assert spec.secrets[0].target == target


@pytest.mark.parametrize(
    ("secrets", "field", "fragment"),
    [
        ([{"name": "", "value": "v"}], "secrets[0].name", "invalid secret name ''"),
        ([{"name": "-x", "value": "v"}], "secrets[0].name", "invalid secret name '-x'"),
        ([{"name": "a b", "value": "v"}], "secrets[0].name", "invalid secret name"),
        ([{"name": "a" * 65, "value": "v"}], "secrets[0].name", "1 to 64 letters"),
        ([{"value": "v"}], "secrets[0].name", "invalid secret name None"),
        ([{"name": "s"}], "secrets[0].value", "missing value of secret 's'"),
        ([{"name": "s", "value": ""}], "secrets[0].value", "missing value of secret 's'"),
        ([{"name": "s", "value": 5}], "secrets[0].value", "expected a string"),
        ([{"name": "s", "value": "x" * (500 * 1024 + 1)}], "secrets[0].value", "more than the 512000 bytes"),
        (
            [{"name": "s", "value": "v", "target": "../x"}],
            "secrets[0].target",
            "invalid secret target '../x'",
        ),
        ([{"name": "s", "value": "v", "target": "/"}], "secrets[0].target", "invalid secret target '/'"),
        ([{"name": "s", "value": "v", "target": "a/b"}], "secrets[0].target", "invalid secret target"),
        ([{"name": "s", "value": "v", "target": "/run/../x"}], "secrets[0].target", "without '..'"),
        ([{"name": "s", "value": "v", "target": 3}], "secrets[0].target", "invalid secret target 3"),
        (
            [{"name": "s", "value": "v"}, {"name": "s", "value": "w", "target": "other"}],
            "secrets[1].name",
            "duplicate secret name 's': secrets[0] already uses it",
        ),
        (
            [{"name": "a", "value": "v", "target": "t"}, {"name": "b", "value": "w", "target": "t"}],
            "secrets[1].target",
            "duplicate secret target 't': secrets[0] already uses it",
        ),
        (["db-password"], "secrets[0]", "expected an object, not str"),
        ([None], "secrets[0]", "expected an object, not NoneType"),
        ({"name": "s"}, "secrets", "expected a list"),
    ],
)
def test_secrets_reject(secrets: Any, field: str, fragment: str) -> None:
    assert_one_problem(document(secrets=secrets), field, fragment)


def test_secret_value_optional_on_update() -> None:
    spec = validate_application(document(secrets=[{"name": "s"}]), require_secret_values=False)
    assert spec.secrets == (Secret(name="s", target="s", value=None),)
    assert spec.secret_values() == {}
    problems = problems_of(document(secrets=[{"name": "s", "value": ""}]), require_secret_values=False)
    assert [problem["field"] for problem in problems] == ["secrets[0].value"]


def test_secret_values_cover_every_secret() -> None:
    secrets = [{"name": "a", "value": "1"}, {"name": "b", "value": "two\nlines"}]
    assert validate_application(document(secrets=secrets)).secret_values() == {"a": "1", "b": "two\nlines"}


# --- volumes ---------------------------------------------------------------------------------


def test_volume_defaults() -> None:
    spec = validate_application(document(volumes=[{"name": "data", "target": "/data"}]))
    assert spec.to_dict()["volumes"] == [
        {"name": "data", "target": "/data", "driver": "local", "driverOptions": {}, "readOnly": False}
    ]
    assert spec.volumes[0].node_local


@pytest.mark.parametrize(
    ("volumes", "field", "fragment"),
    [
        ([{"name": "", "target": "/a"}], "volumes[0].name", "invalid volume name ''"),
        ([{"name": "da ta", "target": "/a"}], "volumes[0].name", "invalid volume name 'da ta'"),
        ([{"name": "_data", "target": "/a"}], "volumes[0].name", "starting with a letter or digit"),
        ([{"target": "/a"}], "volumes[0].name", "invalid volume name None"),
        ([{"name": "data", "target": "data"}], "volumes[0].target", "expected an absolute path"),
        ([{"name": "data", "target": "/"}], "volumes[0].target", "other than '/'"),
        ([{"name": "data"}], "volumes[0].target", "invalid volume target None"),
        ([{"name": "data", "target": "/a", "driver": ""}], "volumes[0].driver", "invalid volume driver ''"),
        (
            [{"name": "data", "target": "/a", "driver": "my driver"}],
            "volumes[0].driver",
            "invalid volume driver",
        ),
        (
            [{"name": "data", "target": "/a", "driverOptions": {"type": 1}}],
            "volumes[0].driverOptions.type",
            "invalid driver option 'type'",
        ),
        (
            [{"name": "data", "target": "/a", "driverOptions": []}],
            "volumes[0].driverOptions",
            "expected an object",
        ),
        (
            [{"name": "data", "target": "/a", "readOnly": "yes"}],
            "volumes[0].readOnly",
            "expected true or false",
        ),
        (
            [{"name": "data", "target": "/a"}, {"name": "data", "target": "/b"}],
            "volumes[1].name",
            "duplicate volume name 'data': volumes[0] already uses it",
        ),
        (
            [{"name": "a", "target": "/data"}, {"name": "b", "target": "/data"}],
            "volumes[1].target",
            "duplicate volume target '/data': volumes[0] already uses it",
        ),
        ([3], "volumes[0]", "expected an object, not int"),
    ],
)
def test_volumes_reject(volumes: Any, field: str, fragment: str) -> None:
    assert_one_problem(document(volumes=volumes), field, fragment)


@pytest.mark.parametrize(
    ("driver", "replicas", "valid"),
    [
        ("local", 0, True),
        ("local", 1, True),
        ("local", 2, False),
        ("nfs", 5, True),
        ("rexray/ebs:latest", 3, True),
    ],
)
def test_local_volume_limits_replicas(driver: str, replicas: int, valid: bool) -> None:
    raw = document(replicas=replicas, volumes=[{"name": "data", "target": "/data", "driver": driver}])
    if valid:
        assert validate_application(raw).replicas == replicas
    else:
        assert_one_problem(
            raw,
            "replicas",
            f"invalid replicas {replicas}: volume 'data' uses the local driver, and a local volume lives "
            "on one node, so the app runs as one replica pinned to that node. Set replicas to 1, or use a "
            "volume driver with shared storage to run more replicas",
        )


# --- ports -----------------------------------------------------------------------------------


def test_port_defaults() -> None:
    spec = validate_application(document(ports=[{"target": 80}]))
    assert spec.to_dict()["ports"] == [
        {"target": 80, "published": None, "protocol": "tcp", "mode": "ingress"}
    ]


@pytest.mark.parametrize(
    "ports",
    [
        [
            {"target": 53, "published": 53, "protocol": "tcp"},
            {"target": 53, "published": 53, "protocol": "udp"},
        ],
        [{"target": 80}, {"target": 80}],
        [{"target": 1, "published": 65535, "protocol": "sctp", "mode": "host"}],
    ],
)
def test_ports_accept(ports: list[dict[str, Any]]) -> None:
    assert len(validate_application(document(ports=ports)).ports) == len(ports)


@pytest.mark.parametrize(
    ("ports", "field", "fragment"),
    [
        (
            [{"target": 0}],
            "ports[0].target",
            "invalid ports[0].target 0: expected an integer from 1 to 65535",
        ),
        ([{"target": 65536}], "ports[0].target", "from 1 to 65535"),
        ([{"target": "80"}], "ports[0].target", "invalid ports[0].target '80'"),
        ([{"published": 80}], "ports[0].target", "missing target"),
        ([{"target": 80, "published": 0}], "ports[0].published", "from 1 to 65535"),
        ([{"target": 80, "published": 70000}], "ports[0].published", "from 1 to 65535"),
        ([{"target": 80, "protocol": "icmp"}], "ports[0].protocol", "expected one of tcp, udp, sctp"),
        ([{"target": 80, "mode": "bridge"}], "ports[0].mode", "expected one of ingress, host"),
        (
            [{"target": 80, "published": 8080}, {"target": 81, "published": 8080, "protocol": "tcp"}],
            "ports[1].published",
            "duplicate published port '8080/tcp': ports[0] already uses it",
        ),
        (
            [
                {"target": 80, "published": 80},
                {"target": 81, "published": 81},
                {"target": 82, "published": 80},
            ],
            "ports[2].published",
            "ports[0] already uses it",
        ),
        ([80], "ports[0]", "expected an object, not int"),
    ],
)
def test_ports_reject(ports: Any, field: str, fragment: str) -> None:
    assert_one_problem(document(ports=ports), field, fragment)


@pytest.mark.parametrize(("mode", "valid"), [("ingress", False), (None, False), ("host", True)])
def test_dnsrr_needs_host_mode_ports(mode: str | None, valid: bool) -> None:
    raw = document(endpointMode="dnsrr", ports=[{"target": 80, "published": 8080, "mode": mode}])
    if valid:
        assert validate_application(raw).endpoint_mode == "dnsrr"
    else:
        assert_one_problem(raw, "ports[0].mode", "invalid mode 'ingress' with endpointMode 'dnsrr'")


def test_endpoint_mode_rejects_unknown() -> None:
    assert_one_problem(document(endpointMode="round-robin"), "endpointMode", "expected one of vip, dnsrr")


# --- placement -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "constraint",
    [
        "node.role==worker",
        "node.role == manager",
        "node.role!=Manager",
        "node.id==abc123",
        "node.hostname!=node-1",
        "node.platform.os==linux",
        "node.platform.arch==x86_64",
        "node.labels.zone==eu-1",
        "engine.labels.storage==ssd",
    ],
)
def test_constraint_accepts(constraint: str) -> None:
    spec = validate_application(document(placement={"constraints": [constraint]}))
    assert spec.placement.constraints == (constraint,)


@pytest.mark.parametrize(
    ("constraint", "fragment"),
    [
        ("node.role=worker", "expected key==value or key!=value"),
        ("node.role==", "expected key==value"),
        ("==worker", "expected key==value"),
        ("node.role==worker==x", "expected key==value"),
        ("node.role==a!=b", "expected key==value"),
        ("node.role==boss", "node.role is manager or worker, not 'boss'"),
        ("node.name==x", "unknown attribute 'node.name'"),
        ("node.labels.==x", "unknown attribute 'node.labels.'"),
        ("zone==eu", "unknown attribute 'zone'"),
    ],
)
def test_constraint_rejects(constraint: str, fragment: str) -> None:
    assert_one_problem(
        document(placement={"constraints": ["node.role==worker", constraint]}),
        "placement.constraints[1]",
        f"invalid constraint {constraint!r}: {fragment}",
    )


@pytest.mark.parametrize(
    ("placement", "field", "fragment"),
    [
        ({"constraints": "node.role==worker"}, "placement.constraints", "expected a list"),
        ({"constraints": [1]}, "placement.constraints[0]", "expected a string"),
        ({"preferences": ["zone"]}, "placement.preferences[0]", "invalid preference 'zone'"),
        ({"preferences": ["node.labels."]}, "placement.preferences[0]", "such as 'node.labels.zone'"),
        ({"maxReplicasPerNode": 0}, "placement.maxReplicasPerNode", "expected an integer of at least 1"),
        ({"maxReplicasPerNode": "2"}, "placement.maxReplicasPerNode", "expected an integer of at least 1"),
        ("node.role==worker", "placement", "expected an object"),
    ],
)
def test_placement_rejects(placement: Any, field: str, fragment: str) -> None:
    assert_one_problem(document(placement=placement), field, fragment)


def test_placement_reads_every_field() -> None:
    placement = {
        "constraints": ["node.role==worker"],
        "preferences": ["engine.labels.rack"],
        "maxReplicasPerNode": 2,
    }
    assert validate_application(document(placement=placement)).to_dict()["placement"] == placement


# --- resources -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resources",
    [
        {"limits": {"cpus": 0.01, "memoryBytes": 6 * 1024 * 1024}},
        {"reservations": {"cpus": 0.001, "memoryBytes": 4 * 1024 * 1024}},
        {"limits": {"cpus": 2}, "reservations": {"cpus": 2}},
        {"limits": {"memoryBytes": 1 << 30}, "reservations": {"memoryBytes": 1 << 30}},
        {"limits": {"cpus": 1}, "reservations": {"memoryBytes": 1 << 30}},
    ],
)
def test_resources_accept(resources: dict[str, Any]) -> None:
    spec = validate_application(document(resources=resources))
    expected = {
        kind: {"cpus": None, "memoryBytes": None, **resources.get(kind, {})}
        for kind in ("limits", "reservations")
    }
    assert spec.to_dict()["resources"] == expected


@pytest.mark.parametrize(
    ("resources", "field", "fragment"),
    [
        (
            {"limits": {"cpus": 0}},
            "resources.limits.cpus",
            "invalid cpus 0: expected a number of CPUs of at least 0.01",
        ),
        ({"limits": {"cpus": -1}}, "resources.limits.cpus", "at least 0.01"),
        ({"limits": {"cpus": 0.005}}, "resources.limits.cpus", "at least 0.01"),
        ({"limits": {"cpus": "1"}}, "resources.limits.cpus", "invalid cpus '1'"),
        ({"limits": {"cpus": True}}, "resources.limits.cpus", "invalid cpus True"),
        ({"reservations": {"cpus": 0.0001}}, "resources.reservations.cpus", "at least 0.001"),
        (
            {"limits": {"memoryBytes": 4 * 1024 * 1024}},
            "resources.limits.memoryBytes",
            "expected an integer number of bytes of at least 6291456 (6 MiB)",
        ),
        (
            {"limits": {"memoryBytes": 1.5e9}},
            "resources.limits.memoryBytes",
            "invalid memoryBytes 1500000000.0",
        ),
        (
            {"reservations": {"memoryBytes": 4 * 1024 * 1024 - 1}},
            "resources.reservations.memoryBytes",
            "at least 4194304 (4 MiB)",
        ),
        (
            {"limits": {"cpus": 0.5}, "reservations": {"cpus": 1}},
            "resources.reservations.cpus",
            "invalid reservation 1: it is above the limit of 0.5",
        ),
        (
            {"limits": {"memoryBytes": 1 << 28}, "reservations": {"memoryBytes": 1 << 29}},
            "resources.reservations.memoryBytes",
            "invalid reservation 536870912: it is above the limit of 268435456",
        ),
        ({"limits": 1}, "resources.limits", "expected an object"),
    ],
)
def test_resources_reject(resources: dict[str, Any], field: str, fragment: str) -> None:
    assert_one_problem(document(resources=resources), field, fragment)


# --- healthcheck -----------------------------------------------------------------------------


def test_healthcheck_defaults() -> None:
    spec = validate_application(
        document(healthcheck={"test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]})
    )
    assert spec.healthcheck == Healthcheck(
        test=["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
        interval_seconds=30,
        timeout_seconds=10,
        retries=3,
        start_period_seconds=0,
    )


@pytest.mark.parametrize(
    "test", [["CMD", "true"], ["CMD", "curl", "-f", "http://localhost/"], ["CMD-SHELL", "exit 0"], ["NONE"]]
)
def test_healthcheck_test_accepts(test: list[str]) -> None:
    healthcheck = validate_application(document(healthcheck={"test": test})).healthcheck
    assert healthcheck is not None
    assert healthcheck.test == test


@pytest.mark.parametrize(
    ("healthcheck", "field", "fragment"),
    [
        ({}, "healthcheck.test", "missing healthcheck.test"),
        ({"test": []}, "healthcheck.test", "invalid healthcheck.test []"),
        ({"test": ["CMD"]}, "healthcheck.test", "invalid healthcheck.test ['CMD']"),
        ({"test": ["CMD", ""]}, "healthcheck.test", "invalid healthcheck.test"),
        ({"test": ["CMD-SHELL"]}, "healthcheck.test", "invalid healthcheck.test"),
        ({"test": ["CMD-SHELL", " "]}, "healthcheck.test", "invalid healthcheck.test"),
        ({"test": ["CMD-SHELL", "a", "b"]}, "healthcheck.test", '["CMD-SHELL", "shell command"]'),
        ({"test": ["NONE", "x"]}, "healthcheck.test", "invalid healthcheck.test"),
        ({"test": ["curl", "-f"]}, "healthcheck.test", "invalid healthcheck.test"),
        ({"test": "curl -f http://localhost"}, "healthcheck.test", "invalid healthcheck.test"),
        ({"test": ["CMD", 1]}, "healthcheck.test", "invalid healthcheck.test"),
        ({"test": ["NONE"], "intervalSeconds": 0}, "healthcheck.intervalSeconds", "at least 0.001"),
        (
            {"test": ["NONE"], "intervalSeconds": "10s"},
            "healthcheck.intervalSeconds",
            "expected a number of seconds",
        ),
        ({"test": ["NONE"], "timeoutSeconds": 0}, "healthcheck.timeoutSeconds", "at least 0.001"),
        (
            {"test": ["NONE"], "intervalSeconds": 5, "timeoutSeconds": 5},
            "healthcheck.timeoutSeconds",
            "expected less than intervalSeconds 5",
        ),
        ({"test": ["NONE"], "retries": 0}, "healthcheck.retries", "expected an integer of at least 1"),
        ({"test": ["NONE"], "retries": 2.5}, "healthcheck.retries", "expected an integer of at least 1"),
        ({"test": ["NONE"], "startPeriodSeconds": -1}, "healthcheck.startPeriodSeconds", "of at least 0"),
        (
            {"test": ["NONE"], "startPeriodSeconds": 0.0001},
            "healthcheck.startPeriodSeconds",
            "expected 0 or at least 0.001",
        ),
        (["CMD", "true"], "healthcheck", "expected an object, not list"),
    ],
)
def test_healthcheck_rejects(healthcheck: Any, field: str, fragment: str) -> None:
    assert_one_problem(document(healthcheck=healthcheck), field, fragment)


# --- strategy and update plan ----------------------------------------------------------------


def test_strategy_problems_keep_their_paths() -> None:
    problems = problems_of(document(strategy={"type": "canary", "updateDelay": "x"}))
    assert [problem["field"] for problem in problems] == ["strategy.type", "strategy.updateDelay"]


def test_strategy_must_be_an_object() -> None:
    assert_one_problem(document(strategy="rolling"), "strategy", "expected an object")


def test_update_plan_keeps_local_volume_stop_first() -> None:
    spec = validate_application(document(volumes=[{"name": "data", "target": "/data"}]))
    assert spec.exclusive_resources() == ["volume data (local driver)"]
    plan = spec.update_plan()
    assert plan.update_config["Order"] == "stop-first"
    assert "volume data (local driver)" in plan.corrections[0]


def test_update_plan_lists_host_ports_as_exclusive() -> None:
    ports = [
        {"target": 80, "published": 8080, "mode": "host"},
        {"target": 81, "mode": "host"},
        {"target": 82, "published": 82},
    ]
    spec = validate_application(document(ports=ports))
    assert spec.exclusive_resources() == ["host port 8080/tcp"]


def test_stateless_app_updates_start_first() -> None:
    spec = validate_application(copy.deepcopy(FULL) | {"ports": [], "volumes": []})
    plan = spec.update_plan()
    assert plan.update_config["Order"] == "start-first"
    assert plan.corrections == []


# --- health probe and backup policy ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://web/health",
        "https://api.example.com/health",
        "http://10.0.0.1:8080/",
        "https://[::1]:8443/x?y=1",
    ],
)
def test_health_check_url_accepts(url: str) -> None:
    assert validate_application(document(healthCheckUrl=url)).health_check_url == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "api.example.com/health",
        "https://",
        "http://exa mple.com/",
        "http://host:99999/",
        "file:///etc/passwd",
        80,
    ],
)
def test_health_check_url_rejects(url: Any) -> None:
    assert_one_problem(document(healthCheckUrl=url), "healthCheckUrl", "expected an http:// or https:// URL")


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        (
            {"healthCheckIntervalSeconds": 0.5},
            "healthCheckIntervalSeconds",
            "expected a number of seconds of at least 1",
        ),
        ({"healthCheckIntervalSeconds": "30"}, "healthCheckIntervalSeconds", "expected a number of seconds"),
        ({"healthCheckTimeoutSeconds": 0}, "healthCheckTimeoutSeconds", "greater than 0"),
        (
            {"healthCheckIntervalSeconds": 10, "healthCheckTimeoutSeconds": 10},
            "healthCheckTimeoutSeconds",
            "expected less than healthCheckIntervalSeconds 10",
        ),
        (
            {"healthCheckTimeoutSeconds": 60},
            "healthCheckTimeoutSeconds",
            "expected less than healthCheckIntervalSeconds 60",
        ),
        ({"maxConsecutiveFailures": 0}, "maxConsecutiveFailures", "expected an integer of at least 1"),
        ({"backupRetentionDays": 0}, "backupRetentionDays", "expected an integer of at least 1"),
        ({"backupRetentionDays": 7.5}, "backupRetentionDays", "expected an integer of at least 1"),
        ({"autoRestart": "true"}, "autoRestart", "expected true or false"),
        ({"autoRollback": 0}, "autoRollback", "expected true or false"),
    ],
)
def test_policy_rejects(changes: dict[str, Any], field: str, fragment: str) -> None:
    assert_one_problem(document(**changes), field, fragment)


@pytest.mark.parametrize(
    "schedule", ["0 */6 * * *", "*/15 * * * *", "30 2 * * MON-FRI", "0 0 29 2 *", "0 3 1 1,7 *"]
)
def test_backup_schedule_accepts(schedule: str) -> None:
    assert validate_application(document(backupSchedule=schedule)).backup_schedule == schedule


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ("0 */6 * * * *", "expected a 5-field cron expression"),
        ("* * * *", "expected a 5-field cron expression"),
        ("@daily", "expected a 5-field cron expression"),
        ("61 * * * *", "expected a 5-field cron expression"),
        ("0 0 * * 8", "expected a 5-field cron expression"),
        ("every day", "expected a 5-field cron expression"),
        (6, "expected a 5-field cron expression"),
        ("0 0 31 2 *", "it names no date that exists, so it would never run"),
    ],
)
def test_backup_schedule_rejects(schedule: Any, fragment: str) -> None:
    assert_one_problem(document(backupSchedule=schedule), "backupSchedule", fragment)


def test_appspec_defaults_match_validation() -> None:
    assert validate_application(MINIMAL) == AppSpec(name="web", image="nginx:1.27")


def test_backup_databases_round_trip() -> None:
    entry = {
        "name": "main",
        "engine": "postgresql",
        "database": "shop",
        "user": "postgres",
        "port": 5432,
        "passwordSecret": "db-password",
        "passwordEnv": None,
    }
    raw = {
        "name": "db",
        "image": "postgres:15",
        "secrets": [{"name": "db-password", "value": "x"}],
        "backupDatabases": [entry],
    }
    spec = validate_application(raw)
    assert spec.to_dict()["backupDatabases"] == [entry]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"name": "main", "engine": "oracle"}, "backupDatabases[0].engine"),
        ({"name": "Main!", "engine": "redis"}, "backupDatabases[0].name"),
        ({"name": "main", "engine": "redis", "database": "shop"}, "backupDatabases[0].database"),
        ({"name": "main", "engine": "mysql", "database": "a/b"}, "backupDatabases[0].database"),
        (
            {"name": "main", "engine": "mysql", "passwordSecret": "missing"},
            "backupDatabases[0].passwordSecret",
        ),
        ({"name": "main", "engine": "mysql", "passwordEnv": "NOPE"}, "backupDatabases[0].passwordEnv"),
        ({"name": "main", "engine": "mysql", "port": 70000}, "backupDatabases[0].port"),
        ({"name": "main", "engine": "mysql", "host": "x"}, "backupDatabases[0].host"),
    ],
)
def test_invalid_backup_database_names_field(entry: dict[str, Any], field: str) -> None:
    problems = problems_of({"name": "db", "image": "postgres:15", "backupDatabases": [entry]})
    assert problems[0]["field"] == field


def test_duplicate_backup_database_name_rejected() -> None:
    entry = {"name": "main", "engine": "redis"}
    problems = problems_of({"name": "db", "image": "redis:7", "backupDatabases": [entry, entry]})
    assert problems[0]["field"] == "backupDatabases[1].name"
