"""``hostcraft app``: applications, deployments, rollbacks and Compose import."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from hostcraft.cli.client import ApiClient, CliError
from hostcraft.cli.output import Column, OutputFormat, OutputOption, console, emit, print_record, print_table

app = typer.Typer(
    help="Applications: desired state of a Swarm service, deployed safely.", no_args_is_help=True
)

TERMINAL = ("succeeded", "failed", "rolled_back")
APP_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("PROJECT", "project"),
    ("NAME", "name"),
    ("REGION", "region"),
    ("IMAGE", "image"),
    ("REPLICAS", "replicas"),
]
DEPLOYMENT_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("KIND", "kind"),
    ("STATUS", "status"),
    ("IMAGE", "imageDigestReference"),
    ("CREATED", "createdAt"),
    ("MESSAGE", "message"),
]


def resolve(client: ApiClient, reference: str) -> dict[str, Any]:
    """Find an application by id, name or project/name."""
    if reference.isdigit():
        found: dict[str, Any] = client.get(f"/api/applications/{reference}")
        return found
    project, _, name = reference.rpartition("/")
    matches = [
        a
        for a in client.get("/api/applications")
        if a["name"] == name and (not project or a["project"] == project)
    ]
    if len(matches) != 1:
        raise CliError(
            f"application {reference!r} not found" + (" (ambiguous: use project/name)" if matches else "")
        )
    return dict(matches[0])


def _load_document(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"failed to read {path}: {exc.strerror}") from exc
    try:
        if path.suffix in (".yml", ".yaml"):
            import yaml

            loaded = yaml.safe_load(text)
        else:
            loaded = json.loads(text)
    except ValueError as exc:
        raise CliError(f"invalid application document {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise CliError(f"invalid application document {path}: expected a JSON/YAML object")
    return loaded


def follow(client: ApiClient, deployment: dict[str, Any], *, timeout: float = 1800) -> dict[str, Any]:
    """Poll a deployment until it finishes, showing its status."""
    deadline = time.monotonic() + timeout
    with console.status(f"deployment {deployment['id']}: {deployment['status']}") as spinner:
        while deployment["status"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(1)
            deployment = client.get(f"/api/deployments/{deployment['id']}")
            spinner.update(f"deployment {deployment['id']} ({deployment['kind']}): {deployment['status']}")
    return deployment


def _finish(deployment: dict[str, Any], output: OutputFormat) -> None:
    def render() -> None:
        colour = {"succeeded": "green", "rolled_back": "yellow"}.get(deployment["status"], "red")
        console.print(
            f"deployment {deployment['id']} ({deployment['kind']}): [{colour}]{deployment['status']}[/]",
            highlight=False,
        )
        for line in (deployment.get("message"), *(deployment.get("corrections") or [])):
            if line:
                console.print(f"  {line}", highlight=False)
        if deployment.get("imageDigestReference"):
            console.print(f"  image: {deployment['imageDigestReference']}", highlight=False)

    emit(deployment, output, render)
    if deployment["status"] not in ("succeeded", "queued", "running"):
        raise typer.Exit(1)


@app.command("create")
def create(
    file: Path = typer.Option(..., "--file", "-f", help="Application document (JSON or YAML)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Store an application from a document; deploy it with 'hostcraft app deploy'."""
    created = ApiClient().post("/api/applications", _load_document(file))
    emit(created, output, lambda: print_record(created, APP_COLUMNS))


@app.command("update")
def update(
    application: str = typer.Argument(..., help="Id, name or project/name."),
    file: Path = typer.Option(..., "--file", "-f", help="The whole new document (JSON or YAML)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Replace an application's desired state; 'hostcraft app deploy' rolls it out."""
    client = ApiClient()
    updated = client.put(f"/api/applications/{resolve(client, application)['id']}", _load_document(file))
    emit(updated, output, lambda: print_record(updated, APP_COLUMNS))


@app.command("ls")
def list_apps(
    project: str | None = typer.Option(None, "--project"), output: OutputFormat = OutputOption
) -> None:
    """List applications, optionally of one project."""
    apps = ApiClient().get("/api/applications", project=project)
    emit(apps, output, lambda: print_table(apps, APP_COLUMNS))


@app.command("show")
def show(
    application: str = typer.Argument(..., help="Id, name or project/name."),
    output: OutputFormat = OutputOption,
) -> None:
    """Show an application's stored document and its last deployments."""
    record = resolve(ApiClient(), application)

    def render() -> None:
        print_record(
            record,
            [
                *APP_COLUMNS,
                ("ENDPOINT MODE", "endpointMode"),
                ("ENV", lambda r: ", ".join(sorted(r.get("env") or {}))),
                ("SECRETS", lambda r: ", ".join(s["name"] for s in r.get("secrets") or [])),
                ("VOLUMES", lambda r: ", ".join(v["name"] for v in r.get("volumes") or [])),
                ("LAST DEPLOYMENT", lambda r: _summary(r.get("lastDeployment"))),
                ("RUNNING", lambda r: _summary(r.get("lastSucceededDeployment"))),
            ],
        )

    emit(record, output, render)


def _summary(deployment: dict[str, Any] | None) -> str:
    if not deployment:
        return "none"
    image = deployment["imageDigestReference"] or ""
    return f"{deployment['id']} ({deployment['kind']}, {deployment['status']}) {image}"


@app.command("deploy")
def deploy(
    application: str = typer.Argument(..., help="Id, name or project/name."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the deployment until it ends."),
    output: OutputFormat = OutputOption,
) -> None:
    """Deploy the stored spec as a rolling update (image pinned by digest)."""
    client = ApiClient()
    deployment = client.post(f"/api/applications/{resolve(client, application)['id']}/deploy")
    _finish(follow(client, deployment) if wait else deployment, output)


@app.command("scale")
def scale(
    application: str = typer.Argument(...),
    replicas: int = typer.Argument(..., min=0),
    output: OutputFormat = OutputOption,
) -> None:
    """Change the number of replicas (a deployment of kind scale)."""
    client = ApiClient()
    deployment = client.post(
        f"/api/applications/{resolve(client, application)['id']}/scale", {"replicas": replicas}
    )
    _finish(follow(client, deployment), output)


@app.command("restart")
def restart(application: str = typer.Argument(...), output: OutputFormat = OutputOption) -> None:
    """Replace every task with the same spec, as a rolling update."""
    client = ApiClient()
    deployment = client.post(f"/api/applications/{resolve(client, application)['id']}/restart")
    _finish(follow(client, deployment), output)


@app.command("rollback")
def rollback(
    deployment_id: int = typer.Argument(..., help="The deployment to restore (see 'app history')."),
    output: OutputFormat = OutputOption,
) -> None:
    """Redeploy an earlier deployment's exact spec and image digest."""
    client = ApiClient()
    _finish(follow(client, client.post(f"/api/deployments/{deployment_id}/rollback")), output)


@app.command("history")
def history(application: str = typer.Argument(...), output: OutputFormat = OutputOption) -> None:
    """List an application's deployments, newest first."""
    client = ApiClient()
    rows = client.get(f"/api/applications/{resolve(client, application)['id']}/deployments")
    emit(rows, output, lambda: print_table(rows, DEPLOYMENT_COLUMNS))


@app.command("volumes")
def volumes(application: str = typer.Argument(...), output: OutputFormat = OutputOption) -> None:
    """List an application's volumes with driver, node and size."""
    client = ApiClient()
    rows = client.get(f"/api/applications/{resolve(client, application)['id']}/volumes")
    emit(
        rows,
        output,
        lambda: print_table(
            rows,
            [
                ("NAME", "name"),
                ("SWARM NAME", "swarmName"),
                ("DRIVER", "driver"),
                ("NODE", "nodeHostname"),
                ("SIZE", "sizeBytes"),
                ("TARGET", "target"),
            ],
        ),
    )


@app.command("rm")
def remove(application: str = typer.Argument(...)) -> None:
    """Remove the application and its service; volumes and their data are kept."""
    client = ApiClient()
    record = resolve(client, application)
    client.delete(f"/api/applications/{record['id']}")
    typer.echo(f"removed {record['project']}/{record['name']} (volumes kept)")


@app.command("import")
def import_file(
    file: Path = typer.Argument(..., help="docker-compose.yml or a stack file."),
    project: str = typer.Option("default", "--project", help="Project the applications belong to."),
    region: str | None = typer.Option(
        None, "--region", help="Region code or id (default: the primary region)."
    ),
    deploy: bool = typer.Option(False, "--deploy", help="Deploy every imported application."),
    secrets_file: Path | None = typer.Option(
        None, "--secrets-file", help="NAME=VALUE lines with the values of the secrets the services use."
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Turn each service of a Compose file into an application; unsupported keys are listed."""
    import yaml

    try:
        text = file.read_text()
        services = (yaml.safe_load(text) or {}).get("services") or {}
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise CliError(f"failed to read {file}: {exc}") from exc
    env_files: dict[str, str] = {}
    for service in services.values():
        entries = (service or {}).get("env_file") or []
        for entry in [entries] if isinstance(entries, str) else entries:
            path = entry if isinstance(entry, str) else entry.get("path", "")
            try:
                env_files[path] = (file.parent / path).read_text()
            except OSError as exc:
                raise CliError(f"failed to read env_file {path} of {file}: {exc.strerror}") from exc
    secret_values: dict[str, str] = {}
    if secrets_file is not None:
        try:
            lines = secrets_file.read_text().splitlines()
        except OSError as exc:
            raise CliError(f"failed to read {secrets_file}: {exc.strerror}") from exc
        for line in lines:
            name, separator, value = line.partition("=")
            if separator and name.strip() and not name.lstrip().startswith("#"):
                secret_values[name.strip()] = value
    client = ApiClient()
    body = {
        "compose": text,
        "project": project,
        "region": region,
        "envFiles": env_files,
        "secretValues": secret_values,
    }
    result = client.post("/api/applications/import", body)
    deployments = []
    if deploy:
        for created in result["applications"]:
            deployments.append(follow(client, client.post(f"/api/applications/{created['id']}/deploy")))

    def render() -> None:
        print_table(result["applications"], APP_COLUMNS, title=f"imported into project {project}")
        for key in result["unsupported"]:
            console.print(f"  not carried over: {key}", highlight=False)
        for warning in result["warnings"]:
            console.print(f"  warning: {warning}", highlight=False)
        for deployment in deployments:
            console.print(f"  deployment {deployment['id']}: {deployment['status']}", highlight=False)

    emit({**result, "deployments": deployments}, output, render)
    if any(d["status"] != "succeeded" for d in deployments):
        raise typer.Exit(1)


@app.command("health")
def health(application: str = typer.Argument(...), output: OutputFormat = OutputOption) -> None:
    """Show an application's probe state and its open incident with the recovery actions taken."""
    client = ApiClient()
    record = client.get(f"/api/applications/{resolve(client, application)['id']}/health")

    def render() -> None:
        print_record(
            record,
            [
                ("Status", "status"),
                ("Watched by", "source"),
                ("Last probe", "lastProbeAt"),
                ("Last error", "lastError"),
                ("Latency (ms)", "lastLatencyMs"),
                ("Failures in a row", "consecutiveFailures"),
            ],
        )
        incident = record.get("openIncident")
        if incident:
            console.print(f"[bold red]Open incident {incident['id']}[/] since {incident['beganAt']}")
            for action in incident["recoveryActions"]:
                console.print(f"  {action['at']}  {action['rung']}: {action['reason']}")
            if incident["recoveryStatus"] == "failed":
                console.print(f"  [red]recovery failed:[/] {incident['recoveryMessage']}")

    emit(record, output, render)


@app.command("incidents")
def incidents(application: str = typer.Argument(...), output: OutputFormat = OutputOption) -> None:
    """List an application's incidents, newest first."""
    client = ApiClient()
    rows = client.get(f"/api/applications/{resolve(client, application)['id']}/incidents")
    emit(
        rows,
        output,
        lambda: print_table(
            rows,
            [
                ("ID", "id"),
                ("STATUS", "status"),
                ("BEGAN", "beganAt"),
                ("ENDED", "endedAt"),
                ("DOWNTIME (S)", "downtimeSeconds"),
                ("RECOVERY", lambda row: ", ".join(action["rung"] for action in row["recoveryActions"])),
                ("ERROR", "lastError"),
            ],
        ),
    )


@app.command("uptime")
def uptime(
    application: str = typer.Argument(...),
    window: str = typer.Option("30d", help="Window: 24h, 7d, 30d, 90d, or <n>h / <n>d up to 366 days."),
    output: OutputFormat = OutputOption,
) -> None:
    """Show an application's time-weighted availability, SLA target and remaining error budget."""
    client = ApiClient()
    record = client.get(f"/api/applications/{resolve(client, application)['id']}/uptime", window=window)
    emit(
        record,
        output,
        lambda: print_record(
            record,
            [
                ("Window", "window"),
                ("Availability (%)", "availabilityPercent"),
                ("SLA target (%)", "slaTargetPercent"),
                ("Meets target", "meetsTarget"),
                ("Downtime (s)", "downtimeSeconds"),
                ("Maintenance (s)", "maintenanceSeconds"),
                ("Error budget left (s)", "errorBudgetRemainingSeconds"),
            ],
        ),
    )
