"""``hostcraft token``: create, list and revoke API tokens."""

from __future__ import annotations

import typer

from hostcraft.cli.client import ApiClient
from hostcraft.cli.output import Column, OutputFormat, OutputOption, console, emit, print_table

app = typer.Typer(help="API tokens (admin).", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("ROLE", "role"),
    ("PREFIX", "prefix"),
    ("CREATED", "createdAt"),
    ("LAST USED", "lastUsedAt"),
    ("REVOKED", "revokedAt"),
]


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Unique token name."),
    role: str = typer.Option(..., "--role", help="admin, operator or viewer."),
    local: bool = typer.Option(
        False,
        "--local",
        help="Write straight into the store of this machine "
        "(HOSTCRAFT_DATA_DIR / HOSTCRAFT_DATABASE_URL), for a lost admin token.",
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Create a token and print it once; only its hash is stored."""
    if local:
        from hostcraft.config import get_settings
        from hostcraft.runtime import Runtime
        from hostcraft.services.events import record_event
        from hostcraft.services.tokens import create_token

        runtime = Runtime.create(get_settings())
        with runtime.store.session() as session:
            row, token = create_token(session, name=name, role=role)
            record_event(
                session,
                actor="cli:--local",
                action="token.create",
                target_type="token",
                target_id=row.id,
                target_name=row.name,
                outcome="succeeded",
                details={"role": row.role},
            )
            created = {"id": row.id, "name": row.name, "role": row.role, "token": token}
    else:
        created = ApiClient().post("/api/tokens", {"name": name, "role": role})

    def render() -> None:
        console.print(f"token [bold]{created['name']}[/] ({created['role']}) created; it is shown only once:")
        typer.echo(created["token"])

    emit(created, output, render)


@app.command("ls")
def list_tokens(output: OutputFormat = OutputOption) -> None:
    tokens = ApiClient().get("/api/tokens")
    emit(tokens, output, lambda: print_table(tokens, COLUMNS))


@app.command("revoke")
def revoke(token_id: int = typer.Argument(..., help="Token id from 'hostcraft token ls'.")) -> None:
    token = ApiClient().delete(f"/api/tokens/{token_id}")
    typer.echo(f"revoked token {token['name']}")
