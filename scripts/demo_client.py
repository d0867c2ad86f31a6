"""The demo's clients of its apps: a load loop that counts failed requests, a writer, a reader.

scripts/demo runs it with HostCraft's virtual environment (httpx and psycopg come with
HostCraft). Every address is a lab node's, on the lab bridge of this machine.

    init    create the table the writer fills.
    load    request each app every 100 ms for a number of seconds, then print what failed.
    write   store a numbered note in the web app and a numbered row in PostgreSQL every second.
            Log each write that succeeded with its time.
    check   read what a region serves now and compare it with the writer's log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

PG_TIMEOUT_SECONDS = 1
HTTP_TIMEOUT_SECONDS = 1.0


@dataclass
class Counter:
    requests: int = 0
    failed: int = 0
    slowest: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, seconds: float, error: str | None) -> None:
        self.requests += 1
        self.slowest = max(self.slowest, seconds)
        if error is not None:
            self.failed += 1
            self.errors[error] = self.errors.get(error, 0) + 1


def pg_connect(address: str, *, database: str = "shop") -> psycopg.Connection[Any]:
    host, port = address.rsplit(":", 1)
    return psycopg.connect(
        host=host,
        port=int(port),
        user="postgres",
        dbname=database,
        password=os.environ["PGPASSWORD"],
        connect_timeout=PG_TIMEOUT_SECONDS,
        autocommit=True,
    )


def request_web(client: httpx.Client, nodes: list[str], port: int) -> str | None:
    """GET /version from the first node that serves it, as a load balancer with retries would."""
    for node in nodes:
        try:
            if client.get(f"http://{node}:{port}/version").status_code == 200:
                return None
        except httpx.HTTPError:
            continue
    return "no replica answered"


def request_notes(client: httpx.Client, url: str) -> str | None:
    try:
        response = client.get(f"{url}/cgi-bin/data")
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


def request_pg(address: str) -> str | None:
    try:
        with pg_connect(address) as connection:
            connection.execute("SELECT count(*) FROM orders").fetchone()
    except psycopg.Error as exc:
        return type(exc).__name__
    return None


def init(options: argparse.Namespace) -> int:
    with pg_connect(options.pg) as connection:
        connection.execute(
            "CREATE TABLE orders (id int PRIMARY KEY, note text, written_at timestamptz DEFAULT now())"
        )
    return 0


def load(options: argparse.Namespace) -> int:
    counters = {"web": Counter(), "notes": Counter(), "postgres": Counter()}
    deadline = time.monotonic() + options.seconds
    nodes = options.web_nodes.split(",")
    with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, trust_env=False) as client:
        while time.monotonic() < deadline:
            tick = time.monotonic()
            requests: list[tuple[str, Callable[[], str | None]]] = [
                ("web", lambda: request_web(client, nodes, options.web_port)),
                ("notes", lambda: request_notes(client, options.notes)),
                ("postgres", lambda: request_pg(options.pg)),
            ]
            for name, action in requests:
                started = time.monotonic()
                error = action()
                counters[name].add(time.monotonic() - started, error)
            time.sleep(max(0.0, options.interval - (time.monotonic() - tick)))
    for name, counter in counters.items():
        errors = ", ".join(f"{error} x{count}" for error, count in counter.errors.items())
        print(
            f"  {name:9} {counter.requests} requests, {counter.failed} failed, "
            f"slowest {counter.slowest:.2f} s{f' ({errors})' if errors else ''}"
        )
    return 1 if any(counter.failed for counter in counters.values()) else 0


def write(options: argparse.Namespace) -> int:
    """Write note N and row N once a second until stopped; log each success with its time."""
    log = Path(options.log)
    number = 0
    with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, trust_env=False) as client:
        while True:
            number += 1
            started = time.time()
            try:
                response = client.get(f"{options.notes}/cgi-bin/data", params={"value": f"note-{number}"})
                if response.status_code == 200:
                    _append(log, {"app": "notes", "number": number, "at": started})
            except httpx.HTTPError:
                pass
            try:
                with pg_connect(options.pg) as connection:
                    connection.execute(
                        "INSERT INTO orders (id, note) VALUES (%s, %s)", (number, f"order-{number}")
                    )
                _append(log, {"app": "postgres", "number": number, "at": started})
            except psycopg.Error:
                pass
            time.sleep(max(0.0, 1.0 - (time.time() - started)))


def _append(log: Path, entry: dict[str, Any]) -> None:
    with log.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


def check(options: argparse.Namespace) -> int:
    """Print what the region serves next to the writer's log; fail when it serves nothing written."""
    writes: dict[str, dict[int, float]] = {"notes": {}, "postgres": {}}
    for line in Path(options.log).read_text().splitlines():
        entry = json.loads(line)
        writes[entry["app"]][entry["number"]] = entry["at"]

    with httpx.Client(timeout=5.0, trust_env=False) as client:
        value = client.get(f"{options.notes}/cgi-bin/data").text.strip()
    with pg_connect(options.pg) as connection:
        row = connection.execute("SELECT count(*), max(id) FROM orders").fetchone()
    assert row is not None
    count, newest = int(row[0]), row[1]
    served = {
        "notes": int(value.removeprefix("note-")) if value.startswith("note-") else None,
        "postgres": int(newest) if newest is not None else None,
    }

    status = 0
    for app, number in served.items():
        if number is None or number not in writes[app]:
            shown = value if app == "notes" else f"{count} rows"
            print(f"  {app}: serves {shown}, which the writer never wrote")
            status = 1
            continue
        last = max(writes[app])
        lost = sum(1 for written in writes[app] if written > number)
        detail = f"{count} rows, the newest order-{number}" if app == "postgres" else f"note-{number}"
        print(
            f"  {app}: serves {detail}, written at {_clock(writes[app][number])}; "
            f"the writer's last success before the outage was #{last} at {_clock(writes[app][last])}, "
            f"so {lost} write(s) after the restored backup are lost"
        )
        if app == "postgres" and count != number:
            print(f"  postgres: expected rows 1..{number}, found {count} rows")
            status = 1
    return status


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("init", "load", "write", "check"):
        command = commands.add_parser(name)
        command.add_argument("--notes", required=True, help="base URL of the notes app")
        command.add_argument("--pg", required=True, help="HOST:PORT of the PostgreSQL app")
        if name == "load":
            command.add_argument("--web-nodes", required=True, help="comma-separated node addresses")
            command.add_argument("--web-port", type=int, default=8080)
            command.add_argument("--seconds", type=float, required=True)
            command.add_argument("--interval", type=float, default=0.1, help="seconds between rounds")
        elif name != "init":
            command.add_argument("--log", required=True, help="the writer's log (JSON lines)")
    options = parser.parse_args(argv)
    return {"init": init, "load": load, "write": write, "check": check}[options.command](options)


if __name__ == "__main__":
    sys.exit(main())
