"""Applications, their deployments and volumes, and Compose import."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Response, status
from pydantic import Field, StrictInt
from sqlalchemy import select
from sqlalchemy.orm import object_session

from hostcraft.api.auth import Principal, current_principal, get_runtime
from hostcraft.api.schemas import Body as BodyModel
from hostcraft.runtime import Runtime
from hostcraft.services import applications, deployments
from hostcraft.store.models import Application, Deployment

router = APIRouter(tags=["applications"], dependencies=[Depends(current_principal)])


class ScaleIn(BodyModel):
    replicas: StrictInt = Field(ge=0, le=1000)


class ImportIn(BodyModel):
    compose: str = Field(min_length=1, max_length=1_000_000)
    project: str = "default"
    region: str | int | None = None
    env_files: dict[str, str] = Field(default_factory=dict)
    # Values of the secrets the services use; a Compose file only names them.
    secret_values: dict[str, str] = Field(default_factory=dict, repr=False)


def _deployment_summary(deployment: Deployment | None) -> dict[str, Any] | None:
    if deployment is None:
        return None
    return {
        "id": deployment.id,
        "kind": deployment.kind,
        "status": deployment.status,
        "imageDigestReference": deployment.image_digest_reference,
    }


def application_out(app: Application) -> dict[str, Any]:
    """Return the stored document, the last deployment, and the last one that succeeded (what runs)."""
    session = object_session(app)
    latest = succeeded = None
    if session is not None:
        query = select(Deployment).where(Deployment.application_id == app.id).order_by(Deployment.id.desc())
        latest = session.scalars(query.limit(1)).first()
        succeeded = session.scalars(query.where(Deployment.status == "succeeded").limit(1)).first()
    return {
        "id": app.id,
        **app.spec,
        "region": app.region.code,
        "regionId": app.region_id,
        "serviceId": app.service_id,
        "lastDeployment": _deployment_summary(latest),
        "lastSucceededDeployment": _deployment_summary(succeeded),
        "createdAt": app.created_at.isoformat().replace("+00:00", "Z"),
        "updatedAt": app.updated_at.isoformat().replace("+00:00", "Z"),
    }


def deployment_out(deployment: Deployment) -> dict[str, Any]:
    def stamp(value: Any) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {
        "id": deployment.id,
        "applicationId": deployment.application_id,
        "kind": deployment.kind,
        "status": deployment.status,
        "image": deployment.image,
        "imageDigestReference": deployment.image_digest_reference,
        "rollbackOf": deployment.rollback_of,
        "message": deployment.message,
        "corrections": deployment.corrections,
        "actor": deployment.actor,
        "spec": deployment.spec,
        "createdAt": stamp(deployment.created_at),
        "startedAt": stamp(deployment.started_at),
        "finishedAt": stamp(deployment.finished_at),
    }


@router.post("/api/applications", status_code=status.HTTP_201_CREATED)
def create_application(
    payload: dict[str, Any] = Body(...),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Store an application; nothing runs until it is deployed. Secret values are write-only."""
    with runtime.store.session() as session:
        return application_out(
            applications.create_application(session, runtime, payload, actor=principal.actor)
        )


@router.get("/api/applications")
def list_applications(
    project: str | None = None, runtime: Runtime = Depends(get_runtime)
) -> list[dict[str, Any]]:
    with runtime.store.session() as session:
        return [application_out(app) for app in applications.list_applications(session, project=project)]


@router.get("/api/applications/{app_id}")
def get_application(app_id: int, runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    with runtime.store.session() as session:
        return application_out(applications.get_application(session, app_id))


@router.put("/api/applications/{app_id}")
def update_application(
    app_id: int,
    payload: dict[str, Any] = Body(...),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Replace the desired state; it takes effect with the next deploy."""
    with runtime.store.session() as session:
        app = applications.update_application(session, runtime, app_id, payload, actor=principal.actor)
        return application_out(app)


@router.delete("/api/applications/{app_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_application(
    app_id: int, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(current_principal)
) -> Response:
    """Remove the app and its service; volumes and their data are kept."""
    with runtime.store.session() as session:
        applications.delete_application(session, runtime, app_id, actor=principal.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/api/applications/{app_id}/deploy", status_code=status.HTTP_202_ACCEPTED)
def deploy(
    app_id: int,
    wait: bool = Query(default=False),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Start a deployment of the stored spec; poll ``GET /api/deployments/{id}`` (or pass wait=true)."""
    with runtime.store.session() as session:
        deployment = deployments.start_deployment(session, runtime, app_id, actor=principal.actor, wait=wait)
        return deployment_out(deployment)


@router.post("/api/applications/{app_id}/scale", status_code=status.HTTP_202_ACCEPTED)
def scale(
    app_id: int,
    body: ScaleIn,
    wait: bool = Query(default=False),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    with runtime.store.session() as session:

        def set_replicas(app: Application) -> None:
            applications.set_replicas(session, runtime, app.id, body.replicas, actor=principal.actor)

        deployment = deployments.start_deployment(
            session, runtime, app_id, actor=principal.actor, kind="scale", wait=wait, prepare=set_replicas
        )
        return deployment_out(deployment)


@router.post("/api/applications/{app_id}/restart", status_code=status.HTTP_202_ACCEPTED)
def restart(
    app_id: int,
    wait: bool = Query(default=False),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Replace every task with the same spec, as a rolling update."""
    with runtime.store.session() as session:
        deployment = deployments.start_deployment(
            session, runtime, app_id, actor=principal.actor, kind="restart", wait=wait
        )
        return deployment_out(deployment)


@router.get("/api/applications/{app_id}/deployments")
def history(app_id: int, runtime: Runtime = Depends(get_runtime)) -> list[dict[str, Any]]:
    with runtime.store.session() as session:
        applications.get_application(session, app_id)
        rows = session.scalars(
            select(Deployment).where(Deployment.application_id == app_id).order_by(Deployment.id.desc())
        )
        return [deployment_out(row) for row in rows]


@router.get("/api/deployments/{deployment_id}")
def get_deployment(deployment_id: int, runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    from hostcraft.errors import NotFound

    with runtime.store.session() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None:
            raise NotFound(f"deployment {deployment_id} not found")
        return deployment_out(deployment)


@router.post("/api/deployments/{deployment_id}/rollback", status_code=status.HTTP_202_ACCEPTED)
def rollback(
    deployment_id: int,
    wait: bool = Query(default=False),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Redeploy that deployment's exact spec and image digest."""
    with runtime.store.session() as session:
        deployment = deployments.rollback_to(
            session, runtime, deployment_id, actor=principal.actor, wait=wait
        )
        return deployment_out(deployment)


@router.get("/api/applications/{app_id}/volumes")
def volumes(app_id: int, runtime: Runtime = Depends(get_runtime)) -> list[dict[str, Any]]:
    """Volumes with driver, the node holding each local one, and size."""
    with runtime.store.session() as session:
        return applications.list_volumes(session, runtime, app_id)


@router.post("/api/applications/import", status_code=status.HTTP_201_CREATED)
def import_compose(
    body: ImportIn, runtime: Runtime = Depends(get_runtime), principal: Principal = Depends(current_principal)
) -> dict[str, Any]:
    """Create one application per service of a Compose or stack file, all or none.

    Keys HostCraft does not carry over are listed in ``unsupported``, never dropped silently.
    """
    from hostcraft.deploy.compose import import_compose as parse_compose
    from hostcraft.errors import ConflictError, ValidationError

    result = parse_compose(body.compose, project=body.project, env_files=body.env_files)
    created = []
    with runtime.store.session() as session:
        for document in result.applications:
            service = document["name"]
            for secret in document.get("secrets") or []:
                if secret["name"] not in body.secret_values:
                    raise ValidationError(
                        f"service {service} uses secret {secret['name']!r}: send its value in secretValues "
                        "(a Compose file only names secrets)",
                        field=f"secretValues.{secret['name']}",
                    )
                secret["value"] = body.secret_values[secret["name"]]
            try:
                app = applications.create_application(
                    session, runtime, {**document, "region": body.region}, actor=principal.actor
                )
            except (ValidationError, ConflictError) as exc:
                inner = exc.details.get("field") or getattr(exc, "field", None)
                field = f"services.{service}.{inner}" if inner else f"services.{service}"
                raise type(exc)(
                    f"service {service}: {exc.message}", details={**exc.details, "field": field}
                ) from exc
            created.append(application_out(app))
    return {"applications": created, "unsupported": result.unsupported, "warnings": result.warnings}
