"""``hostcraft dr``: failover, failback, region failover, drills, runs and the DR report."""

from __future__ import annotations

import time
from typing import Any

import typer

from hostcraft.cli.apps import resolve
from hostcraft.cli.client import ApiClient, CliError
from hostcraft.cli.output import Column, OutputFormat, OutputOption, console, emit, print_record, print_table
from hostcraft.cli.regions import resolve as resolve_region

app = typer.Typer(
    help="Disaster recovery: fail over between regions, drills and the DR report.", no_args_is_help=True
)

POLL_SECONDS = 1.0
TERMINAL = ("succeeded", "failed", "refused")
STEP_MARKS = {
    "succeeded": "[green]✓[/]",
    "failed": "[red]✗[/]",
    "skipped": "[dim]-[/]",
    "pending": "[yellow]…[/]",
}
RUN_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("KIND", "kind"),
    ("APP", "application"),
    ("FROM", "sourceRegion"),
    ("TO", "targetRegion"),
    ("STATUS", "status"),
    ("RTO S", "rtoSeconds"),
    ("RPO S", "rpoSeconds"),
    ("STARTED", "startedAt"),
    ("MESSAGE", "message"),
]
REPORT_COLUMNS: list[Column] = [
    ("APP", "application"),
    ("ACTIVE", "activeRegion"),
    ("HOME", "homeRegion"),
    ("MODE", "mode"),
    ("RTO OBJ", lambda row: row["objectives"]["rtoSeconds"]),
    ("RPO OBJ", lambda row: row["objectives"]["rpoSeconds"]),
    ("DRILL RTO/RPO", lambda row: _measured(row["lastDrill"])),
    ("FAILOVER RTO/RPO", lambda row: _measured(row["lastFailover"])),
    ("BACKUP AGE S", lambda row: _ages(row["replicatedBackups"])),
]


def _measured(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "never"
    if summary["status"] != "succeeded":
        return f"{summary['status']} (run {summary['runId']})"
    return f"{summary['rtoSeconds']}/{summary['rpoSeconds']} {summary['result']}"


def _ages(ages: dict[str, float | None]) -> str:
    return ", ".join(f"{code}: {'none' if age is None else round(age)}" for code, age in ages.items())


def follow(client: ApiClient, run: dict[str, Any], *, quiet: bool = False) -> dict[str, Any]:
    """Poll a run until it ends, printing each step once it finishes, with its duration."""
    shown: set[tuple[str, str]] = set()
    while True:
        for step in run.get("steps") or []:
            key = (step["name"], step.get("startedAt") or "")
            if step["status"] == "running" or key in shown:
                continue
            shown.add(key)
            if not quiet:
                mark = STEP_MARKS.get(step["status"], "?")
                seconds = step.get("durationSeconds") or 0.0
                console.print(
                    f"  {mark} {step['name']:<15} {seconds:7.1f} s  {step.get('message') or ''}",
                    highlight=False,
                )
        if run["status"] in TERMINAL:
            return run
        time.sleep(POLL_SECONDS)
        run = client.get(f"/api/dr/runs/{run['id']}")


def _finish(run: dict[str, Any], output: OutputFormat) -> None:
    def render() -> None:
        if run["status"] == "succeeded":
            console.print(
                f"[green]{run['kind']} of {run.get('application') or run.get('sourceRegion')} succeeded[/]: "
                f"RTO {run.get('rtoSeconds')} s, RPO {run.get('rpoSeconds')} s",
                highlight=False,
            )

    emit(run, output, render)
    if run["status"] != "succeeded":
        raise CliError(f"{run['kind']} {run['status']}: {run.get('message')}")


@app.command("failover")
def failover(
    application: str = typer.Argument(..., help="Application id, name or project/name."),
    to: str | None = typer.Option(None, "--to", help="Target region code or id (default: best DR region)."),
    force: bool = typer.Option(False, "--force", help="Fail over even though the active region is healthy."),
    output: OutputFormat = OutputOption,
) -> None:
    """Fail an application over to a DR region and show each step as it finishes."""
    client = ApiClient(timeout=600)
    target = resolve(client, application)
    run = client.post(f"/api/applications/{target['id']}/failover", {"targetRegionId": to, "force": force})
    console.print(
        f"failover run {run['id']}: {run['application']} {run['sourceRegion']} → {run['targetRegion']}"
    )
    _finish(follow(client, run, quiet=output == OutputFormat.JSON), output)


@app.command("failback")
def failback(
    application: str = typer.Argument(..., help="Application id, name or project/name."),
    force: bool = typer.Option(False, "--force", help="Fail back even though the active region is healthy."),
    output: OutputFormat = OutputOption,
) -> None:
    """Move an application back to its home region, after a fresh backup where it runs now."""
    client = ApiClient(timeout=600)
    target = resolve(client, application)
    run = client.post(f"/api/applications/{target['id']}/failback", {"force": force})
    console.print(
        f"failback run {run['id']}: {run['application']} {run['sourceRegion']} → {run['targetRegion']}"
    )
    _finish(follow(client, run, quiet=output == OutputFormat.JSON), output)


@app.command("region-failover")
def region_failover(
    region: str = typer.Argument(..., help="Region code or id whose applications fail over."),
    to: str | None = typer.Option(
        None, "--to", help="Target region for every app (default: each app's best)."
    ),
    force: bool = typer.Option(False, "--force", help="Fail over even though the region has quorum."),
    concurrency: int = typer.Option(
        2, "--concurrency", min=1, max=16, help="Applications failed over at once."
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Fail every application with a DR policy in a region over, by priority."""
    client = ApiClient(timeout=600)
    source = resolve_region(client, region)
    run = client.post(
        f"/api/regions/{source['id']}/failover",
        {"targetRegionId": to, "force": force, "concurrency": concurrency},
    )
    console.print(f"region failover run {run['id']} of {source['code']}")
    run = follow(client, run, quiet=True)
    children = [client.get(f"/api/dr/runs/{child}") for child in run.get("children") or []]
    if output == OutputFormat.JSON:
        emit({**run, "runs": children}, output, lambda: None)
    else:
        print_table(children, RUN_COLUMNS, title=f"region failover {run['id']}: {run['status']}")
        console.print(run.get("message") or "", highlight=False)
    if run["status"] != "succeeded":
        raise CliError(f"region failover {run['status']}: {run.get('message')}")


@app.command("drill")
def drill(
    application: str = typer.Argument(..., help="Application id, name or project/name."),
    live: bool = typer.Option(False, "--live", help="Restore and deploy a drill copy, verify it, remove it."),
    to: str | None = typer.Option(None, "--to", help="DR region to drill into (default: the first)."),
    output: OutputFormat = OutputOption,
) -> None:
    """Plan a failover (dry-run, changes nothing) or rehearse it live under a drill name."""
    client = ApiClient(timeout=600)
    target = resolve(client, application)
    body = {"mode": "live" if live else "dry-run", "targetRegionId": to}
    result = client.post(f"/api/applications/{target['id']}/drills", body)
    if not live:
        emit(result, output, lambda: _print_plan(result))
        return
    console.print(f"live drill run {result['id']}: {result['application']} into {result['targetRegion']}")
    _finish(follow(client, result, quiet=output == OutputFormat.JSON), output)


def _print_plan(plan: dict[str, Any]) -> None:
    console.print(
        f"dry-run: {plan['application']} {plan['sourceRegion']} → {plan['targetRegion']}", highlight=False
    )
    for step in plan["steps"]:
        console.print(
            f"  {step['name']:<15} ~{step['estimatedSeconds']:6.1f} s  {step['action']}", highlight=False
        )
    meets = plan["meetsObjectives"]
    console.print(
        f"estimated RTO {plan['estimatedRtoSeconds']} s (objective {plan['objectives']['rtoSeconds']} s, "
        f"{'met' if meets['rto'] else 'missed'}); estimated RPO {plan['estimatedRpoSeconds']} s (objective "
        f"{plan['objectives']['rpoSeconds']} s, {'met' if meets['rpo'] else 'missed'})",
        highlight=False,
    )
    for problem in plan["problems"]:
        console.print(f"  [red]problem[/]: {problem}", highlight=False)


@app.command("runs")
def runs(
    application: str | None = typer.Argument(None, help="Only this application's runs."),
    kind: str | None = typer.Option(None, "--kind", help="failover, failback, region_failover or drill."),
    output: OutputFormat = OutputOption,
) -> None:
    """List DR runs, newest first."""
    client = ApiClient()
    params: dict[str, Any] = {"kind": kind} if kind else {}
    if application:
        params["applicationId"] = resolve(client, application)["id"]
    rows = client.get("/api/dr/runs", **params)
    emit(rows, output, lambda: print_table(rows, RUN_COLUMNS))


@app.command("run")
def show_run(
    run_id: int = typer.Argument(..., help="DR run id."), output: OutputFormat = OutputOption
) -> None:
    """Show one DR run with its steps."""
    run = ApiClient().get(f"/api/dr/runs/{run_id}")

    def render() -> None:
        print_record(run, RUN_COLUMNS)
        follow(ApiClient(), {**run, "status": run["status"] if run["status"] in TERMINAL else "succeeded"})

    emit(run, output, render)


@app.command("report")
def report(output: OutputFormat = OutputOption) -> None:
    """Per application: objectives, measured RTO/RPO of the last drill and failover, backup ages."""
    data = ApiClient().get("/api/dr/report")

    def render() -> None:
        print_table(data["applications"], REPORT_COLUMNS, title="DR report")
        region = data["controlPlane"]["region"]
        console.print(
            f"control plane: {'in region ' + region if region else 'outside every managed region'}",
            highlight=False,
        )
        for warning in data["controlPlane"]["warnings"]:
            console.print(f"[yellow]warning[/]: {warning}", highlight=False)
        for row in data["applications"]:
            for warning in row["warnings"]:
                if warning not in data["controlPlane"]["warnings"]:
                    console.print(f"[yellow]warning[/] {row['application']}: {warning}", highlight=False)

    emit(data, output, render)
