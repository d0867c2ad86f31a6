"""``hostcraft report``: uptime of every application as a table, JSON or CSV."""

from __future__ import annotations

import csv
import sys
from enum import StrEnum

import typer

from hostcraft.cli.client import ApiClient
from hostcraft.cli.output import print_json, print_table

app = typer.Typer(help="Reports across all applications.", no_args_is_help=True)

COLUMNS = (
    "applicationId",
    "application",
    "window",
    "availabilityPercent",
    "slaTargetPercent",
    "meetsTarget",
    "downtimeSeconds",
    "maintenanceSeconds",
    "measuredSeconds",
    "errorBudgetRemainingSeconds",
)


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
    report = ApiClient().get("/api/reports/uptime", window=window)
    rows = report["applications"]
    if output == ReportFormat.JSON:
        print_json(report)
    elif output == ReportFormat.CSV:
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
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
