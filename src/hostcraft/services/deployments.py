"""Deployments: move an application to a spec through Swarm, and report the result truthfully.

A deployment is ``queued → running → succeeded | failed | rolled_back``:

- ``succeeded`` only when Swarm's UpdateStatus is completed (or absent, for a new service) and
  every desired task runs this deployment's spec (its tasks carry the deployment id as a
  label); with a healthcheck Swarm reports ``running`` only for healthy tasks;
- ``rolled_back`` when Swarm rolled the update back (``rollback_completed``), with its message;
- ``failed`` otherwise: a paused update (HostCraft then rolls it back), a paused rollback, tasks
  that never ran, or a timeout. The message says which and why.

Deploys of one application are serialized: a second one while one is queued or running gets 409.
The image is resolved to a digest when the deployment starts, and a rollback reuses the digest of
the deployment it restores, so a tag pushed again later changes neither.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.docker import swarm as swarm_api
from hostcraft.docker.specs import (
    LABEL_APP_ID,
    LABEL_DEPLOYMENT,
    LABEL_PROJECT,
    build_service_spec,
    network_name,
    service_name,
    volume_name,
)
from hostcraft.domain.appspec import validate_application
from hostcraft.domain.placement import eligible_nodes
from hostcraft.errors import ConflictError, HostCraftError, NotFound, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services.alerts import notify_once
from hostcraft.services.applications import active_deployment, get_application, secret_values
from hostcraft.services.drain import placement_node
from hostcraft.services.events import audit
from hostcraft.services.managers import any_manager
from hostcraft.services.regions import image_for_region
from hostcraft.store.models import Application, AppVolume, Deployment, utcnow

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
BASE_TIMEOUT_SECONDS = 180.0
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="deploy")
_app_locks: dict[int, threading.Lock] = {}
_app_locks_guard = threading.Lock()


# NOTE: the lock and the store check serialize deploys within one process only. Two API replicas
# on one PostgreSQL store could each start a deployment of the same app at the same moment.
def _app_lock(app_id: int) -> threading.Lock:
    with _app_locks_guard:
        return _app_locks.setdefault(app_id, threading.Lock())


@dataclass
class Outcome:
    status: str
    message: str


def start_deployment(
    session: Session,
    runtime: Runtime,
    app_id: int,
    *,
    actor: str,
    kind: str = "deploy",
    spec: dict[str, Any] | None = None,
    image_reference: str | None = None,
    rollback_of: int | None = None,
    wait: bool = False,
    prepare: Callable[[Application], None] | None = None,
) -> Deployment:
    """Queue a deployment of the app's current spec (or ``spec``) and run it in the background.

    ``prepare`` changes the application first, and runs only once no other deployment of the
    app is queued or running, so a refused request changes nothing.
    """
    app = get_application(session, app_id)
    with _app_lock(app.id):
        running = active_deployment(session, app.id)
        if running is not None:
            raise ConflictError(
                f"deployment {running.id} of {app.name} is {running.status}: deploys of one application "
                "never interleave, so wait for it to finish",
                details={"deploymentId": running.id},
            )
        # A deployment is a cluster write: without quorum it is refused (503) before anything changes.
        with any_manager(session, runtime, app.region_id, require_quorum=True):
            pass
        if prepare is not None:
            prepare(app)
        if kind == "restart" and image_reference is None:
            # A restart replaces the tasks with what runs now. Resolving the tag again could pick
            # up another build pushed under it, or another region's build of it after a failover.
            image_reference = _running_digest(session, app.id)
        document = copy.deepcopy(spec or app.spec)
        deployment = Deployment(
            application_id=app.id,
            kind=kind,
            status="queued",
            spec=document,
            image=document["image"],
            image_digest_reference=image_reference,
            rollback_of=rollback_of,
            actor=actor,
        )
        session.add(deployment)
        session.commit()
    audit(
        runtime,
        actor=actor,
        action=f"deployment.{kind}",
        target_type="application",
        target_id=app.id,
        target_name=f"{app.project}/{app.name}",
        outcome="started",
        details={"deploymentId": deployment.id},
    )
    future = _executor.submit(run_deployment, runtime, deployment.id)
    if wait:
        future.result()
        session.refresh(deployment)
    return deployment


def _running_digest(session: Session, app_id: int) -> str | None:
    return session.scalar(
        select(Deployment.image_digest_reference)
        .where(Deployment.application_id == app_id, Deployment.status == "succeeded")
        .order_by(Deployment.id.desc())
        .limit(1)
    )


def rollback_to(
    session: Session, runtime: Runtime, deployment_id: int, *, actor: str, wait: bool = False
) -> Deployment:
    """Redeploy an earlier deployment's exact spec and pinned digest."""
    target = session.get(Deployment, deployment_id)
    if target is None:
        raise NotFound(f"deployment {deployment_id} not found")
    if not target.image_digest_reference:
        raise ConflictError(
            f"deployment {deployment_id} has no pinned image digest (it failed before resolving the "
            "image): choose a deployment that ran"
        )
    app = get_application(session, target.application_id)

    def restore_spec(application: Application) -> None:
        application.spec = copy.deepcopy(target.spec)

    return start_deployment(
        session,
        runtime,
        app.id,
        actor=actor,
        kind="rollback",
        spec=target.spec,
        image_reference=target.image_digest_reference,
        rollback_of=target.id,
        wait=wait,
        prepare=restore_spec,
    )


def run_deployment(runtime: Runtime, deployment_id: int) -> None:
    """Run one deployment to its terminal state and record it; errors of the deployment become ``failed``."""
    with runtime.store.session() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None:
            return
        deployment.status = "running"
        deployment.started_at = utcnow()
        app = get_application(session, deployment.application_id)
        session.commit()
        try:
            outcome = _deploy(session, runtime, app, deployment)
        except HostCraftError as exc:
            outcome = Outcome("failed", exc.message)
        except Exception as exc:
            logger.exception("deployment failed unexpectedly", extra={"deployment_id": deployment_id})
            outcome = Outcome("failed", f"unexpected error: {type(exc).__name__}: {exc}")
        session.rollback()
        deployment = session.get(Deployment, deployment_id)
        assert deployment is not None
        deployment.status = outcome.status
        deployment.message = outcome.message
        deployment.finished_at = utcnow()
        session.commit()
        audit(
            runtime,
            actor="hostcraft-engine",
            action=f"deployment.{deployment.kind}",
            target_type="application",
            target_id=app.id,
            target_name=f"{app.project}/{app.name}",
            outcome="succeeded" if outcome.status == "succeeded" else "failed",
            reason=outcome.message,
            details={"deploymentId": deployment_id, "status": outcome.status},
        )


def _deploy(session: Session, runtime: Runtime, app: Application, deployment: Deployment) -> Outcome:
    document = deployment.spec
    with any_manager(session, runtime, app.region_id, require_quorum=True) as (_, client):
        if deployment.kind == "scale":
            return _scale(client, app, deployment)
        # An image of another region's registry is pulled from this region's registry instead.
        wanted = image_for_region(
            session, app.region_id, deployment.image_digest_reference or document["image"]
        )
        image = wanted if "@sha256:" in wanted else resolve_digest(client, wanted)
        deployment.image_digest_reference = image
        network_id = _ensure_network(client, app.project)
        secret_refs = _ensure_secrets(client, app, document, secret_values(app, runtime))
        pinned = _pin_local_volumes(session, client, app, document)
        # The spec's plan lists what two tasks cannot share (a local volume, a host port), and then
        # keeps stop-first order instead of running two containers on one volume.
        plan = validate_application(document, require_secret_values=False).update_plan()
        deployment.corrections = list(plan.corrections)
        session.commit()
        existing = _find_service(client, app)
        force = int(existing["Spec"]["TaskTemplate"].get("ForceUpdate", 0)) if existing else 0
        if deployment.kind == "restart":
            force += 1  # a changed ForceUpdate makes Swarm replace every task with the same spec
        spec = build_service_spec(
            document,
            app_id=app.id,
            deployment_id=deployment.id,
            image=image,
            update_config=plan.update_config,
            rollback_config=plan.rollback_config,
            secret_refs=secret_refs,
            network_id=network_id,
            pinned_node_id=pinned,
            force_update=force,
        )
        if existing is None:
            created = client.api.create_service(**_sdk_create_arguments(spec))
            app.service_id = created["ID"]
        else:
            app.service_id = existing["ID"]
            _post_update(client, existing, spec)
        session.commit()
        return monitor(
            client,
            app.service_id,
            deployment.id,
            int(document.get("replicas", 1)),
            timeout=_timeout(plan.update_config, int(document.get("replicas", 1))),
        )


def _timeout(update_config: dict[str, Any], replicas: int) -> float:
    per_task = float(update_config.get("Monitor", 0) + update_config.get("Delay", 0)) / 1e9
    batches = max(1, replicas // max(1, int(update_config.get("Parallelism", 1))))
    return BASE_TIMEOUT_SECONDS + 2 * batches * per_task


def resolve_digest(client: docker.DockerClient, image: str) -> str:
    """Pin ``repo:tag`` to ``repo:tag@sha256:…`` as the registry reports it now."""
    if "@sha256:" in image:
        return image
    # NOTE: no registry credentials are sent, so images that need a login cannot be resolved yet.
    try:
        descriptor = client.api.inspect_distribution(image)["Descriptor"]
    except docker.errors.APIError as exc:
        raise HostCraftError(
            f"failed to resolve image {image} to a digest: {exc.explanation or exc}. HostCraft pins every "
            "deployment by digest so that a rollback restores exactly what ran; check that the image is "
            "pushed and that the region's managers can reach its registry"
        ) from exc
    return f"{image}@{descriptor['digest']}"


def _ensure_network(client: docker.DockerClient, project: str) -> str:
    name = network_name(project)
    for network in client.api.networks(names=[name]):
        if network["Name"] == name:
            return str(network["Id"])
    created = client.api.create_network(
        name, driver="overlay", attachable=True, labels={LABEL_PROJECT: project}
    )
    return str(created["Id"])


def _ensure_secrets(
    client: docker.DockerClient, app: Application, document: dict[str, Any], values: dict[str, str]
) -> list[dict[str, Any]]:
    """Create each secret under a name that includes a hash of its value (Docker secrets are immutable)."""
    refs = []
    for secret in document.get("secrets") or []:
        value = values.get(secret["name"])
        if value is None:
            raise ValidationError(
                f"secret {secret['name']!r} has no stored value: set it with PUT",
                field=f"secrets.{secret['name']}",
            )
        digest = hashlib.sha256(value.encode()).hexdigest()[:12]
        # Swarm limits secret names to 64 characters; the value's hash keeps versions apart.
        name = f"{app.project}_{secret['name']}"[:50] + f"_{digest}"
        found = [s for s in client.api.secrets(filters={"name": name}) if s["Spec"]["Name"] == name]
        secret_id = (
            found[0]["ID"]
            if found
            else client.api.create_secret(
                name, value.encode(), labels={LABEL_PROJECT: app.project, LABEL_APP_ID: str(app.id)}
            )["ID"]
        )
        refs.append(
            {
                "File": {
                    "Name": secret.get("target") or secret["name"],
                    "UID": "0",
                    "GID": "0",
                    "Mode": 0o444,
                },
                "SecretID": secret_id,
                "SecretName": name,
            }
        )
    return refs


def _pin_local_volumes(
    session: Session, client: docker.DockerClient, app: Application, document: dict[str, Any]
) -> str | None:
    """Return the node that stores the app's node-local volumes, choosing one on first deploy."""
    local = [v for v in document.get("volumes") or [] if (v.get("driver") or "local") == "local"]
    if not local:
        return None
    rows = {
        row.name: row for row in session.scalars(select(AppVolume).where(AppVolume.application_id == app.id))
    }
    node_id = next((row.node_id for row in rows.values() if row.node_id), None)
    hostname = next((row.node_hostname for row in rows.values() if row.node_id), None)
    if node_id is None:
        nodes = [placement_node(node) for node in swarm_api.list_nodes(client)]
        constraints = list((document.get("placement") or {}).get("constraints") or [])
        candidates = eligible_nodes(nodes, constraints, exclude="")
        if not candidates:
            raise ConflictError("no ready, active node meets the app's placement constraints for its volumes")
        # Prefer workers, so managers keep their resources for the control plane.
        chosen = sorted(candidates, key=lambda node: (node.role != "worker", node.hostname))[0]
        node_id, hostname = chosen.node_id, chosen.hostname
    for volume in local:
        row = rows.get(volume["name"])
        if row is None:
            session.add(
                AppVolume(
                    application_id=app.id,
                    name=volume["name"],
                    swarm_name=volume_name(app.project, volume["name"]),
                    driver="local",
                    node_id=node_id,
                    node_hostname=hostname,
                )
            )
    for volume in document.get("volumes") or []:
        if (volume.get("driver") or "local") != "local" and volume["name"] not in rows:
            session.add(
                AppVolume(
                    application_id=app.id,
                    name=volume["name"],
                    swarm_name=volume_name(app.project, volume["name"]),
                    driver=volume["driver"],
                )
            )
    return node_id


def _find_service(client: docker.DockerClient, app: Application) -> dict[str, Any] | None:
    name = service_name(app.project, app.name)
    for service in client.api.services(filters={"name": name}):
        if service["Spec"]["Name"] == name:
            found: dict[str, Any] = service
            return found
    return None


def _sdk_create_arguments(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_template": spec["TaskTemplate"],
        "name": spec["Name"],
        "labels": spec["Labels"],
        "mode": {"replicated": {"Replicas": spec["Mode"]["Replicated"]["Replicas"]}},
        "update_config": spec["UpdateConfig"],
        "rollback_config": spec["RollbackConfig"],
        "endpoint_spec": spec["EndpointSpec"],
    }


def _post_update(
    client: docker.DockerClient, existing: dict[str, Any], spec: dict[str, Any], *, rollback: bool = False
) -> None:
    """Post a full spec with the version read, so a concurrent change fails instead of being lost."""
    params: dict[str, Any] = {"version": existing["Version"]["Index"]}
    if rollback:
        params["rollback"] = "previous"
    url = client.api._url("/services/{0}/update", existing["ID"])
    response = client.api._post_json(url, data=spec, params=params)
    try:
        client.api._raise_for_status(response)
    except docker.errors.APIError as exc:
        raise swarm_api.translate_api_error(exc, action=f"update service {spec['Name']}") from exc


def _scale(client: docker.DockerClient, app: Application, deployment: Deployment) -> Outcome:
    if not app.service_id:
        raise ConflictError(f"{app.name} has never been deployed: deploy it before scaling")
    replicas = int(deployment.spec.get("replicas", 1))
    service = client.api.inspect_service(app.service_id)
    container = service["Spec"]["TaskTemplate"]["ContainerSpec"]
    current_label = container.get("Labels", {}).get(LABEL_DEPLOYMENT)
    deployment.image_digest_reference = container.get("Image")
    swarm_api.scale_service(client, app.service_id, replicas)
    return monitor(
        client,
        app.service_id,
        int(current_label or 0),
        replicas,
        timeout=BASE_TIMEOUT_SECONDS,
        check_update_status=False,
    )


def _tasks_of(client: docker.DockerClient, service_id: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = client.api.tasks(filters={"service": service_id})
    return tasks


def monitor(
    client: docker.DockerClient,
    service_id: str,
    deployment_id: int,
    replicas: int,
    *,
    timeout: float,
    check_update_status: bool = True,
) -> Outcome:
    """Poll Swarm until the deployment reaches a terminal state; roll back a paused update."""
    deadline = time.monotonic() + timeout
    rolled_back_by_hostcraft: str | None = None
    while time.monotonic() < deadline:
        service = client.api.inspect_service(service_id)
        update = service.get("UpdateStatus") or {}
        state = update.get("State") if check_update_status else None
        message = update.get("Message") or ""
        if state == "paused":
            _post_update(client, service, service["Spec"], rollback=True)
            rolled_back_by_hostcraft = f"Swarm paused the update ({message})"
            logger.warning("rolled back a paused update", extra={"service_id": service_id, "reason": message})
        elif state == "rollback_completed":
            if rolled_back_by_hostcraft:
                return Outcome(
                    "failed",
                    f"{rolled_back_by_hostcraft}; HostCraft rolled the service back "
                    "to its previous spec, which is running again",
                )
            reasons = _task_errors(client, service_id, deployment_id)
            return Outcome(
                "rolled_back",
                f"Swarm rolled the update back: {message}"
                + (f"; new tasks: {'; '.join(reasons)}" if reasons else ""),
            )
        elif state == "rollback_paused":
            return Outcome("failed", f"Swarm paused the rollback: {message}; the service needs attention")
        elif state in (None, "completed") and _converged(client, service_id, deployment_id, replicas):
            return Outcome("succeeded", f"{replicas} task(s) run deployment {deployment_id}")
        time.sleep(POLL_SECONDS)
    errors = sorted({t["Status"].get("Err") for t in _tasks_of(client, service_id) if t["Status"].get("Err")})
    return Outcome(
        "failed",
        f"timed out after {timeout:.0f} s before every task ran the new spec"
        + (f"; task errors: {'; '.join(errors[:3])}" if errors else ""),
    )


def _task_errors(client: docker.DockerClient, service_id: str, deployment_id: int) -> list[str]:
    """Distinct errors of the tasks that ran this deployment (exits, failed health checks)."""
    errors = []
    for task in _tasks_of(client, service_id):
        if task["Spec"]["ContainerSpec"].get("Labels", {}).get(LABEL_DEPLOYMENT) != str(deployment_id):
            continue
        status = task["Status"]
        text = status.get("Err") or (
            status.get("Message") if status.get("State") in ("failed", "rejected") else None
        )
        if text and text not in errors:
            errors.append(text)
    return errors[:3]


def _converged(client: docker.DockerClient, service_id: str, deployment_id: int, replicas: int) -> bool:
    running = [
        t
        for t in _tasks_of(client, service_id)
        if t.get("DesiredState") == "running" and t["Status"]["State"] == "running"
    ]
    current = [
        t
        for t in running
        if t["Spec"]["ContainerSpec"].get("Labels", {}).get(LABEL_DEPLOYMENT) == str(deployment_id)
    ]
    return len(current) == replicas and len(running) == replicas


def reconcile_paused_updates(runtime: Runtime) -> list[str]:
    """Roll back every application service whose update Swarm left paused; return their names.

    HostCraft never sets failure action ``pause``, but an update started elsewhere (``docker service
    update``) can pause with old and new tasks both serving. Apps with a deployment in progress
    are left to that deployment's monitor.
    """
    rolled_back: list[str] = []
    with runtime.store.session() as session:
        apps = list(session.scalars(select(Application).where(Application.service_id.is_not(None))))
        for app in apps:
            if active_deployment(session, app.id) is not None or app.service_id is None:
                continue
            try:
                with any_manager(session, runtime, app.region_id, require_quorum=True) as (_, client):
                    service = client.api.inspect_service(app.service_id)
                    update = service.get("UpdateStatus") or {}
                    if update.get("State") != "paused":
                        continue
                    _post_update(client, service, service["Spec"], rollback=True)
            except HostCraftError as exc:
                logger.warning(
                    "failed to check service update state", extra={"app": app.name, "error": exc.message}
                )
                continue
            rolled_back.append(service_name(app.project, app.name))
            _alert_paused_rollback(session, app, update.get("Message"))
            audit(
                runtime,
                actor="hostcraft-engine",
                action="deployment.paused-rollback",
                target_type="application",
                target_id=app.id,
                target_name=f"{app.project}/{app.name}",
                outcome="succeeded",
                reason=f"Swarm left an update paused ({update.get('Message') or 'no message'}); HostCraft "
                "rolled the service back to its previous spec",
            )
    return rolled_back


def _alert_paused_rollback(session: Session, app: Application, swarm_message: str | None) -> None:
    notify_once(
        session,
        trigger="deployment_failed",
        cause=f"app:{app.id}:paused-update",
        title=f"Deployment of {app.project}/{app.name} failed: update paused",
        message=(
            f"Swarm left the update of {service_name(app.project, app.name)} paused "
            f"({swarm_message or 'no message'}), with old and new tasks possibly both serving. "
            "HostCraft rolled the service back to its previous spec."
        ),
        severity="critical",
        application_id=app.id,
        region_id=app.region_id,
    )


def resume_interrupted_deployments(runtime: Runtime) -> list[int]:
    """Run again every deployment left queued or running by a stopped HostCraft process.

    Running one again is safe: the service spec posted is the same, so Swarm changes nothing it
    already has, and the monitor reads the state Swarm reached.
    """
    with runtime.store.session() as session:
        ids = list(session.scalars(select(Deployment.id).where(Deployment.status.in_(("queued", "running")))))
    for deployment_id in ids:
        logger.info("resuming interrupted deployment", extra={"deployment_id": deployment_id})
        _executor.submit(run_deployment, runtime, deployment_id)
    return ids


def create_standby_service(
    session: Session, runtime: Runtime, app: Application, *, region_id: int, image: str, node_id: str | None
) -> str:
    """Create the app's service at 0 replicas in another region (a warm standby); return its name.

    A failover's deployment then only updates it. An existing service there is left alone.
    """
    document = copy.deepcopy(app.spec)
    name = service_name(app.project, app.name)
    with any_manager(session, runtime, region_id, require_quorum=True) as (_, client):
        existing = _find_service(client, app)
        if existing is not None:
            return name
        network_id = _ensure_network(client, app.project)
        secret_refs = _ensure_secrets(client, app, document, secret_values(app, runtime))
        plan = validate_application(document, require_secret_values=False).update_plan()
        spec = build_service_spec(
            {**document, "replicas": 0},
            app_id=app.id,
            deployment_id=0,
            image=image_for_region(session, region_id, image),
            update_config=plan.update_config,
            rollback_config=plan.rollback_config,
            secret_refs=secret_refs,
            network_id=network_id,
            pinned_node_id=node_id,
        )
        client.api.create_service(**_sdk_create_arguments(spec))
    logger.info("standby service created", extra={"app": name, "region_id": region_id})
    return name
