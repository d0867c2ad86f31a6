"""``hostcraft backup``: backups, restores and backup destinations."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hostcraft.cli.apps import resolve
from hostcraft.cli.client import ApiClient, CliError
from hostcraft.cli.output import (
    Column,
    OutputFormat,
    OutputOption,
    console,
    emit,
    human_bytes,
    print_record,
    print_table,
)

app = typer.Typer(help="Backups with restic: create, list, show and restore.", no_args_is_help=True)
destination_app = typer.Typer(help="Backup destinations: local folders and S3 buckets.", no_args_is_help=True)
app.add_typer(destination_app, name="destination")

TERMINAL = ("succeeded", "failed", "expired")
BACKUP_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("APP", "application"),
    ("TYPE", "type"),
    ("STATUS", "status"),
    ("ADDED", "bytesAddedText"),
    ("NODE", "node"),
    ("STARTED", "startedAt"),
    ("MESSAGE", "message"),
]
DESTINATION_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("KIND", "kind"),
    ("REPOSITORY", "repository"),
    ("LAST TEST", "lastTestOk"),
]


def _with_sizes(backup: dict[str, Any]) -> dict[str, Any]:
    return {**backup, "bytesAddedText": human_bytes(backup.get("bytesAdded"))}


def _wait(client: ApiClient, backup: dict[str, Any]) -> dict[str, Any]:
    """Poll a backup until it ends and its copies are made, with a spinner on a terminal."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"backup {backup['id']}: {backup['status']}")
        while backup["status"] not in TERMINAL or _copies_pending(backup):
            time.sleep(1)
            backup = client.get(f"/api/backups/{backup['id']}")
            copying = " (copying to replica destinations)" if backup["status"] == "succeeded" else ""
            progress.update(task, description=f"backup {backup['id']}: {backup['status']}{copying}")
    return backup


def _copies_pending(backup: dict[str, Any]) -> bool:
    return any(replica["status"] == "pending" for replica in backup.get("replicas") or [])


@app.command("create")
def create(
    application: str = typer.Argument(..., help="application id, name or project/name"),
    kind: str = typer.Option("full", "--type", help="config, volume, database or full"),
    destination: int | None = typer.Option(None, help="destination id (default: the app's or the only one)"),
    wait: bool = typer.Option(True, help="wait until the backup ends"),
    output: OutputFormat = OutputOption,
) -> None:
    """Back up an application now."""
    client = ApiClient()
    target = resolve(client, application)
    backup = client.post(
        f"/api/applications/{target['id']}/backups", {"type": kind, "destinationId": destination}
    )
    if wait:
        backup = _wait(client, backup)
    emit(backup, output, lambda: print_record(_with_sizes(backup), BACKUP_COLUMNS))
    if backup["status"] == "failed":
        raise CliError(f"backup {backup['id']} failed: {backup['message']}")


@app.command("ls")
def list_backups(
    application: str | None = typer.Argument(None, help="only this application"),
    region: str | None = typer.Option(
        None, help="only succeeded backups readable in this region (id or code), from a replica or not"
    ),
    destination: int | None = typer.Option(
        None, help="only succeeded backups readable from this destination id"
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """List backups, newest first."""
    client = ApiClient()
    if region is not None or destination is not None:
        region_id = _region_id(client, region) if region is not None else None
        rows = client.get("/api/backups", regionId=region_id, destinationId=destination)
        if application:
            wanted = resolve(client, application)["id"]
            rows = [row for row in rows if row["applicationId"] == wanted]
        columns = [
            *BACKUP_COLUMNS[:4],
            ("FROM", lambda row: row["availableFrom"]["destination"]),
            *BACKUP_COLUMNS[4:],
        ]
        emit(rows, output, lambda: print_table([_with_sizes(row) for row in rows], columns))
        return
    if application:
        rows = client.get(f"/api/applications/{resolve(client, application)['id']}/backups")
    else:
        rows = client.get("/api/backups")
    emit(rows, output, lambda: print_table([_with_sizes(row) for row in rows], BACKUP_COLUMNS))


def _region_id(client: ApiClient, reference: str) -> int:
    if reference.isdigit():
        return int(reference)
    for region in client.get("/api/regions"):
        if region["code"] == reference:
            return int(region["id"])
    raise CliError(f"region {reference!r} not found ('hostcraft region ls' lists them)")


@app.command("show")
def show(backup_id: int, output: OutputFormat = OutputOption) -> None:
    """Show one backup with its snapshots."""
    backup = ApiClient().get(f"/api/backups/{backup_id}")

    def render() -> None:
        print_record(_with_sizes(backup), BACKUP_COLUMNS)
        print_table(backup["snapshots"], [("PART", "part"), ("SNAPSHOT", "snapshotId"), ("NODE", "node")])
        if backup.get("replicas"):
            print_table(
                backup["replicas"],
                [
                    ("REPLICA", "destination"),
                    ("REGION", "regionId"),
                    ("STATUS", "status"),
                    ("SNAPSHOTS", lambda row: ", ".join(item[:8] for item in row["snapshotIds"])),
                    ("COPIED", "copiedAt"),
                    ("ERROR", "error"),
                ],
            )

    emit(backup, output, render)


@app.command("restore")
def restore(
    backup_id: int,
    mode: str = typer.Option("new", help="replace (exact tree, in place) or new (a new volume or app)"),
    server: int | None = typer.Option(None, help="target server id (default: where the data was)"),
    region: int | None = typer.Option(None, help="target region id"),
    stop_app: bool = typer.Option(False, help="stop the app during a replace restore and restart it after"),
    source_destination: int | None = typer.Option(
        None, help="read from this destination id (primary or replica; default: the primary, else a replica)"
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Restore a succeeded backup."""
    body = {
        "mode": mode,
        "targetServerId": server,
        "targetRegionId": region,
        "stopApp": stop_app,
        "sourceDestinationId": source_destination,
    }
    with console.status(f"restoring backup {backup_id}"):
        restored = ApiClient().post(f"/api/backups/{backup_id}/restore", body)
    emit(
        restored,
        output,
        lambda: print_table(
            restored["restored"], [("PART", "part"), ("VOLUME", "volume"), ("APP", "applicationId")]
        ),
    )


@app.command("verify")
def verify(backup_id: int, output: OutputFormat = OutputOption) -> None:
    """Restore-test a succeeded backup now and compare it with what was backed up."""
    with console.status(f"restore-testing backup {backup_id}"):
        result = ApiClient().post(f"/api/backups/{backup_id}/verify")
    emit(
        result,
        output,
        lambda: print_record(
            result,
            [
                ("Verification", "id"),
                ("Status", "status"),
                ("Message", "message"),
                ("Finished", "finishedAt"),
            ],
        ),
    )
    if result.get("status") != "passed":
        raise typer.Exit(1)


@destination_app.command("add")
def add_destination(
    name: str,
    path: str | None = typer.Option(None, help="local folder (makes a local destination)"),
    endpoint: str | None = typer.Option(None, help="S3 endpoint URL (makes an S3 destination)"),
    bucket: str | None = typer.Option(None),
    prefix: str = typer.Option(""),
    access_key: str | None = typer.Option(None, envvar="HOSTCRAFT_S3_ACCESS_KEY"),
    secret_key: str | None = typer.Option(
        None, envvar="HOSTCRAFT_S3_SECRET_KEY", help="read from the environment"
    ),
    region: int | None = typer.Option(None, help="id of the region the storage is in"),
    replicate_to: list[int] = typer.Option(
        [], "--replicate-to", help="destination id every backup here is copied to (repeatable)"
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Add a destination; a random repository password is made for it."""
    body: dict[str, Any] = {
        "name": name,
        "kind": "local" if path else "s3",
        "path": path,
        "regionId": region,
        "replicateTo": replicate_to,
    }
    if not path:
        body |= {
            "endpoint": endpoint,
            "bucket": bucket,
            "prefix": prefix,
            "accessKey": access_key,
            "secretKey": secret_key,
        }
    created = ApiClient().post("/api/backup-destinations", body)
    emit(created, output, lambda: print_record(created, DESTINATION_COLUMNS))


@destination_app.command("ls")
def list_destinations(output: OutputFormat = OutputOption) -> None:
    rows = ApiClient().get("/api/backup-destinations")
    emit(rows, output, lambda: print_table(rows, DESTINATION_COLUMNS))


@destination_app.command("rm")
def remove_destination(destination_id: int) -> None:
    """Forget a destination; its repository and snapshots stay in place."""
    ApiClient().delete(f"/api/backup-destinations/{destination_id}")
    console.print(f"removed destination {destination_id}")


@destination_app.command("test")
def test_destination(destination_id: int, output: OutputFormat = OutputOption) -> None:
    """Write, list, read and delete a probe snapshot."""
    with console.status("testing the destination"):
        report = ApiClient().post(f"/api/backup-destinations/{destination_id}/test")
    emit(
        report,
        output,
        lambda: print_table(report["steps"], [("STEP", "step"), ("OK", "ok"), ("MESSAGE", "message")]),
    )
    if not report["ok"]:
        raise CliError(f"{report['reason']}: {report['message']}")


@destination_app.command("export-key")
def export_key(destination_id: int) -> None:
    """Print the repository password: without it no backup in the destination can be restored."""
    exported = ApiClient().post(f"/api/backup-destinations/{destination_id}/export-key")
    typer.echo(exported["password"])
