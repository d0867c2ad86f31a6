"""Applications: the desired state of one Swarm service each, stored as a validated document."""

from __future__ import annotations

import json
import logging
from typing import Any

import docker.errors
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.domain.appspec import validate_application
from hostcraft.errors import ConflictError, HostCraftError, NotFound, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services.events import record_event
from hostcraft.services.managers import any_manager
from hostcraft.services.regions import find_region, get_region, list_regions
from hostcraft.store.models import Application, AppVolume, Deployment

logger = logging.getLogger(__name__)

ACTIVE_DEPLOYMENT_STATES = ("queued", "running")


def _secret_values(raw: dict[str, Any]) -> dict[str, str]:
    return {
        str(secret["name"]): str(secret["value"])
        for secret in raw.get("secrets") or []
        if isinstance(secret, dict) and secret.get("value")
    }


def _resolve_region_id(session: Session, reference: Any) -> int:
    if reference in (None, ""):
        primary = next((region for region in list_regions(session) if region.is_primary), None)
        if primary is None:
            raise ValidationError(
                "region is missing and there is no primary region: create a region first", field="region"
            )
        return primary.id
    try:
        return find_region(session, reference).id
    except NotFound as exc:
        raise ValidationError(f"unknown region {reference!r}", field="region") from exc


def _validated(
    raw: dict[str, Any], *, stored_secrets: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate a document; secrets named without a value keep their stored value."""
    secrets = {**stored_secrets, **_secret_values(raw)}
    document = dict(raw)
    document.pop("region", None)
    document["secrets"] = [
        {**secret, "value": secret.get("value") or stored_secrets.get(secret.get("name", ""), "")}
        if isinstance(secret, dict)
        else secret
        for secret in raw.get("secrets") or []
    ]
    spec = validate_application(document).to_dict()
    names = {secret["name"] for secret in spec.get("secrets") or []}
    return spec, {name: value for name, value in secrets.items() if name in names}


def create_application(session: Session, runtime: Runtime, raw: dict[str, Any], *, actor: str) -> Application:
    region_id = _resolve_region_id(session, raw.get("region"))
    spec, secrets = _validated(raw, stored_secrets={})
    existing = session.scalar(
        select(Application.id).where(Application.project == spec["project"], Application.name == spec["name"])
    )
    if existing is not None:
        raise ConflictError(
            f"application {spec['name']!r} already exists in project {spec['project']!r}",
            details={"field": "name"},
        )
    _check_dr_regions(session, spec, region_id)
    app = Application(name=spec["name"], project=spec["project"], region_id=region_id, spec=spec)
    app.secret_values_encrypted = runtime.secrets.encrypt(json.dumps(secrets)) if secrets else None
    session.add(app)
    session.flush()
    record_event(
        session,
        actor=actor,
        action="application.create",
        target_type="application",
        target_id=app.id,
        target_name=f"{app.project}/{app.name}",
        outcome="succeeded",
    )
    return app


def _check_dr_regions(
    session: Session, spec: dict[str, Any], region_id: int, *, stored: dict[str, Any] | None = None
) -> None:
    """Check that the DR policy names existing regions; the home region defaults to where the app is.

    On an update without ``homeRegion`` the stored home region stays, so a document written
    before a failover does not make the DR region the new home.
    """
    policy = spec.get("dr")
    if not policy:
        return
    if not policy.get("homeRegion"):
        previous = (stored or {}).get("homeRegion")
        policy["homeRegion"] = previous or get_region(session, region_id).code
    codes = {region.code for region in list_regions(session)}
    for path, code in [("dr.homeRegion", policy["homeRegion"])] + [
        (f"dr.regions[{index}]", code) for index, code in enumerate(policy.get("regions") or [])
    ]:
        if code not in codes:
            raise ValidationError(f"unknown region {code!r} in {path}: create it first", field=path)
    if policy["homeRegion"] in (policy.get("regions") or []):
        raise ValidationError(
            f"the home region {policy['homeRegion']!r} cannot also be a DR region", field="dr.regions"
        )
    for code in policy.get("healthCheckUrls") or {}:
        if code not in codes:
            raise ValidationError(
                f"unknown region {code!r} in dr.healthCheckUrls: use region codes", field="dr.healthCheckUrls"
            )
    switch = policy.get("trafficSwitch") or {}
    secret_name = switch.get("secretName")
    if secret_name and secret_name not in {secret["name"] for secret in spec.get("secrets") or []}:
        raise ValidationError(
            f"dr.trafficSwitch.secretName {secret_name!r} names no secret of the app: add it to secrets",
            field="dr.trafficSwitch.secretName",
        )


def secret_values(app: Application, runtime: Runtime) -> dict[str, str]:
    if not app.secret_values_encrypted:
        return {}
    values: dict[str, str] = json.loads(runtime.secrets.decrypt(app.secret_values_encrypted))
    return values


def update_application(
    session: Session, runtime: Runtime, app_id: int, raw: dict[str, Any], *, actor: str
) -> Application:
    """Replace the desired state; it takes effect with the next deployment."""
    app = get_application(session, app_id)
    spec, secrets = _validated(raw, stored_secrets=secret_values(app, runtime))
    if (spec["name"], spec["project"]) != (app.name, app.project):
        raise ValidationError(
            "name and project cannot change: create a new application instead", field="name"
        )
    if "region" in raw and _resolve_region_id(session, raw.get("region")) != app.region_id:
        raise ValidationError(
            "region cannot change here: use a failover to move an application", field="region"
        )
    _check_dr_regions(session, spec, app.region_id, stored=app.spec.get("dr"))
    app.spec = spec
    app.secret_values_encrypted = runtime.secrets.encrypt(json.dumps(secrets)) if secrets else None
    record_event(
        session,
        actor=actor,
        action="application.update",
        target_type="application",
        target_id=app.id,
        target_name=f"{app.project}/{app.name}",
        outcome="succeeded",
    )
    session.flush()
    return app


def set_replicas(
    session: Session, runtime: Runtime, app_id: int, replicas: int, *, actor: str
) -> Application:
    """Change the replica count in the desired state, validated like any other change."""
    app = get_application(session, app_id)
    document = {**app.spec, "replicas": replicas, "region": app.region_id}
    return update_application(session, runtime, app_id, document, actor=actor)


def get_application(session: Session, app_id: int) -> Application:
    app = session.get(Application, app_id)
    if app is None:
        raise NotFound(f"application {app_id} not found")
    return app


def find_application(session: Session, reference: str) -> Application:
    """Find an application by id, ``name`` (when unique) or ``project/name``."""
    if reference.isdigit():
        return get_application(session, int(reference))
    project, _, name = reference.rpartition("/")
    query = select(Application).where(Application.name == name)
    if project:
        query = query.where(Application.project == project)
    matches = list(session.scalars(query))
    if len(matches) != 1:
        hint = "use project/name" if matches else "'hostcraft app ls' lists them"
        raise NotFound(f"application {reference!r} not found ({hint})")
    return matches[0]


def list_applications(session: Session, *, project: str | None = None) -> list[Application]:
    query = select(Application).order_by(Application.project, Application.name)
    if project:
        query = query.where(Application.project == project)
    return list(session.scalars(query))


def active_deployment(session: Session, app_id: int) -> Deployment | None:
    query = select(Deployment).where(
        Deployment.application_id == app_id, Deployment.status.in_(ACTIVE_DEPLOYMENT_STATES)
    )
    return session.scalar(query.limit(1))


def delete_application(session: Session, runtime: Runtime, app_id: int, *, actor: str) -> None:
    """Remove the app's service; its volumes and their data are kept."""
    app = get_application(session, app_id)
    running = active_deployment(session, app.id)
    if running is not None:
        raise ConflictError(
            f"deployment {running.id} of {app.name} is {running.status}: wait for it to finish"
        )
    if app.service_id:
        with any_manager(session, runtime, app.region_id, require_quorum=True) as (_, client):
            try:
                client.api.remove_service(app.service_id)
            except docker.errors.NotFound:
                logger.info("service already gone", extra={"app": app.name})
    session.delete(app)
    record_event(
        session,
        actor=actor,
        action="application.delete",
        target_type="application",
        target_id=app_id,
        target_name=f"{app.project}/{app.name}",
        outcome="succeeded",
        reason="volumes are kept",
    )
    session.flush()


def list_volumes(session: Session, runtime: Runtime, app_id: int) -> list[dict[str, Any]]:
    """Volumes of the app with their driver, the node holding each local one, and its size."""
    app = get_application(session, app_id)
    recorded = {
        row.name: row for row in session.scalars(select(AppVolume).where(AppVolume.application_id == app.id))
    }
    sizes: dict[str, int] = {}
    try:
        sizes = _volume_sizes(session, runtime, app, list(recorded.values()))
    except HostCraftError as exc:
        logger.warning("failed to read volume sizes", extra={"app": app.name, "error": exc.message})
    result = []
    for volume in app.spec.get("volumes") or []:
        row = recorded.get(volume["name"])
        swarm_name = row.swarm_name if row else f"{app.project}_{volume['name']}"
        result.append(
            {
                "name": volume["name"],
                "swarmName": swarm_name,
                "target": volume["target"],
                "driver": volume.get("driver") or "local",
                "nodeId": row.node_id if row else None,
                "nodeHostname": row.node_hostname if row else None,
                "sizeBytes": sizes.get(swarm_name),
            }
        )
    return result


def _volume_sizes(
    session: Session, runtime: Runtime, app: Application, rows: list[AppVolume]
) -> dict[str, int]:
    from hostcraft.services.servers import engine_client, list_servers

    sizes: dict[str, int] = {}
    by_node = {server.swarm_node_id: server for server in list_servers(session, region_id=app.region_id)}
    for row in rows:
        server = by_node.get(row.node_id)
        if server is None:
            continue
        with engine_client(server, runtime) as client:
            for volume in client.df().get("Volumes") or []:
                if volume.get("Name") == row.swarm_name:
                    sizes[row.swarm_name] = int((volume.get("UsageData") or {}).get("Size") or 0)
    return sizes
