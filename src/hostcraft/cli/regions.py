"""``hostcraft region``: add, list, show and remove regions."""

from __future__ import annotations

import typer

from hostcraft.cli.client import ApiClient
from hostcraft.cli.output import Column, OutputFormat, OutputOption, emit, print_record, print_table

app = typer.Typer(help="Regions: failure domains, each holding one Swarm cluster.", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("CODE", "code"),
    ("NAME", "name"),
    ("PRIMARY", lambda r: "yes" if r["isPrimary"] else ""),
    ("PRIORITY", "priority"),
    ("REGISTRY", lambda r: r.get("imageRegistry") or ""),
    ("SERVERS", "serverCount"),
]


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Display name, e.g. 'EU-West-1 (Primary)'."),
    code: str = typer.Option(..., "--code", help="Unique code: lowercase letters, digits and '-'."),
    priority: int = typer.Option(1, "--priority", help="1 = first choice for failover."),
    primary: bool = typer.Option(False, "--primary", help="Make this the primary region."),
    registry: str | None = typer.Option(
        None, "--registry", help="HOST:PORT of the image registry the region's nodes pull from."
    ),
    output: OutputFormat = OutputOption,
) -> None:
    region = ApiClient().post(
        "/api/regions",
        {"name": name, "code": code, "priority": priority, "isPrimary": primary, "imageRegistry": registry},
    )
    emit(region, output, lambda: print_record(region, COLUMNS))


@app.command("ls")
def list_regions(output: OutputFormat = OutputOption) -> None:
    regions = ApiClient().get("/api/regions")
    emit(regions, output, lambda: print_table(regions, COLUMNS))


def resolve(client: ApiClient, reference: str) -> dict[str, object]:
    """Find a region by id or code."""
    if reference.isdigit():
        region: dict[str, object] = client.get(f"/api/regions/{reference}")
        return region
    for region in client.get("/api/regions"):
        if region["code"] == reference:
            return dict(region)
    from hostcraft.cli.client import CliError

    raise CliError(f"region {reference!r} not found: 'hostcraft region ls' lists them")


@app.command("show")
def show(
    region: str = typer.Argument(..., help="Region id or code."), output: OutputFormat = OutputOption
) -> None:
    client = ApiClient()
    record = resolve(client, region)
    emit(record, output, lambda: print_record(record, COLUMNS))


@app.command("rm")
def remove(region: str = typer.Argument(..., help="Region id or code.")) -> None:
    client = ApiClient()
    record = resolve(client, region)
    client.delete(f"/api/regions/{record['id']}")
    typer.echo(f"removed region {record['code']}")
