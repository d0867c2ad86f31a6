"""Measure HostCraft's probe engine with many HTTP monitors, next to a bare httpx loop.

Both sides probe the same local target with the same schedule: ``--monitors`` monitors at
``--interval`` seconds, first probes spread over the interval the same way. HostCraft runs its
real ``ProbeEngine`` over a SQLite store (results written, incidents tracked); the bare loop only
sends the requests. The target is a small asyncio HTTP server in its own process, so neither side
shares its CPU with the server. For each side the script records the scheduling lag of every
probe (start time minus due time), the probes per second and the CPU seconds the process used.

    .venv/bin/python bench/probes.py --monitors 2000 --interval 10 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import heapq
import json
import multiprocessing
import os
import platform
import socket
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from hostcraft.config import Settings
from hostcraft.engine.probes import CLIENT_SHARDS, ProbeEngine, start_offset
from hostcraft.runtime import Runtime
from hostcraft.store.models import Application, Deployment, Region, utcnow

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@dataclass
class SideResult:
    side: str
    probes: int
    failures: int
    seconds: float
    cpu_seconds: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float

    @property
    def probes_per_second(self) -> float:
        return self.probes / self.seconds

    @property
    def cpu_seconds_per_1000_probes(self) -> float:
        return 1000 * self.cpu_seconds / max(self.probes, 1)


def serve_target(port: int, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(RESPONSE)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def lag_result(side: str, lags: list[float], failures: int, seconds: float, cpu: float) -> SideResult:
    return SideResult(
        side=side,
        probes=len(lags),
        failures=failures,
        seconds=seconds,
        cpu_seconds=cpu,
        lag_p50_ms=1000 * percentile(lags, 0.50),
        lag_p99_ms=1000 * percentile(lags, 0.99),
        lag_max_ms=1000 * max(lags, default=float("nan")),
    )


def run_hostcraft(url: str, monitors: int, interval: float, duration: float) -> SideResult:
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            data_dir=Path(directory),
            database_url=f"sqlite:///{directory}/bench.db",
            engine_enabled=False,
            probe_refresh_seconds=5.0,
            probe_max_concurrency=1000,
        )
        runtime = Runtime.create(settings)
        add_monitors(runtime, url, monitors, interval)
        engine = ProbeEngine(runtime, recovery=False)
        cpu_before, started = time.process_time(), time.monotonic()
        engine.start()
        time.sleep(duration)
        engine.stop()
        seconds, cpu = time.monotonic() - started, time.process_time() - cpu_before
        runtime.close()
        return lag_result("hostcraft", engine.stats.lags, engine.stats.failures, seconds, cpu)


def add_monitors(runtime: Runtime, url: str, monitors: int, interval: float) -> None:
    with runtime.store.session() as session:
        region = Region(name="Bench", code="bench", is_primary=True, priority=1)
        session.add(region)
        session.flush()
        for index in range(monitors):
            document = {
                "name": f"app{index}",
                "project": "bench",
                "image": "web:1",
                "healthCheckUrl": url,
                "healthCheckIntervalSeconds": interval,
                "healthCheckTimeoutSeconds": min(5.0, interval / 2),
            }
            app = Application(
                name=f"app{index}",
                project="bench",
                region_id=region.id,
                spec=document,
                service_id=f"svc{index}",
            )
            session.add(app)
            session.flush()
            session.add(
                Deployment(
                    application_id=app.id,
                    kind="deploy",
                    status="succeeded",
                    spec=document,
                    image="web:1",
                    actor="bench",
                    started_at=utcnow(),
                    finished_at=utcnow(),
                )
            )
        session.commit()


def run_bare(url: str, monitors: int, interval: float, duration: float) -> SideResult:
    """Run the same schedule with a plain httpx client: the limit the engine is compared to."""

    async def main() -> tuple[list[float], int]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        queue = [(start + start_offset(index + 1, interval), index) for index in range(monitors)]
        heapq.heapify(queue)
        lags: list[float] = []
        failures = 0
        semaphore = asyncio.Semaphore(1000)
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)

        # The same pools as the probe engine (CLIENT_SHARDS of them), so the loop is the limit.
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(httpx.AsyncClient(limits=limits))
                for _ in range(CLIENT_SHARDS)
            ]

            async def probe(due: float, index: int) -> None:
                nonlocal failures
                async with semaphore:
                    lags.append(loop.time() - due)
                    try:
                        client = clients[(index + 1) % CLIENT_SHARDS]
                        response = await client.get(url, timeout=min(5.0, interval / 2))
                        failures += 0 if response.status_code == 200 else 1
                    except httpx.HTTPError:
                        failures += 1

            tasks: set[asyncio.Task[None]] = set()
            while loop.time() < start + duration:
                while queue and queue[0][0] <= loop.time():
                    due, index = heapq.heappop(queue)
                    heapq.heappush(queue, (due + interval, index))
                    task = asyncio.create_task(probe(due, index))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, min(queue[0][0] - loop.time(), 1.0)))
            await asyncio.gather(*tasks, return_exceptions=True)
        return lags, failures

    cpu_before, started = time.process_time(), time.monotonic()
    lags, failures = asyncio.run(main())
    return lag_result(
        "bare httpx", lags, failures, time.monotonic() - started, time.process_time() - cpu_before
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--monitors", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per side")
    arguments = parser.parse_args()

    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve_target, args=(port, ready), daemon=True)
    server.start()
    ready.wait(10)
    url = f"http://127.0.0.1:{port}/health"
    try:
        results = [
            run_bare(url, arguments.monitors, arguments.interval, arguments.duration),
            run_hostcraft(url, arguments.monitors, arguments.interval, arguments.duration),
        ]
    finally:
        server.terminate()

    expected_rate = arguments.monitors / arguments.interval
    print(
        f"{arguments.monitors} monitors every {arguments.interval:g} s: {expected_rate:.0f} probes/s expected"
    )
    print(
        f"{'side':<12}{'probes':>8}{'fail':>6}{'probes/s':>10}"
        f"{'lag p50 ms':>12}{'lag p99 ms':>12}{'CPU s/1000':>12}"
    )
    for result in results:
        print(
            f"{result.side:<12}{result.probes:>8}{result.failures:>6}{result.probes_per_second:>10.1f}"
            f"{result.lag_p50_ms:>12.1f}{result.lag_p99_ms:>12.1f}{result.cpu_seconds_per_1000_probes:>12.2f}"
        )
    bare, ours = results
    print(
        "CPU ratio HostCraft / bare: "
        f"{ours.cpu_seconds_per_1000_probes / bare.cpu_seconds_per_1000_probes:.2f}"
    )

    RESULTS_DIR.mkdir(exist_ok=True)
    record = {
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "arguments": vars(arguments),
        "results": [{**asdict(result), "probes_per_second": result.probes_per_second} for result in results],
        "lag_p50_median_ms": statistics.median([result.lag_p50_ms for result in results]),
    }
    (RESULTS_DIR / f"probes-{int(time.time())}.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
