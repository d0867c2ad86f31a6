"""``/metrics``: Prometheus text format, bearer token by default, store gauges read at scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from hostcraft.domain.quorum import ClusterStatus, assess_cluster
from hostcraft.metrics import (
    BACKUP_RUNS,
    PROBE_DURATION,
    RECOVERY_ACTIONS,
    register_store_collector,
    unregister_store_collector,
)
from hostcraft.services.alerts import open_alert
from hostcraft.services.cluster_alerts import record_cluster_state
from hostcraft.store.models import ServerHealthCheck
from tests.conftest import Api, create_region


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _ghost_server(api: Api, region_id: int) -> int:
    response = api.post(
        "/api/servers",
        {
            "name": "ghost",
            "endpoint": "unix:///run/hostcraft-none.sock",
            "regionId": region_id,
            "skipValidation": True,
        },
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_metrics_need_a_token_of_any_role(api: Api) -> None:
    anonymous = api.client.get("/metrics")
    viewer = api.get("/metrics", role="viewer")

    assert anonymous.status_code == 401
    assert viewer.status_code == 200
    assert viewer.headers["content-type"].startswith("text/plain")


def test_metrics_public_setting_drops_the_token(api: Api) -> None:
    api.runtime.settings.metrics_public = True

    assert api.client.get("/metrics").status_code == 200


def test_metrics_report_cluster_nodes_and_alerts(api: Api) -> None:
    from hostcraft.domain.quorum import NodeState

    region = create_region(api, "eu-west-1")
    server_id = _ghost_server(api, region["id"])
    nodes = [
        NodeState(
            node_id=f"m{index}",
            hostname=f"m{index}",
            role="manager",
            state="ready",
            availability="active",
            reachable=index != 2,
        )
        for index in range(3)
    ]
    with api.runtime.store.session() as session:
        record_cluster_state(session, region["id"], assess_cluster(nodes))
        session.add(ServerHealthCheck(server_id=server_id, status="unreachable", reasons=[], reachable=False))
        open_alert(
            session,
            trigger="manager_failure",
            cause="region:1:manager_failure",
            title="t",
            message="m",
            severity="critical",
        )
    PROBE_DURATION.labels(application="shop/web", outcome="up").observe(0.2)
    RECOVERY_ACTIONS.labels(application="shop/web", rung="restart").inc()
    BACKUP_RUNS.labels(application="shop/web", type="volume", outcome="failed").inc()

    samples = _samples(api.get("/metrics").text)

    region_label = ("region", "eu-west-1")
    assert samples[("hostcraft_cluster_status", (region_label, ("status", ClusterStatus.AT_RISK.value)))] == 1
    assert samples[("hostcraft_cluster_status", (region_label, ("status", "healthy")))] == 0
    assert samples[("hostcraft_cluster_quorum_ok", (region_label,))] == 1
    assert samples[("hostcraft_cluster_managers", (region_label, ("state", "reachable")))] == 2
    assert samples[("hostcraft_cluster_fault_tolerance", (region_label,))] == 0
    node = (region_label, ("server", "ghost"))
    assert samples[("hostcraft_node_status", (*node, ("status", "unreachable")))] == 1
    assert samples[("hostcraft_node_status", (*node, ("status", "healthy")))] == 0
    assert samples[("hostcraft_alerts_open", (("severity", "critical"), ("trigger", "manager_failure")))] == 1
    assert (
        samples[("hostcraft_probe_duration_seconds_count", (("application", "shop/web"), ("outcome", "up")))]
        >= 1
    )
    assert (
        samples[("hostcraft_recovery_actions_total", (("application", "shop/web"), ("rung", "restart")))] >= 1
    )
    assert (
        samples[
            (
                "hostcraft_backup_runs_total",
                (("application", "shop/web"), ("outcome", "failed"), ("type", "volume")),
            )
        ]
        >= 1
    )


def test_registered_store_collector_is_scraped(api: Api) -> None:
    def application_count(session: Session) -> Iterable[Metric]:
        gauge = GaugeMetricFamily("hostcraft_test_collector_sessions", "Scrapes that reached this collector.")
        gauge.add_metric([], 1.0 if session.is_active else 0.0)
        return [gauge]

    register_store_collector(application_count)
    try:
        samples = _samples(api.get("/metrics").text)
    finally:
        unregister_store_collector(application_count)

    assert samples[("hostcraft_test_collector_sessions", ())] == 1


def test_broken_collector_does_not_blank_the_scrape(api: Api) -> None:
    def broken(session: Session) -> Iterable[Metric]:
        raise RuntimeError("collector bug")

    register_store_collector(broken)
    try:
        response = api.get("/metrics")
    finally:
        unregister_store_collector(broken)

    assert response.status_code == 200
    assert "hostcraft_alerts_open" in response.text
