"""Cluster operations of a region's swarm: report, init, join, leave, promote, demote, activate.

Every write goes through a manager with quorum (else QuorumLost, 503), checks the quorum guard
for changes to the manager set (else QuorumError, 409, with the arithmetic) and writes an event.
Draining lives in ``drain.py``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import docker
import requests
from sqlalchemy.orm import Session

from hostcraft.docker import swarm as swarm_api
from hostcraft.docker.facts import read_engine_facts
from hostcraft.domain.quorum import (
    ClusterAssessment,
    ClusterStatus,
    ManagerChange,
    NodeState,
    assess_cluster,
    check_manager_change,
)
from hostcraft.errors import (
    ConflictError,
    EngineUnavailable,
    HostCraftError,
    NotFound,
    QuorumError,
    QuorumLost,
    ValidationError,
)
from hostcraft.runtime import Runtime
from hostcraft.services.events import Outcome, audit
from hostcraft.services.managers import any_manager
from hostcraft.services.regions import get_region
from hostcraft.services.servers import apply_facts, engine_client, get_server, list_servers
from hostcraft.store.models import Server, utcnow

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_SECONDS = 90.0
ROLE_CHANGE_TIMEOUT_SECONDS = 60.0


@dataclass
class ClusterReport:
    region_id: int
    region_code: str
    assessment: ClusterAssessment
    nodes: list[dict[str, Any]]
    leader: dict[str, Any] | None
    source: str
    via: str | None
    cluster_id: str | None
    target_managers: int | None
    checked_at: dt.datetime
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        assessment = self.assessment
        return {
            "regionId": self.region_id,
            "regionCode": self.region_code,
            "status": assessment.status.value,
            "managers": {
                "total": assessment.managers,
                "reachable": assessment.reachable_managers,
                "quorum": assessment.quorum,
                "faultTolerance": assessment.fault_tolerance,
                "target": self.target_managers,
            },
            "workers": {"total": assessment.workers, "ready": assessment.ready_workers},
            "leader": self.leader,
            "nodes": self.nodes,
            "advice": assessment.advice,
            "source": self.source,
            "via": self.via,
            "clusterId": self.cluster_id,
            "checkedAt": self.checked_at.isoformat().replace("+00:00", "Z"),
            "errors": self.errors,
        }


def _server_by_node(servers: list[Server]) -> dict[str, Server]:
    return {server.swarm_node_id: server for server in servers if server.swarm_node_id}


def _node_row(node: dict[str, Any], servers: dict[str, Server]) -> dict[str, Any]:
    spec = node.get("Spec") or {}
    status = node.get("Status") or {}
    manager = node.get("ManagerStatus") or {}
    server = servers.get(node["ID"])
    address = status.get("Addr")
    if address in (None, "0.0.0.0") and manager.get("Addr"):  # noqa: S104 - Swarm's value, not a bind
        # Swarm reports the new leader's own address as 0.0.0.0 for a while after an election.
        address = str(manager["Addr"]).rsplit(":", 1)[0]
    # Only nodes with a ManagerStatus are Raft members. After forceNewCluster, the old managers
    # keep Spec.Role == "manager" without being members, and must not count toward the quorum.
    return {
        "nodeId": node["ID"],
        "hostname": (node.get("Description") or {}).get("Hostname"),
        "role": "manager" if manager else "worker",
        "desiredRole": spec.get("Role"),
        "state": status.get("State"),
        "availability": spec.get("Availability"),
        "address": address,
        "reachability": manager.get("Reachability"),
        "leader": bool(manager.get("Leader")),
        "serverId": server.id if server else None,
        "serverName": server.name if server else None,
        "failureDomain": server.failure_domain if server else None,
    }


def _node_state(row: dict[str, Any]) -> NodeState:
    reachable = row["reachability"] == "reachable" if row["role"] == "manager" else row["state"] == "ready"
    return NodeState(
        node_id=row["nodeId"],
        hostname=row["hostname"] or row["nodeId"][:12],
        role=row["role"] or "worker",
        state=row["state"] or "unknown",
        availability=row["availability"] or "active",
        reachable=reachable,
        leader=row["leader"],
        failure_domain=row["failureDomain"],
    )


def cluster_report(session: Session, runtime: Runtime, region_id: int) -> ClusterReport:
    """Describe the region's swarm from any reachable manager, or from its engines without quorum."""
    region = get_region(session, region_id)
    servers = list_servers(session, region_id=region.id)
    errors: list[str] = []
    failed: set[int] = set()
    listed: tuple[list[dict[str, Any]], str | None, str] | None = None
    while listed is None:
        try:
            # Without the quorum requirement: a leader that just lost quorum still lists nodes, and
            # that list (dead managers marked unreachable) is the most precise report available.
            with any_manager(session, runtime, region.id, require_quorum=False, exclude=failed) as (
                server,
                client,
            ):
                try:
                    nodes = swarm_api.list_nodes(client)
                    cluster_id = swarm_api.inspect_swarm(client).get("ID") or None
                except (EngineUnavailable, requests.exceptions.RequestException) as exc:
                    # This manager returned info() but not the node list: try the next one.
                    failed.add(server.id)
                    errors.append(f"{server.name}: {getattr(exc, 'message', None) or exc}")
                    continue
                listed = (nodes, cluster_id, server.name)
        except (QuorumLost, EngineUnavailable, ConflictError) as exc:
            errors.append(exc.message)
            return _report_without_quorum(
                session, runtime, region.id, region.code, region.target_managers, errors
            )
    nodes, cluster_id, via = listed
    rows = [_node_row(node, _server_by_node(servers)) for node in nodes]
    rows.sort(key=lambda row: (row["role"] != "manager", row["hostname"] or ""))
    assessment = assess_cluster([_node_state(row) for row in rows])
    for row in rows:
        if row["desiredRole"] == "manager" and row["role"] != "manager":
            assessment.advice.append(
                f"{row['hostname']} is set to be a manager but is not a Raft member (as after "
                "forceNewCluster): demote it, then promote it again"
            )
    leader = next(
        (
            {k: row[k] for k in ("nodeId", "hostname", "serverId", "serverName")}
            for row in rows
            if row["leader"]
        ),
        None,
    )
    return ClusterReport(
        region_id=region.id,
        region_code=region.code,
        assessment=assessment,
        nodes=rows,
        leader=leader,
        source="swarm",
        via=via,
        cluster_id=cluster_id,
        target_managers=region.target_managers,
        checked_at=utcnow(),
        errors=errors,
    )


def _engine_row(server: Server, runtime: Runtime, errors: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Describe one server from its own engine: the report row, and its swarm info ({} if none)."""
    row: dict[str, Any] = {
        "nodeId": server.swarm_node_id or f"server-{server.id}",
        "hostname": server.name,
        "role": server.swarm_role,
        "desiredRole": server.swarm_role,
        "state": "unknown",
        "availability": server.swarm_availability,
        "address": server.swarm_node_address,
        "reachability": "unreachable",
        "leader": False,
        "serverId": server.id,
        "serverName": server.name,
        "failureDomain": server.failure_domain,
    }
    try:
        with engine_client(server, runtime, timeout=5.0) as client:
            client.ping()  # /_ping does not involve the swarm, so it returns while info() hangs
            swarm = _swarm_info_or_none(client)
    except (HostCraftError, OSError, docker.errors.DockerException) as exc:
        if not _timed_out(exc):
            row["state"] = "down"
            errors.append(f"{server.name}: {getattr(exc, 'message', None) or exc}")
            return row, {}
        # A timeout means the engine accepted the connection but is blocked, as dockerd is while
        # its manager waits for a leader. A refused connection means it is down.
        swarm = None
    if swarm is None:
        # The engine returns but its swarm state does not, as on a manager waiting for a leader.
        row["reachability"] = "reachable" if row["role"] == "manager" else None
        errors.append(f"{server.name}: engine is up, but reading its swarm state timed out (no leader)")
        return row, {}
    local_state = swarm.get("LocalNodeState")
    row["state"] = "ready" if local_state == "active" else local_state
    row["role"] = "manager" if swarm.get("ControlAvailable") else (row["role"] or "worker")
    row["reachability"] = "reachable" if row["role"] == "manager" else None
    return row, swarm


def _report_without_quorum(
    session: Session,
    runtime: Runtime,
    region_id: int,
    region_code: str,
    target_managers: int | None,
    errors: list[str],
) -> ClusterReport:
    """Without a leader Swarm lists no nodes: ask every engine of the region about itself."""
    rows: list[dict[str, Any]] = []
    manager_total = 0
    cluster_id = None
    for server in list_servers(session, region_id=region_id):
        row, swarm = _engine_row(server, runtime, errors)
        manager_total = max(manager_total, int(swarm.get("Managers") or 0))
        cluster_id = cluster_id or (swarm.get("Cluster") or {}).get("ID")
        if row["role"] is not None:
            rows.append(row)
    if not any(row["role"] for row in rows) or all(row["state"] == "inactive" for row in rows):
        raise NotFound(
            f"region {region_code} has no swarm yet: initialise one with POST /api/servers/{{id}}/swarm/init "
            "(hostcraft swarm init SERVER --advertise-address IP)"
        )

    # Manager engines that respond count as reachable. The manager total is a survivor's last view
    # of the cluster when one has it, because HostCraft may not know every manager.
    states = [_node_state(row) for row in rows]
    known_managers = sum(1 for state in states if state.role == "manager")
    for index in range(max(0, manager_total - known_managers)):
        states.append(
            NodeState(
                node_id=f"unknown-{index}",
                hostname="(unregistered manager)",
                role="manager",
                state="unknown",
                availability="active",
                reachable=False,
            )
        )
    assessment = assess_cluster(states)
    if assessment.reachable_managers >= assessment.quorum and assessment.managers:
        # A majority of manager engines respond but none lists the nodes: a leader election is under
        # way (about 10 to 15 s after a leader dies), or the managers cannot reach each other.
        assessment.advice.append(
            "no leader right now although a majority of manager engines respond: an election is under "
            "way, or the managers cannot reach each other; cluster writes wait until a leader exists"
        )
    return ClusterReport(
        region_id=region_id,
        region_code=region_code,
        assessment=assessment,
        nodes=rows,
        leader=None,
        source="engines",
        via=None,
        cluster_id=cluster_id,
        target_managers=target_managers,
        checked_at=utcnow(),
        errors=errors,
    )


def _timed_out(exc: BaseException) -> bool:
    """Return whether a timeout, not a refused connection, caused an engine error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.exceptions.Timeout | TimeoutError):
            return True
        current = current.__cause__ or current.__context__
    return False


def _swarm_info_or_none(client: docker.DockerClient) -> dict[str, Any] | None:
    try:
        swarm: dict[str, Any] = client.info().get("Swarm") or {}
        return swarm
    except (OSError, docker.errors.DockerException, requests.exceptions.RequestException):
        return None


def _refresh_facts(runtime: Runtime, server_id: int) -> None:
    """Re-read a server's swarm facts after an operation changed them."""
    with runtime.store.session() as session:
        server = get_server(session, server_id)
        try:
            with engine_client(server, runtime) as client:
                apply_facts(server, read_engine_facts(client))
        except HostCraftError as exc:
            logger.warning(
                "failed to refresh server facts", extra={"server": server.name, "error": exc.message}
            )


def _check_advertise_address(value: str) -> str:
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    try:
        ipaddress.ip_address(host or value)
    except ValueError as exc:
        raise ValidationError(
            f"invalid advertiseAddress {value!r}: expected an IP address, optionally with a port "
            "(e.g. 10.0.1.10:2377)",
            field="advertiseAddress",
        ) from exc
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValidationError(f"invalid port in advertiseAddress {value!r}", field="advertiseAddress")
    return value


@dataclass
class OperationResult:
    action: str
    server_id: int
    server_name: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    duration_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "serverId": self.server_id,
            "serverName": self.server_name,
            "outcome": "succeeded",
            "message": self.message,
            "details": self.details,
            "durationSeconds": round(self.duration_seconds, 3),
        }


class ClusterOperation:
    """Runs one cluster write with its event: succeeded, failed or refused, with the reason."""

    def __init__(self, runtime: Runtime, *, actor: str, action: str, server: Server) -> None:
        self.runtime = runtime
        self.actor = actor
        self.action = action
        self.server_id = server.id
        self.server_name = server.name
        self.started = time.monotonic()

    def __enter__(self) -> ClusterOperation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if exc is None:
            return
        refused = isinstance(exc, QuorumError | ConflictError | ValidationError)
        outcome: Outcome = "refused" if refused else "failed"
        reason = getattr(exc, "message", None) or str(exc)
        details = getattr(exc, "details", None) or {}
        audit(
            self.runtime,
            actor=self.actor,
            action=self.action,
            target_type="server",
            target_id=self.server_id,
            target_name=self.server_name,
            outcome=outcome,
            reason=reason,
            details=details,
        )

    def done(self, message: str, **details: Any) -> OperationResult:
        result = OperationResult(
            self.action, self.server_id, self.server_name, message, details, time.monotonic() - self.started
        )
        audit(
            self.runtime,
            actor=self.actor,
            action=self.action,
            target_type="server",
            target_id=self.server_id,
            target_name=self.server_name,
            outcome="succeeded",
            reason=message,
            details={**details, "durationSeconds": round(result.duration_seconds, 3)},
        )
        return result


def _target_info(server: Server, runtime: Runtime) -> dict[str, Any]:
    with engine_client(server, runtime) as client:
        swarm: dict[str, Any] = client.info().get("Swarm") or {}
        return swarm


def init_swarm(
    session: Session,
    runtime: Runtime,
    server_id: int,
    *,
    actor: str,
    advertise_address: str,
    manager_count: int | None = None,
    force_new_cluster: bool = False,
    dispatcher_heartbeat_seconds: float | None = None,
) -> OperationResult:
    """Create the region's swarm on this server, or re-form it from a survivor (forceNewCluster)."""
    server = get_server(session, server_id)
    with ClusterOperation(runtime, actor=actor, action="swarm.init", server=server) as operation:
        _check_advertise_address(advertise_address)
        if manager_count is not None and (manager_count < 1 or manager_count % 2 == 0 or manager_count > 9):
            raise ValidationError(
                f"invalid managerCount {manager_count}: use an odd number from 1 to 9 "
                "(3 tolerates 1 failure, 5 tolerates 2); an even number tolerates "
                "no more failures than one fewer",
                field="managerCount",
            )
        # forceNewCluster is for a swarm without quorum, whose info() can hang: skip the check.
        state = None if force_new_cluster else _target_info(server, runtime).get("LocalNodeState")
        if state == "active":
            raise ConflictError(
                f"server {server.name} is already part of a swarm: leave it first, or use "
                "forceNewCluster to re-form a swarm that lost quorum from this manager"
            )
        if not force_new_cluster:
            others = [
                s.name
                for s in list_servers(session, region_id=server.region_id)
                if s.id != server.id and s.swarm_state == "active"
            ]
            if others:
                raise ConflictError(
                    f"region {server.region.code} already has a swarm ({', '.join(others)}): a region holds "
                    "exactly one cluster, so join this server to it instead",
                )
        with engine_client(server, runtime, timeout=JOIN_TIMEOUT_SECONDS) as client:
            node_id = swarm_api.init_swarm(
                client,
                advertise_address=advertise_address,
                force_new_cluster=force_new_cluster,
                dispatcher_heartbeat_seconds=dispatcher_heartbeat_seconds,
            )
        if manager_count is not None:
            server.region.target_managers = manager_count
        session.commit()
        _refresh_facts(runtime, server.id)
        verb = "re-formed the swarm (forceNewCluster)" if force_new_cluster else "initialised the swarm"
        return operation.done(
            f"{verb} on {server.name}, advertising {advertise_address}",
            nodeId=node_id,
            managerCount=manager_count,
        )
    raise AssertionError("unreachable")


def join_swarm(
    session: Session,
    runtime: Runtime,
    server_id: int,
    *,
    actor: str,
    as_manager: bool,
    manager_address: str | None = None,
    join_token: str | None = None,
    advertise_address: str | None = None,
) -> OperationResult:
    """Join a server to its region's swarm; the token is fetched from a manager when omitted."""
    server = get_server(session, server_id)
    role = "manager" if as_manager else "worker"
    with ClusterOperation(runtime, actor=actor, action="swarm.join", server=server) as operation:
        if advertise_address:
            _check_advertise_address(advertise_address)
        state = _target_info(server, runtime).get("LocalNodeState")
        if state == "active":
            raise ConflictError(f"server {server.name} is already part of a swarm: leave it first")
        with any_manager(session, runtime, server.region_id, require_quorum=True, exclude={server.id}) as (
            manager,
            manager_client,
        ):
            if manager_address is None:
                node_address = (manager_client.info().get("Swarm") or {}).get("NodeAddr")
                manager_address = f"{node_address}:{swarm_api.SWARM_PORT}"
            if join_token is None:
                join_token = swarm_api.join_tokens(manager_client)[role]
        with engine_client(server, runtime, timeout=JOIN_TIMEOUT_SECONDS) as client:
            if state in ("error", "pending"):
                # A join that timed out keeps retrying in the background; start from a clean state.
                swarm_api.leave_swarm(client, force=True)
            swarm_api.join_swarm(
                client,
                manager_address=manager_address,
                join_token=join_token,
                advertise_address=advertise_address,
            )
        _refresh_facts(runtime, server.id)
        return operation.done(
            f"{server.name} joined the swarm as a {role} through {manager.name}",
            role=role,
            managerAddress=manager_address,
        )
    raise AssertionError("unreachable")


def _guard(
    session: Session, runtime: Runtime, server: Server, change: ManagerChange, *, force: bool
) -> dict[str, Any] | None:
    """Raise QuorumError when taking this manager out would be unsafe; return the arithmetic."""
    report = cluster_report(session, runtime, server.region_id)
    if report.source != "swarm" or report.assessment.status == ClusterStatus.QUORUM_LOST:
        raise QuorumLost(
            f"cannot {change} {server.name}: the region's swarm has no quorum, so its cluster state is "
            f"read-only ({report.assessment.reachable_managers} of {report.assessment.managers} managers "
            f"reachable, quorum {report.assessment.quorum}). " + "; ".join(report.errors),
        )
    node = next((row for row in report.nodes if row["nodeId"] == server.swarm_node_id), None)
    if node is None or node["role"] != "manager":
        return None
    assessment = report.assessment
    decision = check_manager_change(
        change=change,
        node=server.name,
        managers=assessment.managers,
        reachable=assessment.reachable_managers,
        node_reachable=node["reachability"] == "reachable",
    )
    if not decision.allowed and not force:
        raise QuorumError(decision.message, details=decision.details)
    return {**decision.details, "guard": decision.message, "forced": not decision.allowed}


def _wait_for_role(client: docker.DockerClient, node_id: str, role: str) -> bool:
    def reached() -> bool:
        node = client.api.inspect_node(node_id)
        has_manager_status = bool(node.get("ManagerStatus"))
        return bool(node["Spec"]["Role"] == role and has_manager_status == (role == "manager"))

    return swarm_api.wait_until(reached, timeout=ROLE_CHANGE_TIMEOUT_SECONDS)


def change_role(
    session: Session, runtime: Runtime, server_id: int, *, actor: str, role: str, force: bool = False
) -> OperationResult:
    """Promote a worker to manager, or demote a manager (guarded) to worker."""
    server = get_server(session, server_id)
    action = "swarm.promote" if role == "manager" else "swarm.demote"
    with ClusterOperation(runtime, actor=actor, action=action, server=server) as operation:
        node_id = _node_id(server, runtime)
        guard = _guard(session, runtime, server, "demote", force=force) if role == "worker" else None
        # Demote through another manager when there is one, so the demoted node is not the one asked.
        with any_manager(
            session,
            runtime,
            server.region_id,
            require_quorum=True,
            exclude={server.id} if role == "worker" else set(),
        ) as (_, client):
            swarm_api.update_node(client, node_id, role=role)
            settled = _wait_for_role(client, node_id, role)
        _refresh_facts(runtime, server.id)
        verb = "promoted" if role == "manager" else "demoted"
        message = f"{verb} {server.name} to {role}" + ("" if settled else " (Swarm has not settled it yet)")
        return operation.done(message, role=role, **(guard or {}))
    raise AssertionError("unreachable")


def _node_id(server: Server, runtime: Runtime) -> str:
    """Return the server's swarm node id, read from its engine, or as recorded when the engine is down."""
    try:
        node_id = _target_info(server, runtime).get("NodeID") or server.swarm_node_id
    except EngineUnavailable:
        node_id = server.swarm_node_id
    if not node_id:
        raise ConflictError(f"server {server.name} is not part of a swarm: join it first")
    return str(node_id)


def leave_swarm(
    session: Session, runtime: Runtime, server_id: int, *, actor: str, force: bool = False
) -> OperationResult:
    """Take a server out of the swarm: demote it first if it is a manager, then remove its node.

    A server whose engine is dead is removed with ``force``: demoted and removed through
    another manager, using the node id HostCraft recorded.
    """
    server = get_server(session, server_id)
    with ClusterOperation(runtime, actor=actor, action="swarm.leave", server=server) as operation:
        try:
            info: dict[str, Any] | None = _target_info(server, runtime)
        except EngineUnavailable as exc:
            if not force:
                raise EngineUnavailable(
                    f"{exc.message}. To remove this dead node from the swarm, pass force=true: HostCraft "
                    "then demotes and removes it through another manager",
                    details=exc.details,
                ) from exc
            info = None
        if info is not None and info.get("LocalNodeState") == "inactive":
            raise ConflictError(f"server {server.name} is not part of a swarm")
        node_id = str((info or {}).get("NodeID") or server.swarm_node_id or "")
        if not node_id:
            raise ConflictError(f"server {server.name} has no recorded swarm node id: nothing to remove")
        guard = None
        try:
            guard = _guard(session, runtime, server, "leave", force=force)
        except QuorumLost:
            if not force:
                raise

        if info is None:
            _remove_dead_node(session, runtime, server, node_id)
            for column in (
                "swarm_state",
                "swarm_node_id",
                "swarm_role",
                "swarm_availability",
                "swarm_cluster_id",
            ):
                setattr(server, column, None)
            session.commit()
            return operation.done(
                f"removed {server.name} from the swarm: its engine does not respond, so it was demoted and "
                "removed through another manager",
                nodeId=node_id,
                nodeEntryRemoved=True,
                **(guard or {}),
            )

        if info.get("ControlAvailable"):
            try:
                with any_manager(
                    session, runtime, server.region_id, require_quorum=True, exclude={server.id}
                ) as (_, client):
                    swarm_api.update_node(client, node_id, role="worker")
                    _wait_for_role(client, node_id, "worker")
            except QuorumLost:
                if not force:
                    raise
        with engine_client(server, runtime) as client:
            swarm_api.leave_swarm(client, force=force)
        removed = _remove_node_entry(session, runtime, server, node_id)
        _refresh_facts(runtime, server.id)
        return operation.done(
            f"{server.name} left the swarm", nodeId=node_id, nodeEntryRemoved=removed, **(guard or {})
        )
    raise AssertionError("unreachable")


def _remove_dead_node(session: Session, runtime: Runtime, server: Server, node_id: str) -> None:
    with any_manager(session, runtime, server.region_id, require_quorum=True, exclude={server.id}) as (
        _,
        client,
    ):
        node = client.api.inspect_node(node_id)
        if node.get("ManagerStatus"):
            # Swarm removes only workers: a dead manager is demoted first, which needs quorum.
            swarm_api.update_node(client, node_id, role="worker")
            _wait_for_role(client, node_id, "worker")
        swarm_api.remove_node(client, node_id, force=True)


def _remove_node_entry(session: Session, runtime: Runtime, server: Server, node_id: str | None) -> bool:
    """Remove the departed node from the node list once Swarm reports it down."""
    if not node_id:
        return False
    try:
        with any_manager(session, runtime, server.region_id, require_quorum=True, exclude={server.id}) as (
            _,
            client,
        ):

            def gone() -> bool:
                return all(
                    n["ID"] != node_id or n["Status"]["State"] == "down" for n in swarm_api.list_nodes(client)
                )

            swarm_api.wait_until(gone, timeout=30)
            swarm_api.remove_node(client, node_id, force=True)
            return True
    except HostCraftError as exc:
        logger.warning("failed to remove node entry", extra={"server": server.name, "error": exc.message})
        return False


def set_availability(
    session: Session, runtime: Runtime, server_id: int, *, actor: str, availability: str
) -> OperationResult:
    """Set a node's availability without moving anything first (activate, or pause)."""
    server = get_server(session, server_id)
    with ClusterOperation(
        runtime,
        actor=actor,
        action="swarm.activate" if availability == "active" else f"swarm.{availability}",
        server=server,
    ) as operation:
        node_id = _node_id(server, runtime)
        with any_manager(session, runtime, server.region_id, require_quorum=True) as (_, client):
            swarm_api.update_node(client, node_id, availability=availability)
        _refresh_facts(runtime, server.id)
        return operation.done(f"{server.name} is now {availability}", availability=availability)
    raise AssertionError("unreachable")


def join_tokens_for_region(
    session: Session, runtime: Runtime, region_id: int, *, actor: str
) -> dict[str, str]:
    region = get_region(session, region_id)
    with any_manager(session, runtime, region.id, require_quorum=True) as (_, client):
        tokens = swarm_api.join_tokens(client)
    audit(
        runtime,
        actor=actor,
        action="swarm.join-tokens.read",
        target_type="region",
        target_id=region.id,
        target_name=region.code,
        outcome="succeeded",
    )
    return tokens
