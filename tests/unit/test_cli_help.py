"""Every CLI command prints its help: Rich markup in help texts is checked here."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from hostcraft.cli.main import app


def command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in (getattr(command, "commands", None) or {}).items():
        paths.extend(command_paths(sub, (*prefix, name)))
    return paths


def test_every_command_prints_help() -> None:
    root = typer.main.get_command(app)
    paths = command_paths(root)
    assert ("restore-self",) in paths
    runner = CliRunner()
    failures = {}
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        if result.exit_code != 0:
            failures[" ".join(path)] = repr(result.exception)
    assert failures == {}
