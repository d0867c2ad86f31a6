"""Rendering for the CLI: Rich tables by default, JSON with ``-o json``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
error_console = Console(stderr=True)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


Column = tuple[str, str | Callable[[dict[str, Any]], Any]]
"""A column: its header, and the record key or a function of the record that gives the cell."""

OutputOption = typer.Option(OutputFormat.TABLE, "--output", "-o", help="Output format: table or json.")


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False))


def print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    *,
    title: str | None = None,
) -> None:
    table = Table(title=title, show_lines=False)
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        cells = []
        for _, getter in columns:
            value = getter(row) if callable(getter) else row.get(getter)
            cells.append("" if value is None else str(value))
        table.add_row(*cells)
    console.print(table)


def print_record(record: dict[str, Any], fields: Sequence[Column]) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for label, getter in fields:
        value = getter(record) if callable(getter) else record.get(getter)
        table.add_row(label, "" if value is None else str(value))
    console.print(table)


def emit(data: Any, output: OutputFormat, render: Callable[[], None]) -> None:
    if output == OutputFormat.JSON:
        print_json(data)
    else:
        render()


def human_bytes(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return str(value)
