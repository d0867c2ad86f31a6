"""``hostcraft report``: uptime of every application as a table, JSON or CSV."""

from __future__ import annotations

from enum import StrEnum

import typer

from hostcraft.cli.client import ApiClient
from hostcraft.cli.output import print_json, print_table

app = typer.Typer(help="Reports across all applications.", no_args_is_help=True)


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


@app.command("uptime")
def uptime(
    window: str | None = typer.Option(
        None, help="One window (24h, 7d, 30d, 90d, <n>h, <n>d); all four when omitted."
    ),
    output: ReportFormat = typer.Option(ReportFormat.TABLE, "--output", "-o", help="table, json or csv."),
) -> None:
    """Report the availability of every application against its SLA target."""
    client = ApiClient()
    if output == ReportFormat.CSV:
        typer.echo(client.get_text("/api/reports/uptime", window=window, format="csv"), nl=False)
        return
    report = client.get("/api/reports/uptime", window=window)
    rows = report["applications"]
    if output == ReportFormat.JSON:
        print_json(report)
    else:
        print_table(
            rows,
            [
                ("APP", "application"),
                ("WINDOW", "window"),
                ("AVAILABILITY %", "availabilityPercent"),
                ("TARGET %", "slaTargetPercent"),
                ("MEETS", "meetsTarget"),
                ("DOWNTIME S", "downtimeSeconds"),
                ("BUDGET LEFT S", "errorBudgetRemainingSeconds"),
            ],
            title=f"Uptime report {report['generatedAt']}",
        )
