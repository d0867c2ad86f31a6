"""The engine: reconciler loops that run in the background of ``hostcraft up``.

Only the holder of the engine lease runs loops, so several API replicas sharing PostgreSQL
never act twice. The main loop checks the health of every server, turns the results into
alerts and rolls back paused updates. A second, faster loop sends pending alert messages.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from hostcraft.engine.lease import acquire_lease, release_lease
from hostcraft.engine.probes import ProbeEngine
from hostcraft.runtime import Runtime
from hostcraft.services.alert_delivery import deliver_pending
from hostcraft.services.backup_replication import forget_expired_replicas, retry_replication
from hostcraft.services.backup_schedules import prune_expired, run_due_backups
from hostcraft.services.backup_verification import start_due_verifications
from hostcraft.services.cluster_alerts import check_cluster_alerts
from hostcraft.services.deployments import reconcile_paused_updates, resume_interrupted_deployments
from hostcraft.services.dr_engine import DrWatch, dr_tick
from hostcraft.services.health import check_server, prune_history
from hostcraft.services.monitoring import maintenance_intervals_of
from hostcraft.services.self_backup import run_due_self_backup
from hostcraft.services.servers import list_servers
from hostcraft.store.models import Server

logger = logging.getLogger(__name__)


class Engine:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._delivery_thread: threading.Thread | None = None
        self._dr_thread: threading.Thread | None = None
        self.dr_watch = DrWatch()
        # time.monotonic() until which this process surely holds the lease; 0 when it does not.
        self._lease_valid_until = 0.0
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")
        self.probes = ProbeEngine(runtime, active=self.holds_lease, maintenance=maintenance_intervals_of)

    @property
    def interval(self) -> float:
        return self.runtime.settings.server_health_interval_seconds

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hostcraft-engine", daemon=True)
        self._thread.start()
        self._delivery_thread = threading.Thread(
            target=self._run_delivery, name="hostcraft-alert-delivery", daemon=True
        )
        self._delivery_thread.start()
        self._dr_thread = threading.Thread(target=self._run_dr, name="hostcraft-dr", daemon=True)
        self._dr_thread.start()
        if self.runtime.settings.probes_enabled:
            self.probes.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in (self._thread, self._delivery_thread, self._dr_thread):
            if thread is not None:
                thread.join(timeout=30)
        self.probes.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self.runtime.store.session() as session:
            release_lease(session, holder=self.holder)

    def _run(self) -> None:
        logger.info("engine started", extra={"holder": self.holder, "interval": self.interval})
        resumed = False
        while not self._stop.is_set():
            try:
                if self._hold_lease():
                    if not resumed:
                        # NOTE: with several HostCraft processes, a deployment still running in a
                        # process that does not hold the lease would be run a second time here.
                        resume_interrupted_deployments(self.runtime)
                        resumed = True
                    self.tick()
            except Exception:
                logger.exception("engine tick failed")
            self._stop.wait(self.interval)
        logger.info("engine stopped", extra={"holder": self.holder})

    def tick(self) -> None:
        """Run each check of one tick; a failing check is logged and the others still run."""
        steps: list[tuple[str, Callable[[], object]]] = [
            ("check server health", self.check_all_servers),
            ("evaluate cluster alerts", lambda: check_cluster_alerts(self.runtime)),
            ("reconcile paused updates", lambda: reconcile_paused_updates(self.runtime)),
            ("start due backups", lambda: run_due_backups(self.runtime)),
            ("expire backups", lambda: prune_expired(self.runtime)),
            ("verify backups", lambda: start_due_verifications(self.runtime)),
            ("retry backup copies", lambda: retry_replication(self.runtime)),
            ("forget expired backup copies", lambda: forget_expired_replicas(self.runtime)),
            ("start the due self-backup", lambda: run_due_self_backup(self.runtime)),
        ]
        for name, step in steps:
            try:
                step()
            except Exception:
                logger.exception("failed to %s", name)

    def _run_delivery(self) -> None:
        interval = self.runtime.settings.alert_delivery_interval_seconds
        while not self._stop.wait(interval):
            if time.monotonic() >= self._lease_valid_until:
                continue
            try:
                report = deliver_pending(self.runtime)
                if report.sent or report.failed or report.delayed:
                    logger.info(
                        "alert messages delivered",
                        extra={"sent": report.sent, "failed": report.failed, "delayed": report.delayed},
                    )
            except Exception:
                logger.exception("failed to deliver alert messages")

    def _run_dr(self) -> None:
        # DR duties run on their own, shorter interval: a failover's grace period is counted in
        # seconds, and a slow health tick must not delay it.
        interval = self.runtime.settings.dr_interval_seconds
        while not self._stop.wait(interval):
            if not self.holds_lease():
                continue
            try:
                dr_tick(self.runtime, self.dr_watch)
            except Exception:
                logger.exception("DR tick failed")

    def holds_lease(self) -> bool:
        """Tell whether this process surely holds the engine lease now."""
        return time.monotonic() < self._lease_valid_until

    def _hold_lease(self) -> bool:
        ttl = dt.timedelta(seconds=max(3 * self.interval, 30))
        requested_at = time.monotonic()
        with self.runtime.store.session() as session:
            acquired = acquire_lease(session, holder=self.holder, ttl=ttl)
        # Deliveries stop a little before the lease could pass to another process.
        self._lease_valid_until = requested_at + ttl.total_seconds() * 0.8 if acquired else 0.0
        return acquired

    def check_all_servers(self) -> None:
        with self.runtime.store.session() as session:
            server_ids = [server.id for server in list_servers(session)]
        for future in [self._pool.submit(self._check_one, server_id) for server_id in server_ids]:
            future.result()

    def _check_one(self, server_id: int) -> None:
        try:
            with self.runtime.store.session() as session:
                server = session.get(Server, server_id)
                if server is None:
                    return
                check_server(session, self.runtime, server)
                prune_history(session, server_id, keep=self.runtime.settings.health_history_per_server)
        except Exception:
            logger.exception("failed to check server health", extra={"server_id": server_id})
