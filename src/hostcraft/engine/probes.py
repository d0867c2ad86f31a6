"""The probe engine: an asyncio loop in its own thread that probes every monitored app on time.

Each app has its own interval. Its first probe is offset by a fraction of the interval derived
from its id, so a thousand apps with the same interval do not fire in one burst. HTTP probes
use httpx without following redirects unless the app asks for it. Results are written to the
store in batches from a worker thread, so a slow database never delays the next probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from hostcraft.domain.probes import is_link_local
from hostcraft.metrics import PROBE_DURATION
from hostcraft.services.monitoring import (
    MaintenanceLookup,
    ProbeOutcome,
    ProbeTarget,
    TargetCache,
    compact_history,
    no_maintenance,
    probe_targets,
    record_outcomes,
)
from hostcraft.services.recovery import run_recovery, watch_service
from hostcraft.store.models import utcnow

if TYPE_CHECKING:
    from hostcraft.runtime import Runtime

logger = logging.getLogger(__name__)
# httpx logs every request at INFO: one line per probe would drown the control plane's log.
logging.getLogger("httpx").setLevel(logging.WARNING)

FLUSH_SECONDS = 0.5
MAX_BODY_BYTES = 1 << 20
COMPACT_EVERY_SECONDS = 3600.0
USER_AGENT = "HostCraft-probe"
CLIENT_SHARDS = 8


@dataclass
class ProbeStats:
    """Scheduling lag of every probe started, for the benchmark and the metrics."""

    lags: list[float] = field(default_factory=list)
    probes: int = 0
    failures: int = 0

    def add(self, lag: float, ok: bool) -> None:
        self.probes += 1
        self.failures += 0 if ok else 1
        if len(self.lags) < 1_000_000:
            self.lags.append(lag)


def start_offset(application_id: int, interval: float) -> float:
    """Spread first probes over the interval: the same app always gets the same offset."""
    return ((application_id * 2654435761) % 1000) / 1000 * interval


class ProbeEngine:
    """Probe apps while ``active()`` is true (the process holds the engine lease)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        active: Callable[[], bool] = lambda: True,
        maintenance: MaintenanceLookup = no_maintenance,
        recovery: bool = True,
        on_outcome: Callable[[ProbeTarget, ProbeOutcome], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.active = active
        self.maintenance = maintenance
        self.recovery = recovery
        self.on_outcome = on_outcome
        self.stats = ProbeStats()
        self._targets: dict[int, ProbeTarget] = {}
        self._target_cache: TargetCache = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_thread, name="hostcraft-probes", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run_thread(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._ready.set()
        settings = self.runtime.settings
        limits = httpx.Limits(max_connections=settings.probe_max_concurrency, max_keepalive_connections=0)
        headers = {"User-Agent": USER_AGENT}
        # Keep-alive is off: each probe opens its own connection, as a new client would. httpcore
        # scans every connection of a pool for each request, so one pool with hundreds of probes
        # in flight costs CPU per probe that grows with their number: apps are spread over pools.
        async with contextlib.AsyncExitStack() as stack:
            self._clients = {
                (verify, shard): await stack.enter_async_context(
                    httpx.AsyncClient(verify=verify, limits=limits, headers=headers)
                )
                for verify in (True, False)
                for shard in range(CLIENT_SHARDS)
            }
            self._semaphore = asyncio.Semaphore(settings.probe_max_concurrency)
            self._results: list[tuple[ProbeTarget, ProbeOutcome]] = []
            tasks = [
                asyncio.create_task(self._schedule(), name="probe-schedule"),
                asyncio.create_task(self._flush_loop(), name="probe-flush"),
                asyncio.create_task(self._maintenance_loop(), name="probe-maintenance"),
            ]
            await self._stopping.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._flush()

    # Scheduling.

    async def _refresh_targets(self) -> None:
        if not self.active():
            self._targets = {}
            return
        try:
            targets = await asyncio.to_thread(self._load_targets)
        except Exception:
            logger.exception("failed to load the probe targets")
            return
        self._targets = {target.application_id: target for target in targets}

    def _load_targets(self) -> list[ProbeTarget]:
        with self.runtime.store.session() as session:
            return probe_targets(session, self._target_cache)

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        queue: list[tuple[float, int]] = []
        scheduled: dict[int, float] = {}
        next_refresh = 0.0
        in_flight: set[asyncio.Task[None]] = set()
        while True:
            now = loop.time()
            if now >= next_refresh:
                await self._refresh_targets()
                next_refresh = now + self.runtime.settings.probe_refresh_seconds
                for app_id, target in self._targets.items():
                    if app_id not in scheduled:
                        due = now + start_offset(app_id, target.interval_seconds)
                        scheduled[app_id] = due
                        heapq.heappush(queue, (due, app_id))
            while queue and queue[0][0] <= loop.time():
                due, app_id = heapq.heappop(queue)
                current = self._targets.get(app_id)
                if current is None:
                    scheduled.pop(app_id, None)  # the app is no longer monitored
                    continue
                if scheduled.get(app_id) != due:
                    continue
                next_due = due + current.interval_seconds
                scheduled[app_id] = next_due
                heapq.heappush(queue, (next_due, app_id))
                task = asyncio.create_task(self._probe(current, due))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            wake = min(queue[0][0] if queue else next_refresh, next_refresh)
            await asyncio.sleep(max(0.0, min(wake - loop.time(), 1.0)))

    async def _probe(self, target: ProbeTarget, due: float) -> None:
        loop = asyncio.get_running_loop()
        async with self._semaphore:
            lag = loop.time() - due
            try:
                outcome = await self.measure(target)
            except Exception as exc:
                # measure() handles the errors of a probe; anything else is a bug, still a result.
                logger.exception("failed to probe an app", extra={"app": target.application_id})
                outcome = ProbeOutcome(
                    target.application_id, utcnow(), ok=False, error=f"probe error: {exc!r}"
                )
        self.stats.add(lag, outcome.ok)
        if outcome.latency_ms is not None:
            PROBE_DURATION.labels(target.name, "ok" if outcome.ok else "failed").observe(
                outcome.latency_ms / 1000
            )
        self._results.append((target, outcome))
        if self.on_outcome is not None:
            self.on_outcome(target, outcome)

    # Measuring.

    async def measure(self, target: ProbeTarget) -> ProbeOutcome:
        """Probe one target once and return the outcome; probe errors become failed outcomes."""
        if target.kind == "swarm":
            return await asyncio.to_thread(watch_service, self.runtime, target.application_id)
        assert target.url is not None
        at = utcnow()
        refused = await self._link_local_refusal(target)
        if refused:
            return ProbeOutcome(target.application_id, at, ok=False, error=refused)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(target.timeout_seconds):
                if target.kind == "tcp":
                    return await self._tcp(target, at, started)
                return await self._http(target, at, started)
        except TimeoutError:
            return ProbeOutcome(
                target.application_id, at, ok=False, error=f"timed out after {target.timeout_seconds:g} s"
            )
        except (httpx.HTTPError, OSError) as exc:
            return ProbeOutcome(
                target.application_id,
                at,
                ok=False,
                latency_ms=(time.perf_counter() - started) * 1000,
                error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            )

    async def _http(self, target: ProbeTarget, at: dt.datetime, started: float) -> ProbeOutcome:
        options = target.options
        client = self._clients[(options.verify_tls, target.application_id % CLIENT_SHARDS)]
        assert target.url is not None
        async with client.stream(
            options.method, target.url, follow_redirects=options.follow_redirects
        ) as response:
            body = b""
            if options.body_contains is not None and options.method == "GET":
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= MAX_BODY_BYTES:
                        break
        latency = (time.perf_counter() - started) * 1000
        status = response.status_code
        if not options.status_ok(status):
            error = f"HTTP {status}, expected {options.expected_status}"
            if 300 <= status < 400 and not options.follow_redirects:
                error += f" (redirect to {response.headers.get('location', '?')} not followed)"
            return ProbeOutcome(
                target.application_id, at, ok=False, latency_ms=latency, status_code=status, error=error
            )
        if options.body_contains is not None and options.body_contains.encode() not in body:
            return ProbeOutcome(
                target.application_id,
                at,
                ok=False,
                latency_ms=latency,
                status_code=status,
                error=f"the response body does not contain {options.body_contains!r}",
            )
        return ProbeOutcome(target.application_id, at, ok=True, latency_ms=latency, status_code=status)

    async def _tcp(self, target: ProbeTarget, at: dt.datetime, started: float) -> ProbeOutcome:
        assert target.url is not None
        url = urlsplit(target.url)
        _, writer = await asyncio.open_connection(url.hostname, url.port)
        latency = (time.perf_counter() - started) * 1000
        writer.close()
        await writer.wait_closed()
        return ProbeOutcome(target.application_id, at, ok=True, latency_ms=latency)

    async def _link_local_refusal(self, target: ProbeTarget) -> str | None:
        """Refuse, without sending anything, a host that resolves to a link-local address."""
        if target.options.allow_link_local:
            return None
        host = urlsplit(target.url or "").hostname or ""
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None)
            except OSError as exc:
                return f"failed to resolve {host}: {exc}"
            addresses = [str(info[4][0]) for info in infos]
        # NOTE: httpx resolves the name again when it connects, so a name that resolves to another
        # address at the second look-up is not caught here.
        if any(is_link_local(address) for address in addresses):
            return (
                f"not probed: {host} resolves to a link-local address and healthProbe.allowLinkLocal is false"
            )
        return None

    # Writing results, recovery and compaction.

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self._flush()

    async def _flush(self) -> None:
        if not self._results:
            return
        batch, self._results = self._results, []
        try:
            await asyncio.to_thread(self._write, batch)
        except Exception:
            logger.exception("failed to store probe results", extra={"results": len(batch)})

    def _write(self, batch: list[tuple[ProbeTarget, ProbeOutcome]]) -> None:
        targets = {target.application_id: target for target, _ in batch}
        window = dt.timedelta(seconds=self.runtime.settings.incident_deployment_window_seconds)
        with self.runtime.store.session() as session:
            record_outcomes(
                session, [outcome for _, outcome in batch], targets=targets, deployment_window=window
            )
            session.commit()

    async def _maintenance_loop(self) -> None:
        settings = self.runtime.settings
        last_compaction = 0.0
        while True:
            await asyncio.sleep(settings.recovery_interval_seconds)
            if not self.active():
                continue
            if self.recovery:
                try:
                    await asyncio.to_thread(run_recovery, self.runtime, maintenance=self.maintenance)
                except Exception:
                    logger.exception("failed to run recovery")
            if time.monotonic() - last_compaction >= COMPACT_EVERY_SECONDS:
                last_compaction = time.monotonic()
                try:
                    await asyncio.to_thread(self._compact)
                except Exception:
                    logger.exception("failed to compact the probe history")

    def _compact(self) -> None:
        settings = self.runtime.settings
        with self.runtime.store.session() as session:
            removed = compact_history(
                session,
                now=utcnow(),
                raw_days=settings.probe_raw_retention_days,
                hourly_days=settings.probe_hourly_retention_days,
            )
            session.commit()
        if removed:
            logger.info("probe history compacted", extra={"raw_results": removed})
