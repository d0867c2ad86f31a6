"""The ``hostcraft`` command."""

from __future__ import annotations

import logging
from typing import Any

import typer

from hostcraft import __version__
from hostcraft.cli import (
    alerts,
    apps,
    backups,
    dr,
    lab,
    maintenance,
    regions,
    reports,
    self_backup,
    servers,
    swarm,
    tokens,
)
from hostcraft.cli.client import ApiClient, CliError, config_path, write_config
from hostcraft.cli.output import OutputFormat, OutputOption, emit, error_console, print_table

app = typer.Typer(
    help="HostCraft: a control plane for Docker Swarm built around high availability and disaster recovery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(regions.app, name="region")
app.add_typer(servers.app, name="server")
app.add_typer(tokens.app, name="token")
app.add_typer(swarm.app, name="swarm")
app.add_typer(swarm.cluster_app, name="cluster")
app.add_typer(lab.app, name="lab")
app.add_typer(apps.app, name="app")
app.add_typer(reports.app, name="report")
app.add_typer(alerts.app, name="alert")
app.add_typer(maintenance.app, name="maintenance")
app.add_typer(backups.app, name="backup")
app.add_typer(self_backup.app, name="self-backup")
app.add_typer(dr.app, name="dr")
app.command("restore-self")(self_backup.restore_self)


@app.command()
def version() -> None:
    """Print the HostCraft version."""
    typer.echo(__version__)


@app.command()
def login(
    token: str = typer.Option(..., "--token", prompt=True, hide_input=True, help="An API token."),
    url: str = typer.Option("http://127.0.0.1:8080", "--url", help="HostCraft API URL."),
) -> None:
    """Check a token against the API and store URL and token for later commands."""
    ApiClient(url, token).get("/api/regions")
    path = write_config(url, token)
    typer.echo(f"logged in to {url}; settings stored in {path} (mode 0600)")


@app.command()
def up(
    host: str = typer.Option(
        None, "--host", help="Address to listen on (default: HOSTCRAFT_HOST or 127.0.0.1)."
    ),
    port: int = typer.Option(None, "--port", help="Port to listen on (default: HOSTCRAFT_PORT or 8080)."),
    engine: bool | None = typer.Option(
        None,
        "--engine/--no-engine",
        help="Run the engine loops in this process (default: HOSTCRAFT_ENGINE_ENABLED).",
    ),
) -> None:
    """Run the API and the engine in one process (the embedded set-up)."""
    import uvicorn

    from hostcraft.api.app import create_app
    from hostcraft.config import get_settings
    from hostcraft.runtime import Runtime
    from hostcraft.services.bootstrap import bootstrap

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    runtime = Runtime.create(settings)
    url = f"http://{host}:{port}"
    result = bootstrap(runtime, local_engine=settings.local_engine)

    typer.echo(f"HostCraft {__version__} on {url} (API docs: {url}/api/docs)")
    typer.echo(f"store: {runtime.store.url.split('@')[-1]}; data directory: {settings.data_dir}")
    if result.admin_token:
        typer.echo("first start: created an admin token; it is shown only once:")
        typer.echo(f"  {result.admin_token}")
        if not config_path().exists():
            write_config(url, result.admin_token)
            typer.echo(f"CLI settings written to {config_path()}")
    for message in result.messages:
        typer.echo(message)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: listening on {host}: put TLS in front of the API before exposing it", err=True)
    uvicorn.run(create_app(runtime, run_engine=engine), host=host, port=port, log_level="warning")


@app.command()
def events(
    target_type: str | None = typer.Option(None, "--type", help="server, region, token, cluster, ..."),
    target: str | None = typer.Option(None, "--target", help="Target id."),
    limit: int = typer.Option(50, "--limit"),
    output: OutputFormat = OutputOption,
) -> None:
    """List the audit trail, newest first."""
    rows = ApiClient().get("/api/events", targetType=target_type, targetId=target, limit=limit)
    emit(
        rows,
        output,
        lambda: print_table(
            rows,
            [
                ("AT", "at"),
                ("ACTOR", "actor"),
                ("ACTION", "action"),
                ("TARGET", lambda e: e["targetName"] or f"{e['targetType']} {e['targetId']}"),
                ("OUTCOME", "outcome"),
                ("REASON", "reason"),
            ],
        ),
    )


def run() -> Any:
    try:
        return app()
    except CliError as exc:
        error_console.print(f"error: {exc.message}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    run()
