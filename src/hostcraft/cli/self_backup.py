"""``hostcraft self-backup`` (over the API) and ``hostcraft restore-self`` (no HostCraft needed)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hostcraft.cli.client import ApiClient, CliError
from hostcraft.cli.output import Column, OutputFormat, OutputOption, console, emit, print_record, print_table

app = typer.Typer(help="Backups of HostCraft's own store and secret key.", no_args_is_help=True)

RUN_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("DESTINATION", "destination"),
    ("STORE", "store"),
    ("STATUS", "status"),
    ("TRIGGER", "trigger"),
    ("STARTED", "startedAt"),
    ("MESSAGE", "message"),
]


@app.command("run")
def run(
    destination: int | None = typer.Option(
        None, help="destination id (default: HOSTCRAFT_SELF_BACKUP_DESTINATION of the server)"
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Back up the store and the secret key now and wait for the outcome."""
    client = ApiClient()
    started = client.post("/api/self-backup/run", {"destinationId": destination})
    finished = _wait(client, started)
    emit(finished, output, lambda: print_record(finished, RUN_COLUMNS))
    if finished["status"] == "failed":
        raise CliError(f"self-backup {finished['id']} failed: {finished['message']}")


def _wait(client: ApiClient, run: dict[str, Any]) -> dict[str, Any]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"self-backup {run['id']}: {run['status']}")
        while run["status"] == "running":
            time.sleep(1)
            runs = client.get("/api/self-backup", limit=50)["runs"]
            run = next((item for item in runs if item["id"] == run["id"]), run)
            progress.update(task, description=f"self-backup {run['id']}: {run['status']}")
    return run


@app.command("ls")
def list_runs(
    limit: int = typer.Option(20, help="how many runs to list"), output: OutputFormat = OutputOption
) -> None:
    """Show the self-backup schedule and the last runs, newest first."""
    status = ApiClient().get("/api/self-backup", limit=limit)

    def render() -> None:
        schedule = status["schedule"] or "none (set HOSTCRAFT_SELF_BACKUP_SCHEDULE)"
        console.print(
            f"schedule: {schedule}; destination: {status['destination'] or 'not set'}", markup=False
        )
        if status["nextRunAt"]:
            console.print(f"next run: {status['nextRunAt']}", markup=False)
        print_table(status["runs"], RUN_COLUMNS)

    emit(status, output, render)


def restore_self(
    repository: str = typer.Option(
        ...,
        help="restic repository: a local path or s3:http(s)://HOST:PORT/BUCKET/PREFIX "
        "(port and prefix optional)",
    ),
    password_file: Path = typer.Option(
        ..., exists=True, dir_okay=False, help="file holding the destination's restic password (export-key)"
    ),
    data_dir: Path = typer.Option(..., help="data directory of the new control plane (HOSTCRAFT_DATA_DIR)"),
    snapshot: str = typer.Option("latest", help="self-backup snapshot id (store or key), or latest"),
    database_url: str | None = typer.Option(
        None, help="empty PostgreSQL database for a PostgreSQL store (HOSTCRAFT_DATABASE_URL)"
    ),
    s3_region: str | None = typer.Option(None, help="S3 region, when the endpoint needs one"),
    path_style: bool = typer.Option(True, help="S3 path-style addressing (--no-path-style for DNS style)"),
    restic_binary: str = typer.Option("restic", "--restic", help="restic program to run"),
    force: bool = typer.Option(False, help="overwrite an existing store or key file"),
    output: OutputFormat = OutputOption,
) -> None:
    """Bring back HostCraft's store and secret key from a self-backup, without a running HostCraft.

    S3 keys are read from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    """
    from hostcraft.backup.restic import Repository
    from hostcraft.errors import HostCraftError
    from hostcraft.services.self_backup import restore_self as restore

    password = password_file.read_text().strip()
    if not password:
        raise CliError(f"{password_file} is empty: it must hold the destination's restic password")
    target = Repository(
        url=repository,
        password=password,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region=s3_region,
        path_style=path_style,
    )
    if target.is_s3 and not (target.access_key and target.secret_key):
        raise CliError(
            "an S3 repository needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
        )
    try:
        with console.status("restoring the control plane") as status:
            result = restore(
                target,
                data_dir=data_dir.absolute(),
                snapshot=snapshot,
                database_url=database_url,
                restic_binary=restic_binary,
                force=force,
                progress=lambda message: status.update(message),
            )
    except HostCraftError as exc:
        raise CliError(f"failed to restore the control plane: {exc.message}") from exc
    report = {**asdict(result), "key_file": str(result.key_file), "data_dir": str(data_dir.absolute())}
    report["database_url"] = _hide_password(result.database_url)
    emit(report, output, lambda: _print_next_steps(report, database_url))


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _print_next_steps(report: dict[str, Any], database_url: str | None) -> None:
    console.print(
        f"restored the {report['store']} store of snapshot {report['snapshot_id'][:8]} "
        f"(taken {report['taken_at']} on {report['hostname']}) and the secret key {report['key_file']}",
        markup=False,
    )
    console.print("next:", markup=False)
    console.print(f"  export HOSTCRAFT_DATA_DIR={report['data_dir']}", markup=False)
    if database_url:
        console.print("  export HOSTCRAFT_DATABASE_URL=<the URL given with --database-url>", markup=False)
    console.print(
        "  unset HOSTCRAFT_SECRET_KEY, or set it to the value the old control plane used", markup=False
    )
    console.print("  hostcraft up    # migrates the store if needed, then serves the API", markup=False)
    console.print("  hostcraft login --token <an API token of the old control plane>", markup=False)
