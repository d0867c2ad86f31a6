"""Server health: measure one server, classify it, store the result with its history."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hostcraft.docker.facts import measure_on_node, read_engine_facts, read_swarm_view
from hostcraft.domain.health import HealthSample, classify
from hostcraft.errors import HostCraftError
from hostcraft.runtime import Runtime
from hostcraft.services.servers import apply_facts, engine_client
from hostcraft.store.models import Server, ServerHealthCheck

logger = logging.getLogger(__name__)


def measure_server(server: Server, runtime: Runtime) -> HealthSample:
    """Measure a server through its engine; never raises for an engine that does not respond."""
    sample = HealthSample(reachable=False, expected_in_swarm=bool(server.swarm_node_id))
    try:
        with engine_client(server, runtime) as client:
            started = time.perf_counter()
            client.ping()
            sample.latency_ms = (time.perf_counter() - started) * 1000
            sample.reachable = True
            facts = read_engine_facts(client)
            sample.facts = facts
            view = read_swarm_view(client, facts)
            sample.swarm = view.as_dict()
            peers = [peer["address"] for peer in view.peers]
            try:
                resources, reachability = measure_on_node(
                    client, probe_image=runtime.settings.probe_image, data_root=facts.data_root, peers=peers
                )
                resources.cpus = facts.cpus
                sample.resources = resources.as_dict()
                sample.peers = [
                    {**peer, "reachable": reachability.get(peer["address"])} for peer in view.peers
                ]
            except Exception as exc:  # the probe container is best effort; its failure is a finding
                sample.resources = {"measured": False, "cpus": facts.cpus, "error": _describe(exc)}
                sample.peers = [{**peer, "reachable": None} for peer in view.peers]
    except HostCraftError as exc:
        sample.error = exc.message
    except Exception as exc:
        sample.error = _describe(exc)
    return sample


def _describe(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {text}"[:500]


def check_server(session: Session, runtime: Runtime, server: Server) -> ServerHealthCheck:
    sample = measure_server(server, runtime)
    if sample.facts is not None:
        # Keep the recorded membership current: roles and node ids change as the cluster changes.
        apply_facts(server, sample.facts)
    status, reasons = classify(sample)
    row = ServerHealthCheck(
        server_id=server.id,
        status=status.value,
        reasons=reasons,
        reachable=sample.reachable,
        latency_ms=sample.latency_ms,
        error=sample.error,
        swarm=sample.swarm,
        resources=sample.resources,
        peers=sample.peers,
    )
    session.add(row)
    session.flush()
    if status.value != "healthy":
        logger.info(
            "server %s is %s", server.name, status.value, extra={"server": server.name, "reasons": reasons}
        )
    return row


def latest_check(session: Session, server_id: int) -> ServerHealthCheck | None:
    query = (
        select(ServerHealthCheck)
        .where(ServerHealthCheck.server_id == server_id)
        .order_by(ServerHealthCheck.checked_at.desc(), ServerHealthCheck.id.desc())
        .limit(1)
    )
    return session.scalar(query)


def check_history(session: Session, server_id: int, *, limit: int) -> list[ServerHealthCheck]:
    query = (
        select(ServerHealthCheck)
        .where(ServerHealthCheck.server_id == server_id)
        .order_by(ServerHealthCheck.checked_at.desc(), ServerHealthCheck.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def prune_history(session: Session, server_id: int, *, keep: int) -> int:
    """Delete all but the newest ``keep`` checks of a server, so history stays bounded."""
    newest = check_history(session, server_id, limit=keep)
    if len(newest) < keep:
        return 0
    oldest_kept = newest[-1].id
    result: Any = session.execute(
        delete(ServerHealthCheck).where(
            ServerHealthCheck.server_id == server_id, ServerHealthCheck.id < oldest_kept
        )
    )
    return int(result.rowcount or 0)
