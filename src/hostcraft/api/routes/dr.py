"""Disaster recovery: failover, failback, region failover, drills, runs and the DR report."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, status
from pydantic import Field, StrictBool

from hostcraft.api.auth import Principal, current_principal, get_runtime
from hostcraft.api.schemas import Body
from hostcraft.runtime import Runtime
from hostcraft.services import dr_report, drills, failover, region_failover
from hostcraft.services.dr_runs import get_run, list_runs, run_out

router = APIRouter(tags=["disaster recovery"], dependencies=[Depends(current_principal)])


class FailoverIn(Body):
    target_region_id: int | str | None = Field(
        default=None, description="region id or code; default: best DR region"
    )
    force: StrictBool = False


class FailbackIn(Body):
    force: StrictBool = False


class RegionFailoverIn(FailoverIn):
    concurrency: int = Field(default=2, ge=1, le=16, description="applications failed over at once")


class DrillIn(Body):
    mode: Literal["dry-run", "live"] = "dry-run"
    target_region_id: int | str | None = None


@router.post("/api/applications/{app_id}/failover", status_code=status.HTTP_202_ACCEPTED)
def fail_over(
    app_id: int,
    body: FailoverIn,
    wait: bool = Query(default=False),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Fail the app over to a DR region; poll ``GET /api/dr/runs/{id}`` (or pass wait=true)."""
    with runtime.store.session() as session:
        run = failover.start_failover(
            session,
            runtime,
            app_id,
            actor=principal.actor,
            target_region=body.target_region_id,
            force=body.force,
            wait=wait,
        )
        return run_out(session, run)


@router.post("/api/applications/{app_id}/failback", status_code=status.HTTP_202_ACCEPTED)
def fail_back(
    app_id: int,
    body: FailbackIn,
    wait: bool = Query(default=False),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Move the app back to its home region, taking a fresh backup in the active region first."""
    with runtime.store.session() as session:
        run = failover.start_failover(
            session, runtime, app_id, actor=principal.actor, kind="failback", force=body.force, wait=wait
        )
        return run_out(session, run)


@router.post("/api/regions/{region_id}/failover", status_code=status.HTTP_202_ACCEPTED)
def fail_over_region(
    region_id: int,
    body: RegionFailoverIn,
    wait: bool = Query(default=False),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Fail every app with a DR policy active in the region over, by priority, a few at a time."""
    with runtime.store.session() as session:
        run = region_failover.start_region_failover(
            session,
            runtime,
            region_id,
            actor=principal.actor,
            target_region=body.target_region_id,
            force=body.force,
            concurrency=body.concurrency,
            wait=wait,
        )
        return run_out(session, run)


@router.post("/api/applications/{app_id}/drills")
def run_drill(
    app_id: int,
    body: DrillIn,
    wait: bool = Query(default=False),
    runtime: Runtime = Depends(get_runtime),
    principal: Principal = Depends(current_principal),
) -> dict[str, Any]:
    """Plan a failover (dry-run: nothing changes) or rehearse it live under a drill name."""
    with runtime.store.session() as session:
        if body.mode == "dry-run":
            return drills.plan_failover(session, runtime, app_id, target_region=body.target_region_id)
        run = drills.start_live_drill(
            session, runtime, app_id, actor=principal.actor, target_region=body.target_region_id, wait=wait
        )
        return run_out(session, run)


@router.get("/api/dr/runs")
def list_dr_runs(
    application_id: int | None = Query(default=None, alias="applicationId"),
    kind: str | None = Query(default=None),
    limit: int = Query(default=50, ge=1, le=1000),
    runtime: Runtime = Depends(get_runtime),
) -> list[dict[str, Any]]:
    with runtime.store.session() as session:
        return [
            run_out(session, run)
            for run in list_runs(session, application_id=application_id, kind=kind, limit=limit)
        ]


@router.get("/api/dr/runs/{run_id}")
def get_dr_run(run_id: int, runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    with runtime.store.session() as session:
        return run_out(session, get_run(session, run_id))


@router.get("/api/dr/report")
def get_dr_report(runtime: Runtime = Depends(get_runtime)) -> dict[str, Any]:
    """Per app: objectives, measured RTO/RPO of the last drill and failover, backup age; control plane."""
    with runtime.store.session() as session:
        return dr_report.build_report(session, runtime)
