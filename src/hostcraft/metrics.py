"""Prometheus metrics: process-wide metric objects, and gauges read from the store at scrape time.

Code that measures something as it happens fills the objects below (``PROBE_DURATION``,
``RECOVERY_ACTIONS``, ``BACKUP_RUNS``). Figures that live in the store (cluster quorum, node
status, open alerts, and whatever other modules add with ``register_store_collector``) are read
when ``/metrics`` is scraped, so every HostCraft replica serves the same values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hostcraft.domain.health import ServerStatus
from hostcraft.domain.quorum import ClusterStatus
from hostcraft.runtime import Runtime
from hostcraft.store.models import Alert, ClusterState, Region, Server, ServerHealthCheck

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

PROBE_DURATION = Histogram(
    "hostcraft_probe_duration_seconds",
    "Duration of application health probes.",
    ["application", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
RECOVERY_ACTIONS = Counter(
    "hostcraft_recovery_actions",
    "Recovery actions taken, by rung of the recovery ladder.",
    ["application", "rung"],
    registry=REGISTRY,
)
BACKUP_RUNS = Counter(
    "hostcraft_backup_runs",
    "Finished backup runs, by type and outcome.",
    ["application", "type", "outcome"],
    registry=REGISTRY,
)

StoreCollector = Callable[[Session], Iterable[Metric]]
_store_collectors: list[StoreCollector] = []


def register_store_collector(collector: StoreCollector) -> StoreCollector:
    """Add a function that yields metrics read from the store at each scrape; usable as a decorator."""
    if collector not in _store_collectors:
        _store_collectors.append(collector)
    return collector


def unregister_store_collector(collector: StoreCollector) -> None:
    if collector in _store_collectors:
        _store_collectors.remove(collector)


class _Scrape:
    """The metrics of one scrape: the process-wide registry plus every store collector."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        with self.runtime.store.session() as session:
            for collector in list(_store_collectors):
                try:
                    metrics = list(collector(session))
                except Exception:
                    # One broken collector must not blank the whole scrape.
                    logger.exception(
                        "failed to collect store metrics", extra={"collector": collector.__name__}
                    )
                    continue
                yield from metrics


def render_metrics(runtime: Runtime) -> bytes:
    """Return the Prometheus text exposition of every metric."""
    return generate_latest(_Scrape(runtime))


@register_store_collector
def cluster_metrics(session: Session) -> Iterable[Metric]:
    status = GaugeMetricFamily(
        "hostcraft_cluster_status",
        "Quorum status of each region's swarm (1 for the current status, 0 for the others).",
        labels=["region", "status"],
    )
    has_quorum = GaugeMetricFamily(
        "hostcraft_cluster_quorum_ok", "1 while the region's managers have Raft quorum.", labels=["region"]
    )
    managers = GaugeMetricFamily(
        "hostcraft_cluster_managers", "Managers of the region's swarm.", labels=["region", "state"]
    )
    tolerance = GaugeMetricFamily(
        "hostcraft_cluster_fault_tolerance",
        "Managers the region can still lose without losing quorum.",
        labels=["region"],
    )
    rows = session.execute(
        select(Region.code, ClusterState).join(ClusterState, ClusterState.region_id == Region.id)
    )
    for code, state in rows:
        for value in ClusterStatus:
            status.add_metric([code, value.value], 1.0 if state.status == value.value else 0.0)
        has_quorum.add_metric([code], 0.0 if state.status == ClusterStatus.QUORUM_LOST.value else 1.0)
        managers.add_metric([code, "total"], state.managers)
        managers.add_metric([code, "reachable"], state.reachable_managers)
        tolerance.add_metric([code], state.fault_tolerance)
    return [status, has_quorum, managers, tolerance]


@register_store_collector
def node_metrics(session: Session) -> Iterable[Metric]:
    status = GaugeMetricFamily(
        "hostcraft_node_status",
        "Health of each server from its newest check (1 for the current status, 0 for the others).",
        labels=["server", "region", "status"],
    )
    newest = (
        select(ServerHealthCheck.server_id, func.max(ServerHealthCheck.id).label("check_id"))
        .group_by(ServerHealthCheck.server_id)
        .subquery()
    )
    rows = session.execute(
        select(Server.name, Region.code, ServerHealthCheck.status)
        .join(Region, Region.id == Server.region_id)
        .outerjoin(newest, newest.c.server_id == Server.id)
        .outerjoin(ServerHealthCheck, ServerHealthCheck.id == newest.c.check_id)
    )
    for name, region, current in rows:
        for value in [*(s.value for s in ServerStatus), "unknown"]:
            status.add_metric([name, region, value], 1.0 if (current or "unknown") == value else 0.0)
    return [status]


@register_store_collector
def alert_metrics(session: Session) -> Iterable[Metric]:
    open_alerts = GaugeMetricFamily(
        "hostcraft_alerts_open", "Open alerts (not suppressed), by trigger.", labels=["trigger", "severity"]
    )
    rows = session.execute(
        select(Alert.trigger, Alert.severity, func.count(Alert.id))
        .where(Alert.kind == "alert", Alert.status == "open")
        .group_by(Alert.trigger, Alert.severity)
    )
    for trigger, severity, count in rows:
        open_alerts.add_metric([trigger, severity], count)
    return [open_alerts]
