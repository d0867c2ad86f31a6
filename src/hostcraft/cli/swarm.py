"""``hostcraft swarm`` and ``hostcraft cluster``: form and operate a region's swarm."""

from __future__ import annotations

from typing import Any

import typer

from hostcraft.cli.client import ApiClient
from hostcraft.cli.output import OutputFormat, OutputOption, console, emit, print_table
from hostcraft.cli.regions import resolve as resolve_region
from hostcraft.cli.servers import resolve as resolve_server

app = typer.Typer(
    help="Swarm membership of servers: init, join, leave, promote, demote, drain, activate.",
    no_args_is_help=True,
)
cluster_app = typer.Typer(help="A region's cluster: quorum, leader, nodes and advice.", no_args_is_help=True)

ForceOption = typer.Option(False, "--force", help="Override the quorum guard (the cluster may lose quorum).")


def _render_result(result: dict[str, Any]) -> None:
    console.print(f"[green]ok[/] {result['message']} ({result['durationSeconds']:.1f} s)", highlight=False)
    guard = result.get("details", {}).get("guard")
    if guard:
        console.print(f"  guard: {guard}", highlight=False)


def _run(server: str, action: str, body: dict[str, Any], output: OutputFormat) -> None:
    client = ApiClient()
    server_id = resolve_server(client, server)["id"]
    result = client.post(f"/api/servers/{server_id}/swarm/{action}", body)
    emit(result, output, lambda: _render_result(result))


@app.command("init")
def init(
    server: str = typer.Argument(..., help="Server id or name."),
    advertise_address: str = typer.Option(
        ..., "--advertise-address", help="Address other nodes reach, IP[:port]."
    ),
    manager_count: int | None = typer.Option(
        None, "--manager-count", help="Managers you intend to run (odd)."
    ),
    force_new_cluster: bool = typer.Option(
        False, "--force-new-cluster", help="Re-form a swarm that lost quorum from this surviving manager."
    ),
    heartbeat: float | None = typer.Option(
        None, "--dispatcher-heartbeat", help="Seconds; Swarm's default is 5."
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Create the region's swarm on a server."""
    body: dict[str, Any] = {"advertiseAddress": advertise_address, "forceNewCluster": force_new_cluster}
    if manager_count is not None:
        body["managerCount"] = manager_count
    if heartbeat is not None:
        body["dispatcherHeartbeatSeconds"] = heartbeat
    _run(server, "init", body, output)


@app.command("join")
def join(
    server: str = typer.Argument(..., help="Server id or name."),
    manager: bool = typer.Option(False, "--manager", help="Join as a manager instead of a worker."),
    manager_address: str | None = typer.Option(
        None, "--manager-address", help="Default: a reachable manager."
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Join a server to its region's swarm (the join token is fetched by HostCraft)."""
    body: dict[str, Any] = {"asManager": manager}
    if manager_address:
        body["managerAddress"] = manager_address
    _run(server, "join", body, output)


@app.command("leave")
def leave(
    server: str = typer.Argument(..., help="Server id or name."),
    force: bool = ForceOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Take a server out of the swarm (a manager is demoted first)."""
    _run(server, "leave", {"force": force}, output)


@app.command("promote")
def promote(
    server: str = typer.Argument(..., help="Server id or name."), output: OutputFormat = OutputOption
) -> None:
    """Promote a worker to manager."""
    _run(server, "promote", {}, output)


@app.command("demote")
def demote(
    server: str = typer.Argument(..., help="Server id or name."),
    force: bool = ForceOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Demote a manager to worker (refused when quorum would be at risk)."""
    _run(server, "demote", {"force": force}, output)


@app.command("drain")
def drain(
    server: str = typer.Argument(..., help="Server id or name."),
    force: bool = ForceOption,
    timeout: float = typer.Option(180, "--timeout", help="Seconds to wait for tasks to move."),
    output: OutputFormat = OutputOption,
) -> None:
    """Move every task off a node without downtime, then keep it drained."""
    with console.status("draining: starting replacements elsewhere first…"):
        _run(server, "drain", {"force": force, "timeoutSeconds": timeout}, output)


@app.command("activate")
def activate(
    server: str = typer.Argument(..., help="Server id or name."), output: OutputFormat = OutputOption
) -> None:
    """Let a drained or paused node take tasks again."""
    _run(server, "activate", {}, output)


@app.command("join-tokens")
def tokens(
    region: str = typer.Argument(..., help="Region id or code."), output: OutputFormat = OutputOption
) -> None:
    """Print the swarm's join tokens (admin token needed; the read is recorded)."""
    client = ApiClient()
    result = client.get(f"/api/regions/{resolve_region(client, region)['id']}/swarm/join-tokens")

    def render() -> None:
        for role, token in result.items():
            typer.echo(f"{role}: {token}")

    emit(result, output, render)


@cluster_app.command("show")
def show(
    region: str = typer.Argument(..., help="Region id or code."), output: OutputFormat = OutputOption
) -> None:
    """Show quorum, fault tolerance, the leader, every node and advice."""
    client = ApiClient()
    report = client.get(f"/api/regions/{resolve_region(client, region)['id']}/cluster")
    emit(report, output, lambda: render_cluster(report))


def render_cluster(report: dict[str, Any]) -> None:
    colour = {"healthy": "green", "degraded": "yellow", "at_risk": "red", "quorum_lost": "red"}[
        report["status"]
    ]
    managers = report["managers"]
    leader = (report.get("leader") or {}).get("hostname") or "none"
    console.print(
        f"region [bold]{report['regionCode']}[/]: [{colour}]{report['status']}[/] — managers "
        f"{managers['reachable']}/{managers['total']} reachable, quorum {managers['quorum']}, "
        f"tolerates {managers['faultTolerance']} failure(s); leader {leader}; workers "
        f"{report['workers']['ready']}/{report['workers']['total']} ready (via {report['via'] or 'engines'})",
        highlight=False,
    )
    print_table(
        report["nodes"],
        [
            ("HOSTNAME", "hostname"),
            ("ROLE", "role"),
            ("STATE", "state"),
            ("AVAILABILITY", "availability"),
            ("REACHABILITY", "reachability"),
            ("LEADER", lambda n: "yes" if n["leader"] else ""),
            ("SERVER", "serverName"),
            ("ADDRESS", "address"),
        ],
    )
    for advice in report["advice"]:
        console.print(f"  advice: {advice}", highlight=False)
    for error in report.get("errors") or []:
        console.print(f"  [yellow]note:[/] {error}", highlight=False)
