"""``hostcraft maintenance``: windows in which an application or region raises no alerts."""

from __future__ import annotations

from typing import Any

import typer

from hostcraft.cli import apps, regions
from hostcraft.cli.client import ApiClient, CliError
from hostcraft.cli.output import Column, OutputFormat, OutputOption, emit, print_record, print_table

app = typer.Typer(
    help="Maintenance windows: no alerts and no automatic recovery, left out of SLA figures.",
    no_args_is_help=True,
)


def _target(window: dict[str, Any]) -> str:
    if window["applicationId"] is not None:
        return f"app {window['applicationId']}"
    return f"region {window['regionId']}"


def _timing(window: dict[str, Any]) -> str:
    if window["cron"]:
        return f"{window['cron']} for {window['durationMinutes']} min"
    return f"{window['startsAt']} to {window['endsAt']}"


COLUMNS: list[Column] = [
    ("ID", "id"),
    ("TARGET", _target),
    ("WHEN", _timing),
    ("TIME ZONE", "timezone"),
    ("ACTIVE", lambda w: "yes" if w["activeNow"] else ""),
    ("NEXT START", "nextStart"),
    ("REASON", "reason"),
]


@app.command("add")
def add(
    application: str | None = typer.Option(None, "--app", help="Application id, name or project/name."),
    region: str | None = typer.Option(None, "--region", help="Region id or code."),
    cron: str | None = typer.Option(
        None, "--cron", help="Recurring start, five cron fields, e.g. '0 2 * * SUN'."
    ),
    duration: int | None = typer.Option(None, "--duration", help="Length of a recurring window, in minutes."),
    start: str | None = typer.Option(
        None, "--start", help="Start of a one-off window, ISO 8601 with offset."
    ),
    end: str | None = typer.Option(None, "--end", help="End of a one-off window, ISO 8601 with offset."),
    timezone: str = typer.Option(
        "UTC", "--timezone", help="IANA time zone of the cron times, e.g. Europe/Berlin."
    ),
    reason: str = typer.Option("", "--reason", help="Why: shown in the window list and the audit trail."),
    output: OutputFormat = OutputOption,
) -> None:
    """Add a recurring (--cron and --duration) or one-off (--start and --end) window."""
    if (application is None) == (region is None):
        raise CliError("give exactly one of --app and --region")
    client = ApiClient()
    body: dict[str, Any] = {"timezone": timezone, "reason": reason}
    if application is not None:
        body["applicationId"] = apps.resolve(client, application)["id"]
    else:
        body["regionId"] = regions.resolve(client, region or "")["id"]
    if cron is not None or duration is not None:
        body.update(cron=cron, durationMinutes=duration)
    if start is not None or end is not None:
        body.update(startsAt=start, endsAt=end)
    window = client.post("/api/maintenance-windows", body)
    emit(window, output, lambda: print_record(window, COLUMNS))


@app.command("ls")
def list_windows(output: OutputFormat = OutputOption) -> None:
    windows = ApiClient().get("/api/maintenance-windows")
    emit(windows, output, lambda: print_table(windows, COLUMNS))


@app.command("rm")
def remove(window_id: int = typer.Argument(..., help="Window id.")) -> None:
    ApiClient().delete(f"/api/maintenance-windows/{window_id}")
    typer.echo(f"removed maintenance window {window_id}")
