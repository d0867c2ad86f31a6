"""``hostcraft lab``: a real multi-node Docker Swarm on this machine, for tests and demos."""

from __future__ import annotations

from typing import Any

import typer

from hostcraft.cli.client import ApiClient, CliError
from hostcraft.cli.output import OutputFormat, OutputOption, console, emit, print_table
from hostcraft.errors import HostCraftError

app = typer.Typer(
    help="Local lab: each node is a dockerd in its own network namespace (needs root and Linux).",
    no_args_is_help=True,
)


def _progress(message: str) -> None:
    console.print(f"  {message}", highlight=False)


def _lab(name: str) -> Any:
    from hostcraft.lab import Lab

    try:
        return Lab.load(name)
    except HostCraftError as exc:
        raise CliError(exc.message) from exc


def _find_node(node: str) -> tuple[Any, Any]:
    """Find a node by its name (``<lab>-m1``) across the running labs."""
    from hostcraft.lab import list_labs

    for lab in list_labs():
        for candidate in lab.nodes:
            if candidate.name == node:
                return lab, candidate
    raise CliError(f"lab node {node!r} not found: 'hostcraft lab ls' lists labs and their nodes")


def _guarded(action: Any) -> Any:
    try:
        return action()
    except HostCraftError as exc:
        raise CliError(exc.message) from exc


@app.command("up")
def up(
    name: str = typer.Argument(..., help="Lab name: a lowercase letter, then up to 7 letters or digits."),
    managers: int = typer.Option(3, "--managers", min=1, max=9),
    workers: int = typer.Option(2, "--workers", min=0, max=20),
    subnet: str | None = typer.Option(
        None, "--subnet", help="IPv4 /24 for the lab bridge (default: a free 10.77.k.0/24)."
    ),
    region: str | None = typer.Option(
        None, "--region", help="Region code for --register (default: the lab name)."
    ),
    register: bool = typer.Option(
        False,
        "--register",
        help="Create the region, register every node as a "
        "server and form the swarm through the HostCraft API.",
    ),
    images: bool = typer.Option(True, "--images/--no-images", help="Build and push the lab images."),
    databases: bool = typer.Option(
        False,
        "--databases",
        help="Also push the PostgreSQL, MariaDB and Redis images (built with debootstrap on first use).",
    ),
    database: list[str] = typer.Option(
        [],
        "--database",
        help="Also push this database image only: postgresql, mariadb or redis (repeatable).",
    ),
    backup_image: bool = typer.Option(
        False,
        "--backup-image",
        help="Also build the backup job image from this machine's restic and push it.",
    ),
    s3: bool = typer.Option(
        False,
        "--s3",
        help="Also start an S3 server (moto, objects in memory) on the lab bridge, port 9000, "
        "with a bucket named backups.",
    ),
) -> None:
    """Start (or reuse) a lab; without --register the lab forms its swarm itself."""
    from hostcraft.lab import build_images, lab_up, push_backup_image, push_database_images, start_s3_server

    console.print(f"lab {name}: {managers} manager(s), {workers} worker(s)")
    lab = _guarded(
        lambda: lab_up(
            name, managers=managers, workers=workers, subnet=subnet, swarm=not register, progress=_progress
        )
    )
    if images:
        built = _guarded(lambda: build_images(lab, progress=_progress))
        for logical, reference in built.items():
            console.print(f"  image {logical}: {reference}", highlight=False)
    if databases or database:
        engines = None if databases else database
        pushed = _guarded(lambda: push_database_images(lab, engines=engines, progress=_progress))
        for engine, reference in pushed.items():
            console.print(f"  image {engine}: {reference}", highlight=False)
    if backup_image:
        reference = _guarded(lambda: push_backup_image(lab, progress=_progress))
        console.print(f"  image backup: {reference}", highlight=False)
    if s3:
        endpoint = _guarded(lambda: start_s3_server(lab))
        console.print(f"  S3 server: {endpoint}", highlight=False)
    if register:
        register_lab(lab, region or name)
    print_table(
        [_node_row(lab, node) for node in lab.nodes], NODE_COLUMNS, title=f"lab {lab.name} ({lab.subnet})"
    )


def register_lab(lab: Any, region_code: str) -> None:
    """Create the region, register the nodes and form the swarm through the API."""
    client = ApiClient()
    regions = {region["code"]: region for region in client.get("/api/regions")}
    region = regions.get(region_code) or client.post(
        "/api/regions",
        {
            "name": f"Lab {lab.name}",
            "code": region_code,
            "priority": len(regions) + 1,
            "imageRegistry": lab.registry,
        },
    )
    registered = {server["endpoint"]: server for server in client.get("/api/servers")}
    servers = {}
    for node in lab.nodes:
        server = registered.get(node.endpoint) or client.post(
            "/api/servers", {"name": node.name, "endpoint": node.endpoint, "regionId": region["id"]}
        )
        servers[node.name] = server
        console.print(f"  server {server['name']} registered in region {region_code}", highlight=False)
    first = lab.nodes[0]
    if servers[first.name]["swarm"]["state"] != "active":
        client.post(
            f"/api/servers/{servers[first.name]['id']}/swarm/init",
            {
                "advertiseAddress": first.address,
                "managerCount": sum(n.role == "manager" for n in lab.nodes),
                "dispatcherHeartbeatSeconds": 1,
            },
        )
        console.print(f"  swarm initialised on {first.name}", highlight=False)
    for node in lab.nodes[1:]:
        current = client.get(f"/api/servers/{servers[node.name]['id']}")
        if current["swarm"]["state"] == "active":
            continue
        client.post(
            f"/api/servers/{servers[node.name]['id']}/swarm/join", {"asManager": node.role == "manager"}
        )
        console.print(f"  {node.name} joined as {node.role}", highlight=False)


NODE_COLUMNS: list[Any] = [
    ("NODE", "node"),
    ("ROLE", "role"),
    ("ADDRESS", "address"),
    ("RUNNING", "running"),
    ("ENDPOINT", "endpoint"),
]


def _node_row(lab: Any, node: Any) -> dict[str, Any]:
    from hostcraft.lab import node_running

    return {
        "lab": lab.name,
        "node": node.name,
        "role": node.role,
        "address": node.address,
        "running": "yes" if node_running(lab, node) else "no",
        "endpoint": node.endpoint,
    }


@app.command("down")
def down(name: str = typer.Argument(..., help="Lab name.")) -> None:
    """Stop every node and remove namespaces, links, rules and data roots of the lab."""
    from hostcraft.lab import lab_down, leftovers

    _guarded(lambda: lab_down(name, progress=_progress))
    remaining = leftovers(name)
    if remaining:
        raise CliError(f"lab {name} left these behind: {', '.join(remaining)}")
    console.print(f"lab {name} is down; nothing left behind")


@app.command("ls")
def list_labs_command(output: OutputFormat = OutputOption) -> None:
    """List labs and their nodes."""
    from hostcraft.lab import list_labs

    rows = [_node_row(lab, node) for lab in list_labs() for node in lab.nodes]
    emit(rows, output, lambda: print_table(rows, [("LAB", "lab"), *NODE_COLUMNS]))


@app.command("images")
def images_command(
    name: str = typer.Argument(..., help="Lab name."),
    databases: bool = typer.Option(
        False,
        "--databases",
        help="Also push the PostgreSQL, MariaDB and Redis images (built with debootstrap on first use).",
    ),
    backup_image: bool = typer.Option(
        False,
        "--backup-image",
        help="Also build the backup job image from this machine's restic and push it.",
    ),
) -> None:
    """Build the lab images from Debian packages and push them to the lab registry."""
    from hostcraft.lab import build_images, push_backup_image, push_database_images

    lab = _lab(name)
    for logical, reference in _guarded(lambda: build_images(lab, progress=_progress)).items():
        console.print(f"{logical}: {reference}", highlight=False)
    if databases:
        for engine, reference in _guarded(lambda: push_database_images(lab, progress=_progress)).items():
            console.print(f"{engine}: {reference}", highlight=False)
    if backup_image:
        console.print(
            f"backup: {_guarded(lambda: push_backup_image(lab, progress=_progress))}", highlight=False
        )


@app.command("outage")
def outage(name: str = typer.Argument(..., help="Lab name.")) -> None:
    """Lose the whole lab as a region: crash every node, stop its registry and S3 server."""
    from hostcraft.lab import region_outage

    lab = _lab(name)
    _guarded(lambda: region_outage(lab, progress=_progress))
    console.print(f"lab {name} is lost; `hostcraft lab down {name}` removes what is left", highlight=False)


def _node_action(verb: str, node: str) -> None:
    from hostcraft import lab as lab_module

    lab, lab_node = _find_node(node)
    action = getattr(lab_module, f"{verb}_node")
    _guarded(lambda: action(lab, lab_node.name))
    console.print(f"{verb}: {lab_node.name} ({lab_node.address})", highlight=False)


@app.command("kill")
def kill(node: str = typer.Argument(..., help="Node name, e.g. lab1-m1.")) -> None:
    """Crash a node: SIGKILL its engine."""
    _node_action("kill", node)


@app.command("stop")
def stop(node: str = typer.Argument(..., help="Node name.")) -> None:
    """Stop a node's engine cleanly."""
    _node_action("stop", node)


@app.command("start")
def start(node: str = typer.Argument(..., help="Node name.")) -> None:
    """Start a stopped or killed node's engine again."""
    _node_action("start", node)


@app.command("partition")
def partition(node: str = typer.Argument(..., help="Node name.")) -> None:
    """Cut a node's network link; its engine keeps running."""
    _node_action("partition", node)


@app.command("heal")
def heal(node: str = typer.Argument(..., help="Node name.")) -> None:
    """Restore a partitioned node's network link."""
    _node_action("heal", node)
