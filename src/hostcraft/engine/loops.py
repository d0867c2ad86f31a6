"""The engine: reconciler loops that run in the background of ``hostcraft up``.

Only the holder of the engine lease runs loops, so several API replicas sharing PostgreSQL
never act twice. The first loop checks the health of every server.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from hostcraft.engine.lease import acquire_lease, release_lease
from hostcraft.runtime import Runtime
from hostcraft.services.backup_schedules import prune_expired, run_due_backups
from hostcraft.services.deployments import reconcile_paused_updates, resume_interrupted_deployments
from hostcraft.services.health import check_server, prune_history
from hostcraft.services.servers import list_servers
from hostcraft.store.models import Server

logger = logging.getLogger(__name__)


class Engine:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")

    @property
    def interval(self) -> float:
        return self.runtime.settings.server_health_interval_seconds

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hostcraft-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
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
                    self.check_all_servers()
                    reconcile_paused_updates(self.runtime)
                    self.run_backup_work()
            except Exception:
                logger.exception("engine tick failed")
            self._stop.wait(self.interval)
        logger.info("engine stopped", extra={"holder": self.holder})

    def run_backup_work(self) -> None:
        """Start due scheduled backups, then expire what retention no longer keeps."""
        try:
            run_due_backups(self.runtime)
            prune_expired(self.runtime)
        except Exception:
            logger.exception("failed to run backup schedules")

    def _hold_lease(self) -> bool:
        ttl = dt.timedelta(seconds=max(3 * self.interval, 30))
        with self.runtime.store.session() as session:
            return acquire_lease(session, holder=self.holder, ttl=ttl)

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
