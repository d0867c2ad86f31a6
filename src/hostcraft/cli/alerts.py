"""``hostcraft alert``: alert channels (Apprise URLs) and the alert history."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from hostcraft.cli.client import ApiClient, CliError
from hostcraft.cli.output import Column, OutputFormat, OutputOption, console, emit, print_record, print_table

app = typer.Typer(
    help="Alerts: channels that receive them, and the history of what fired.", no_args_is_help=True
)
channel_app = typer.Typer(
    help="Alert channels: Apprise URLs (Slack, e-mail, webhooks, ...).", no_args_is_help=True
)
app.add_typer(channel_app, name="channel")

URL_VARIABLE = "HOSTCRAFT_ALERT_CHANNEL_URL"

CHANNEL_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("SERVICE", "service"),
    ("URL", "urlMasked"),
    ("TRIGGERS", lambda c: ", ".join(c["triggers"]) or "all"),
    ("MIN SEVERITY", "minSeverity"),
]

ALERT_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("STATUS", "status"),
    ("SEVERITY", "severity"),
    ("TRIGGER", "trigger"),
    ("TITLE", "title"),
    ("SEEN", "occurrences"),
    ("OPENED", "openedAt"),
    ("RESOLVED", "resolvedAt"),
]


def _read_url() -> str:
    """Read the URL from the environment, standard input or a hidden prompt, never from argv."""
    url = os.environ.get(URL_VARIABLE)
    if not url and not sys.stdin.isatty():
        url = sys.stdin.readline()
    if not url:
        url = typer.prompt("Apprise URL", hide_input=True)
    url = url.strip()
    if not url:
        raise CliError(
            f"no channel URL: set {URL_VARIABLE}, pipe it on standard input, or type it when asked"
        )
    return url


def _find_channel(client: ApiClient, reference: str) -> dict[str, Any]:
    for channel in client.get("/api/alert-channels"):
        if str(channel["id"]) == reference or channel["name"] == reference:
            return dict(channel)
    raise CliError(f"alert channel {reference!r} not found: 'hostcraft alert channel ls' lists them")


@channel_app.command("add")
def add_channel(
    name: str = typer.Argument(..., help="Unique channel name."),
    trigger: list[str] = typer.Option(
        [], "--trigger", help="Only these triggers (repeat the option); default: every trigger."
    ),
    min_severity: str = typer.Option("info", "--min-severity", help="info, warning or critical."),
    output: OutputFormat = OutputOption,
) -> None:
    """Add a channel. The URL is read from HOSTCRAFT_ALERT_CHANNEL_URL, standard input or a prompt."""
    body = {"name": name, "url": _read_url(), "triggers": trigger, "minSeverity": min_severity}
    channel = ApiClient().post("/api/alert-channels", body)
    emit(channel, output, lambda: print_record(channel, CHANNEL_COLUMNS))


@channel_app.command("ls")
def list_channels(output: OutputFormat = OutputOption) -> None:
    channels = ApiClient().get("/api/alert-channels")
    emit(channels, output, lambda: print_table(channels, CHANNEL_COLUMNS))


@channel_app.command("rm")
def remove_channel(channel: str = typer.Argument(..., help="Channel id or name.")) -> None:
    """Delete a channel; messages still waiting for it are dropped with it."""
    client = ApiClient()
    record = _find_channel(client, channel)
    client.delete(f"/api/alert-channels/{record['id']}")
    typer.echo(f"removed alert channel {record['name']}")


@channel_app.command("test")
def test_channel(
    channel: str = typer.Argument(..., help="Channel id or name."), output: OutputFormat = OutputOption
) -> None:
    """Send a test message now; exits 1 when it was not delivered."""
    client = ApiClient()
    record = _find_channel(client, channel)
    result = client.post(f"/api/alert-channels/{record['id']}/test")

    def render() -> None:
        if result["delivered"]:
            console.print(f"test message delivered to {record['name']}", highlight=False)
        else:
            console.print(f"test message to {record['name']} failed: {result['error']}", highlight=False)

    emit(result, output, render)
    if not result["delivered"]:
        raise typer.Exit(1)


@app.command("ls")
def list_alerts(
    status: str | None = typer.Option(None, "--status", help="open, resolved or suppressed."),
    trigger: str | None = typer.Option(None, "--trigger", help="e.g. quorum_lost, node_unreachable."),
    limit: int = typer.Option(50, "--limit", help="Maximum number of alerts to list, newest first."),
    output: OutputFormat = OutputOption,
) -> None:
    """List alerts and one-off notices, newest first."""
    alerts = ApiClient().get("/api/alerts", status=status, trigger=trigger, limit=limit)
    emit(alerts, output, lambda: print_table(alerts, ALERT_COLUMNS))


@app.command("show")
def show_alert(alert_id: int = typer.Argument(...), output: OutputFormat = OutputOption) -> None:
    """Show one alert with its message and every delivery to a channel."""
    alert = ApiClient().get(f"/api/alerts/{alert_id}")

    def render() -> None:
        print_record(alert, [*ALERT_COLUMNS, ("CAUSE", "cause"), ("MESSAGE", "message")])
        print_table(
            alert["deliveries"],
            [
                ("CHANNEL", "channelId"),
                ("KIND", "kind"),
                ("STATUS", "status"),
                ("ATTEMPTS", "attempts"),
                ("SENT", "sentAt"),
                ("ERROR", "lastError"),
            ],
            title="deliveries",
        )

    emit(alert, output, render)
