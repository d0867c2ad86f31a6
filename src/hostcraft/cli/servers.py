"""``hostcraft server``: register, list, validate and health-check Docker engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

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

app = typer.Typer(help="Servers: Docker engines, each a swarm node of one region.", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("REGION", "regionCode"),
    ("ENDPOINT", "endpoint"),
    ("ENGINE", lambda s: s["engine"]["engineVersion"]),
    (
        "SWARM",
        lambda s: " ".join(
            filter(None, [s["swarm"]["state"], s["swarm"]["role"], s["swarm"]["availability"]])
        ),
    ),
    ("VALIDATED", "validatedAt"),
]
DETAIL: list[Column] = [
    ("id", "id"),
    ("name", "name"),
    ("region", "regionCode"),
    ("endpoint", "endpoint"),
    ("failure domain", "failureDomain"),
    ("engine", lambda s: f"{s['engine']['engineVersion']} (API {s['engine']['apiVersion']})"),
    ("os", lambda s: s["engine"]["os"]),
    ("cpus", lambda s: s["engine"]["cpus"]),
    ("memory", lambda s: human_bytes(s["engine"]["memoryBytes"])),
    ("swarm state", lambda s: s["swarm"]["state"]),
    ("node id", lambda s: s["swarm"]["nodeId"]),
    ("role", lambda s: s["swarm"]["role"]),
    ("availability", lambda s: s["swarm"]["availability"]),
    ("cluster id", lambda s: s["swarm"]["clusterId"]),
    ("validated", "validatedAt"),
]


def resolve(client: ApiClient, reference: str) -> dict[str, Any]:
    """Find a server by id or name."""
    if reference.isdigit():
        server: dict[str, Any] = client.get(f"/api/servers/{reference}")
        return server
    for server in client.get("/api/servers"):
        if server["name"] == reference:
            return dict(server)
    raise CliError(f"server {reference!r} not found: 'hostcraft server ls' lists them")


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as exc:
        raise CliError(f"failed to read {path}: {exc.strerror}") from exc


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Unique server name."),
    endpoint: str = typer.Option(
        ..., "--endpoint", help="unix:///path, tcp://host:port or ssh://user@host[:port]."
    ),
    region: str = typer.Option(..., "--region", help="Region id or code."),
    failure_domain: str | None = typer.Option(None, "--failure-domain", help="Rack, zone or datacenter."),
    tls_ca: Path | None = typer.Option(None, "--tls-ca", help="CA certificate file (tcp)."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Client certificate file (tcp)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Client key file (tcp)."),
    ssh_key: Path | None = typer.Option(None, "--ssh-key", help="Private key file (ssh)."),
    ssh_host_key: str | None = typer.Option(
        None, "--ssh-host-key", help="Server host key, 'ssh-ed25519 AAAA...'."
    ),
    skip_validation: bool = typer.Option(False, "--skip-validation", help="Register without connecting."),
    output: OutputFormat = OutputOption,
) -> None:
    """Register a server; HostCraft connects to it first unless --skip-validation."""
    body = {
        "name": name,
        "endpoint": endpoint,
        "regionId": int(region) if region.isdigit() else region,
        "failureDomain": failure_domain,
        "tlsCa": _read(tls_ca),
        "tlsCert": _read(tls_cert),
        "tlsKey": _read(tls_key),
        "sshPrivateKey": _read(ssh_key),
        "sshKnownHostKey": ssh_host_key,
        "skipValidation": skip_validation,
    }
    server = ApiClient().post("/api/servers", {k: v for k, v in body.items() if v is not None})
    emit(server, output, lambda: print_record(server, DETAIL))


@app.command("ls")
def list_servers(
    region: str | None = typer.Option(None, "--region", help="Only this region (id or code)."),
    output: OutputFormat = OutputOption,
) -> None:
    client = ApiClient()
    servers = client.get("/api/servers")
    if region:
        servers = [s for s in servers if region in (str(s["regionId"]), s["regionCode"])]
    emit(servers, output, lambda: print_table(servers, COLUMNS))


@app.command("show")
def show(
    server: str = typer.Argument(..., help="Server id or name."), output: OutputFormat = OutputOption
) -> None:
    record = resolve(ApiClient(), server)
    emit(record, output, lambda: print_record(record, DETAIL))


@app.command("rm")
def remove(server: str = typer.Argument(..., help="Server id or name.")) -> None:
    """Forget a server; its engine and swarm membership are not touched."""
    client = ApiClient()
    record = resolve(client, server)
    client.delete(f"/api/servers/{record['id']}")
    typer.echo(f"removed server {record['name']}")


@app.command("validate")
def validate(
    server: str = typer.Argument(..., help="Server id or name."), output: OutputFormat = OutputOption
) -> None:
    """Connect to the engine and record its version, resources and swarm membership."""
    client = ApiClient()
    record = client.post(f"/api/servers/{resolve(client, server)['id']}/validate")
    emit(record, output, lambda: print_record(record, DETAIL))


@app.command("health")
def health(
    server: str = typer.Argument(..., help="Server id or name."),
    refresh: bool = typer.Option(False, "--refresh", help="Measure now instead of showing the last check."),
    history: int = typer.Option(0, "--history", help="Also list the N newest checks."),
    output: OutputFormat = OutputOption,
) -> None:
    client = ApiClient()
    server_id = resolve(client, server)["id"]
    if refresh:
        client.post(f"/api/servers/{server_id}/health")
    report = client.get(f"/api/servers/{server_id}/health", history=history or None)
    emit(report, output, lambda: render_health(report))
    if report["status"] == "unreachable":
        raise typer.Exit(2)


def render_health(report: dict[str, Any]) -> None:
    colour = {"healthy": "green", "degraded": "yellow", "unreachable": "red"}.get(report["status"], "white")
    console.print(f"[bold]{report['serverName']}[/]: [{colour}]{report['status']}[/]")
    for reason in report["reasons"]:
        console.print(f"  - {reason}")
    latest = report.get("latest")
    if not latest:
        return
    resources = latest["resources"]
    swarm = latest["swarm"]
    print_record(
        latest,
        [
            ("checked", "checkedAt"),
            ("latency", lambda r: f"{r['latencyMs']:.1f} ms" if r["latencyMs"] is not None else ""),
            (
                "swarm",
                lambda r: " ".join(
                    str(v)
                    for v in (
                        swarm.get("localState"),
                        swarm.get("role"),
                        swarm.get("nodeState"),
                        swarm.get("availability"),
                    )
                    if v
                ),
            ),
            ("cpus", lambda r: resources.get("cpus")),
            (
                "memory available",
                lambda r: (
                    f"{human_bytes(resources.get('memoryAvailableBytes'))} of "
                    f"{human_bytes(resources.get('memoryTotalBytes'))}"
                ),
            ),
            (
                "disk free",
                lambda r: (
                    f"{human_bytes(resources.get('diskFreeBytes'))} of "
                    f"{human_bytes(resources.get('diskTotalBytes'))} ({resources.get('dataRoot')})"
                ),
            ),
            (
                "peers",
                lambda r: (
                    ", ".join(
                        f"{p.get('hostname') or p['address']}:{'ok' if p.get('reachable') else 'FAIL'}"
                        for p in r["peers"]
                    )
                    or "none"
                ),
            ),
        ],
    )
    if report.get("history"):
        print_table(
            report["history"],
            [
                ("CHECKED", "checkedAt"),
                ("STATUS", "status"),
                ("LATENCY MS", lambda r: f"{r['latencyMs']:.1f}" if r["latencyMs"] else ""),
                ("REASONS", lambda r: "; ".join(r["reasons"])),
            ],
        )
