"""Reach a region's swarm through any manager that responds.

HostCraft never depends on one manager: it tries the manager that responded last, then every
other server of the region, and moves on when the leader or its current manager dies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import docker
from sqlalchemy.orm import Session

from hostcraft.docker.swarm import list_nodes
from hostcraft.domain.quorum import quorum_size
from hostcraft.errors import ConflictError, EngineUnavailable, HostCraftError, QuorumLost
from hostcraft.runtime import Runtime
from hostcraft.services.servers import engine_client, list_servers
from hostcraft.store.models import Server

logger = logging.getLogger(__name__)

MANAGER_CONNECT_TIMEOUT_SECONDS = 5.0

_preferred_lock = threading.Lock()
_preferred_manager: dict[int, int] = {}


@dataclass
class ManagerAttempt:
    server: str
    outcome: str


def _candidates(servers: list[Server], region_id: int, exclude: set[int]) -> list[Server]:
    with _preferred_lock:
        preferred = _preferred_manager.get(region_id)
    ordered = sorted(
        (server for server in servers if server.id not in exclude),
        key=lambda server: (server.id != preferred, server.swarm_role != "manager", server.id),
    )
    return ordered


@contextmanager
def any_manager(
    session: Session,
    runtime: Runtime,
    region_id: int,
    *,
    require_quorum: bool,
    exclude: set[int] | None = None,
) -> Iterator[tuple[Server, docker.DockerClient]]:
    """Yield a manager of the region and a client to it.

    With ``require_quorum``, only a manager that can list nodes (the swarm has a leader) is
    accepted; QuorumLost is raised when managers respond but none has quorum.
    """
    attempts: list[ManagerAttempt] = []
    found: tuple[Server, docker.DockerClient] | None = None
    quorum_lost: QuorumLost | None = None
    with ExitStack() as stack:
        for server in _candidates(list_servers(session, region_id=region_id), region_id, exclude or set()):
            inner = ExitStack()
            try:
                client = inner.enter_context(
                    engine_client(server, runtime, timeout=MANAGER_CONNECT_TIMEOUT_SECONDS)
                )
                swarm = client.info().get("Swarm") or {}
                if not swarm.get("ControlAvailable"):
                    attempts.append(
                        ManagerAttempt(server.name, f"not a manager ({swarm.get('LocalNodeState')})")
                    )
                    inner.close()
                    continue
                if require_quorum:
                    check_quorum(list_nodes(client), server.name)
            except QuorumLost as exc:
                quorum_lost = quorum_lost or exc
                attempts.append(ManagerAttempt(server.name, "manager without quorum"))
                inner.close()
                continue
            except (HostCraftError, OSError, docker.errors.DockerException) as exc:
                attempts.append(ManagerAttempt(server.name, f"unreachable: {_short(exc)}"))
                inner.close()
                continue
            stack.push(inner)
            found = (server, client)
            break
        if found is None:
            tried = "; ".join(f"{a.server}: {a.outcome}" for a in attempts) or "no other server in the region"
            if all(a.outcome == "not a manager (inactive)" for a in attempts):
                raise ConflictError(
                    f"region {region_id} has no swarm yet ({tried}): initialise one with "
                    "'hostcraft swarm init SERVER --advertise-address IP' first",
                    details={"attempts": [a.__dict__ for a in attempts]},
                )
            if quorum_lost is not None:
                raise QuorumLost(
                    f"the swarm of region {region_id} has lost quorum: no manager can change the cluster "
                    f"(tried {tried}). Running services keep running; restore managers to write again",
                    details={"attempts": [a.__dict__ for a in attempts]},
                )
            raise EngineUnavailable(
                f"no manager of region {region_id} responded (tried {tried})",
                details={"attempts": [a.__dict__ for a in attempts]},
            )
        server, client = found
        with _preferred_lock:
            previous = _preferred_manager.get(region_id)
            _preferred_manager[region_id] = server.id
        if previous is not None and previous != server.id:
            logger.info("switched region manager", extra={"region_id": region_id, "server": server.name})
        yield server, client


def check_quorum(nodes: list[dict[str, Any]], via: str) -> None:
    """Raise QuorumLost when fewer managers are reachable than the quorum.

    After losing quorum, a Swarm leader keeps serving reads from its store for several seconds
    (about 15 s measured on Docker 20.10) and lists the lost managers as unreachable, so a node
    list that returns does not prove the cluster can accept writes.
    """
    managers = [node for node in nodes if node.get("ManagerStatus")]
    reachable = sum(1 for node in managers if node["ManagerStatus"].get("Reachability") == "reachable")
    quorum = quorum_size(len(managers))
    if reachable < quorum:
        raise QuorumLost(
            f"{via} sees {reachable} of {len(managers)} managers reachable, below the quorum of {quorum}",
            details={"managers": len(managers), "reachableManagers": reachable, "quorum": quorum},
        )


def _short(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.splitlines()[0][:160] if text else type(exc).__name__
