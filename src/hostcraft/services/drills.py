"""DR drills: plan a failover without touching anything, or rehearse it live under a drill name.

A dry-run only reads: the store, the target swarm and the target registry. A live drill restores
the newest backup readable in the DR region into drill volumes. It deploys a copy of the app named
``<name>-drill<run id>`` there, without published ports, probe or backups. It then checks the
restored data (volume checksum manifests, database row counts) and that the copy runs, and
removes the copy.
"""

from __future__ import annotations

import copy
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import docker.errors
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostcraft.backup.jobs import CHECKSUM_SCRIPT, VOLUME_MOUNT, VolumeMount, manifest_digest, run_job
from hostcraft.docker.specs import volume_name
from hostcraft.domain.dr import DrPolicy, policy_of
from hostcraft.errors import ConflictError, HostCraftError, NotFound, ValidationError
from hostcraft.runtime import Runtime
from hostcraft.services import failover
from hostcraft.services.alerts import Severity, Trigger
from hostcraft.services.applications import create_application, delete_application, get_application
from hostcraft.services.backup_destinations import restic_for
from hostcraft.services.backup_replication import RestoreSource
from hostcraft.services.dr_images import COPYABLE, ensure_images
from hostcraft.services.dr_runs import StepLog, active_run, finish_run, get_run
from hostcraft.services.events import Outcome
from hostcraft.services.managers import any_manager
from hostcraft.services.regions import find_region, get_region, image_for_region, list_regions
from hostcraft.store.models import Application, AppVolume, Backup, Deployment, DrRun, Region, utcnow

logger = logging.getLogger(__name__)

_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="drill")

DEFAULT_RESTORE_BYTES_PER_SECOND = 20_000_000
DEFAULT_DEPLOY_SECONDS = 30.0
DEFAULT_IMAGE_COPY_SECONDS = 10.0
DEFAULT_HEALTH_SECONDS = 5.0
VOLUME_REMOVE_TIMEOUT_SECONDS = 30.0


# Dry-run


def plan_failover(
    session: Session, runtime: Runtime, app_id: int, *, target_region: int | str | None = None
) -> dict[str, Any]:
    """Return the steps a failover would take now, with estimated durations, RTO and RPO; change nothing."""
    app = get_application(session, app_id)
    policy = _policy(app)
    source = get_region(session, app.region_id)
    target = _drill_target(session, app, policy, target_region)
    problems: list[str] = []
    nodes = failover.target_nodes(session, runtime, target, problems)
    failover.check_capacity(app, nodes, problems)
    images = [failover.pinned_image(session, app)]
    if failover.stateful(app):
        images.append(runtime.settings.backup_image)
    found = ensure_images(session, target.id, images, copy=False)
    copyable = [image for image, why in found.missing.items() if COPYABLE in why]
    refusal = failover.refusal_reason(session, runtime, app, source)
    backup, restore_from = _newest(session, app, target, problems)
    steps = [
        _plan_step(
            "preflight",
            f"check quorum and room in {target.code}; images present: {len(found.present)}, to copy: "
            f"{len(copyable)}, unchecked: {len(found.unchecked)}",
            DEFAULT_IMAGE_COPY_SECONDS * len(copyable),
        ),
        _restore_step(session, app, backup, restore_from),
        _plan_step(
            "deploy",
            f"deploy {app.project}/{app.name} in {target.code} and wait until "
            + (_probe_text(policy.health_check_url(target.code, app.spec.get("healthCheckUrl")))),
            _deploy_estimate(session, app) + DEFAULT_HEALTH_SECONDS,
        ),
        _plan_step(
            "switch-traffic",
            f"call the {policy.traffic_switch['type']} traffic switch"
            if policy.traffic_switch
            else "no traffic switch configured",
            1.0 if policy.traffic_switch else 0.0,
        ),
        _plan_step(
            "fence", f"scale the service in {source.code} to 0 (pending while it does not answer)", 0.0
        ),
    ]
    rto = round(sum(step["estimatedSeconds"] for step in steps), 1)
    rpo = round((utcnow() - failover.data_time(backup)).total_seconds(), 1) if backup else 0.0
    return {
        "application": f"{app.project}/{app.name}",
        "applicationId": app.id,
        "mode": "dry-run",
        "sourceRegion": source.code,
        "targetRegion": target.code,
        "backupId": backup.id if backup else None,
        "steps": steps,
        "estimatedRtoSeconds": rto,
        "estimatedRpoSeconds": rpo,
        "objectives": {"rtoSeconds": policy.rto_seconds, "rpoSeconds": policy.rpo_seconds},
        "meetsObjectives": {"rto": rto <= policy.rto_seconds, "rpo": rpo <= policy.rpo_seconds},
        "problems": problems
        + [f"{image}: {why}" for image, why in found.missing.items() if image not in copyable],
        "ready": not problems and len(copyable) == len(found.missing),
        "refusedWithoutForce": refusal,
    }


def _probe_text(url: str | None) -> str:
    return f"{url} passes its probe" if url else "its tasks run (it has no probe URL)"


def _policy(app: Application) -> DrPolicy:
    policy = policy_of(app.spec)
    if policy is None:
        raise ValidationError(f"{app.project}/{app.name} has no DR policy: add a 'dr' object", field="dr")
    return policy


def _drill_target(
    session: Session, app: Application, policy: DrPolicy, target_region: int | str | None
) -> Region:
    """Return the region a drill goes to: one of the policy's regions other than the active one.

    After a failover the home region is a candidate too, so a failback can be rehearsed.
    """
    active = get_region(session, app.region_id).code
    priorities = {region.code: region.priority for region in list_regions(session)}
    allowed = [
        code for code in dict.fromkeys([*policy.regions, policy.home_region]) if code and code != active
    ]
    if target_region is not None:
        try:
            target = find_region(session, target_region)
        except NotFound as exc:
            raise ValidationError(exc.message, field="targetRegionId") from exc
        if target.code not in allowed:
            raise ValidationError(
                f"region {target.code} is not a region {app.name} could fail over to "
                f"({', '.join(allowed) or 'none'}): drills only go where a failover would",
                field="targetRegionId",
            )
        return target
    candidates = sorted((code for code in allowed if code in priorities), key=lambda code: priorities[code])
    if not candidates:
        raise ValidationError(f"{app.name} has no DR region other than {active}", field="targetRegionId")
    return find_region(session, candidates[0])


def _newest(
    session: Session, app: Application, target: Region, problems: list[str]
) -> tuple[Backup | None, RestoreSource | None]:
    if not failover.stateful(app):
        return None, None
    found = failover.newest_complete_backup(session, app, target.id, failover.data_parts(app))
    if found is None:
        problems.append(
            f"no succeeded backup of {app.name} with all its data is readable in region {target.code}"
        )
        return None, None
    return found


def _plan_step(name: str, action: str, seconds: float) -> dict[str, Any]:
    return {"name": name, "action": action, "estimatedSeconds": round(seconds, 1)}


def _restore_step(
    session: Session, app: Application, backup: Backup | None, source: RestoreSource | None
) -> dict[str, Any]:
    if backup is None or source is None:
        return _plan_step("restore", "nothing to restore", 0.0)
    volume_bytes = sum(int(part.get("totalBytes") or 0) for part in backup.parts if part["part"] != "config")
    speed, measured = _restore_speed(session, app.id)
    action = (
        f"restore backup {backup.id} ({len(source.parts)} parts, {volume_bytes} bytes) from "
        f"{source.destination.name}; speed {'measured by an earlier run' if measured else 'assumed'} "
        f"{speed / 1e6:.0f} MB/s"
    )
    return _plan_step("restore", action, volume_bytes / speed + 5.0 * len(source.parts))


def _restore_speed(session: Session, app_id: int) -> tuple[float, bool]:
    """Return bytes per second of the app's last measured restore step, else an assumed default."""
    for run in session.scalars(
        select(DrRun)
        .where(DrRun.application_id == app_id, DrRun.status == "succeeded")
        .order_by(DrRun.id.desc())
        .limit(5)
    ):
        backup = session.get(Backup, run.backup_id) if run.backup_id else None
        step = next(
            (item for item in run.steps if item["name"] == "restore" and item["status"] == "succeeded"), None
        )
        if backup and backup.total_bytes and step and step.get("durationSeconds"):
            return max(1.0, backup.total_bytes / float(step["durationSeconds"])), True
    return float(DEFAULT_RESTORE_BYTES_PER_SECOND), False


def _deploy_estimate(session: Session, app: Application) -> float:
    last = session.scalar(
        select(Deployment)
        .where(Deployment.application_id == app.id, Deployment.status == "succeeded")
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    if last is None or last.started_at is None or last.finished_at is None:
        return DEFAULT_DEPLOY_SECONDS
    return (last.finished_at - last.started_at).total_seconds()


# Live drill


def start_live_drill(
    session: Session,
    runtime: Runtime,
    app_id: int,
    *,
    actor: str,
    target_region: int | str | None = None,
    trigger: str = "manual",
    wait: bool = False,
) -> DrRun:
    """Record a live drill and run it in the background (or now, with ``wait``)."""
    app = get_application(session, app_id)
    policy = _policy(app)
    target = _drill_target(session, app, policy, target_region)
    running = active_run(session, app.id)
    if running is not None:
        raise ConflictError(f"DR run {running.id} of {app.name} is running: wait for it to finish")
    run = DrRun(
        application_id=app.id,
        application_name=f"{app.project}/{app.name}",
        kind="drill",
        mode="live",
        trigger=trigger,
        source_region_id=app.region_id,
        target_region_id=target.id,
        actor=actor,
    )
    session.add(run)
    session.commit()
    if wait:
        run_live_drill(runtime, run.id)
        session.expire_all()
        return session.get(DrRun, run.id) or run
    _executor.submit(run_live_drill, runtime, run.id)
    return run


def run_live_drill(runtime: Runtime, run_id: int) -> None:
    steps = StepLog(runtime, run_id)
    with runtime.store.session() as session:
        run = session.get(DrRun, run_id)
        if run is None or run.application_id is None:
            return
        app = get_application(session, run.application_id)
        target = get_region(session, int(run.target_region_id or 0))
        drill_app_id: int | None = None
        try:
            backup, source = _drill_preflight(session, runtime, app, target, steps)
            run.backup_id = backup.id if backup else None
            run.data_at = failover.data_time(backup) if backup else None
            session.commit()
            volumes = _drill_restore(session, runtime, app, target, backup, source, run_id, steps)
            drill_app_id = _drill_deploy(session, runtime, app, target, volumes, run_id, steps)
            _drill_verify(session, runtime, drill_app_id, backup, source, volumes, run_id, steps)
            status: Outcome = "succeeded"
            message: str | None = None
        except HostCraftError as exc:
            session.rollback()
            status, message = "failed", exc.message
        except Exception as exc:
            logger.exception("drill failed unexpectedly", extra={"run_id": run_id})
            session.rollback()
            status, message = "failed", f"unexpected error: {exc}"
        _teardown(session, runtime, drill_app_id, target, volumes_of(session, run_id), steps)
        _finish(session, runtime, run_id, status, message)


def volumes_of(session: Session, run_id: int) -> dict[str, str]:
    """Return the drill volumes a run created (swarm name -> node id), from its restore step."""
    run = session.get(DrRun, run_id)
    if run is not None:
        session.refresh(run)  # the step log writes through its own sessions
    step = next((item for item in (run.steps if run else []) if item["name"] == "restore"), None)
    return dict(((step or {}).get("details") or {}).get("created") or {})


def _drill_preflight(
    session: Session, runtime: Runtime, app: Application, target: Region, steps: StepLog
) -> tuple[Backup | None, RestoreSource | None]:
    return failover.preflight(session, runtime, app, _policy(app), target, steps)


def _drill_restore(
    session: Session,
    runtime: Runtime,
    app: Application,
    target: Region,
    backup: Backup | None,
    source: RestoreSource | None,
    run_id: int,
    steps: StepLog,
) -> dict[str, tuple[str, str]]:
    """Restore each volume part into ``<volume>_drill<run>``; return volume name -> (swarm name, node)."""
    from hostcraft.services.backup_restore import run_restore_job

    parts = [part for part in (source.parts if source else []) if part["part"].startswith("volume:")]
    if backup is None or source is None or not parts:
        steps.skip("restore", "no volume to restore")
        return {}
    with steps.step("restore") as notes:
        node = failover.data_node(session, runtime, app, target)
        restored: dict[str, tuple[str, str]] = {}
        created: dict[str, str] = {}
        notes["created"] = created
        for part in parts:
            name = part["part"].removeprefix("volume:")
            drill_volume = f"{name}_drill{run_id}"
            swarm_volume = volume_name(app.project, drill_volume)
            created[swarm_volume] = node.node_id
            run_restore_job(
                session,
                runtime,
                target.id,
                source.destination,
                part,
                node_id=node.node_id,
                volume=swarm_volume,
            )
            restored[name] = (swarm_volume, node.node_id)
        notes["message"] = f"{len(restored)} volume(s) restored on {node.hostname}"
        return restored


def _drill_deploy(
    session: Session,
    runtime: Runtime,
    app: Application,
    target: Region,
    volumes: dict[str, tuple[str, str]],
    run_id: int,
    steps: StepLog,
) -> int:
    from hostcraft.services.deployments import start_deployment

    with steps.step("deploy") as notes:
        document = _drill_document(app, run_id)
        document["image"] = failover.pinned_image(session, app).split("@")[0]
        document["region"] = target.id
        document["secrets"] = [
            {**secret, "value": value}
            for secret in document.get("secrets") or []
            if (value := _secret_value(app, runtime, secret["name"])) is not None
        ]
        drill = create_application(session, runtime, document, actor="hostcraft-drill")
        for name, (swarm_volume, node_id) in volumes.items():
            session.add(
                AppVolume(
                    application_id=drill.id,
                    name=f"{name}_drill{run_id}",
                    swarm_name=swarm_volume,
                    driver="local",
                    node_id=node_id,
                )
            )
        session.commit()
        notes["drillApplicationId"] = drill.id
        deployment = start_deployment(
            session,
            runtime,
            drill.id,
            actor="hostcraft-drill",
            image_reference=image_for_region(session, target.id, failover.pinned_image(session, app)),
            wait=True,
        )
        if deployment.status != "succeeded":
            raise ConflictError(f"the drill copy did not come up: {deployment.message}")
        notes["message"] = f"{drill.project}/{drill.name} running in {target.code}"
        return drill.id


def _drill_document(app: Application, run_id: int) -> dict[str, Any]:
    document = copy.deepcopy(app.spec)
    document["name"] = f"{app.name}-drill{run_id}"[:40].rstrip("-")
    document["replicas"] = min(1, int(document.get("replicas", 1)))
    # The copy must not take the app's host ports, be probed, back up or have its own DR policy.
    for key in ("ports", "healthCheckUrl", "backupSchedule", "dr", "backupReplicateTo"):
        document.pop(key, None)
    document["volumes"] = [
        {**volume, "name": f"{volume['name']}_drill{run_id}"} for volume in document.get("volumes") or []
    ]
    return document


def _secret_value(app: Application, runtime: Runtime, name: str) -> str | None:
    from hostcraft.services.applications import secret_values

    return secret_values(app, runtime).get(name)


def _drill_verify(
    session: Session,
    runtime: Runtime,
    drill_app_id: int,
    backup: Backup | None,
    source: RestoreSource | None,
    volumes: dict[str, tuple[str, str]],
    run_id: int,
    steps: StepLog,
) -> None:
    from hostcraft.services.backup_restore import restore_database_part

    with steps.step("verify") as notes:
        drill = get_application(session, drill_app_id)
        # The deployment recorded the service id through its own session.
        session.refresh(drill)
        checked: dict[str, Any] = {}
        # A replica's parts carry only snapshot ids; the checksums were recorded on the backup's own.
        recorded = {item["part"]: item for item in (backup.parts if backup else [])}
        for copied in source.parts if source else []:
            part = {**recorded.get(copied["part"], {}), **copied}
            if part["part"].startswith("volume:") and source is not None:
                name = part["part"].removeprefix("volume:")
                checked[part["part"]] = _verify_volume(session, runtime, drill, source, part, *volumes[name])
            elif part["part"].startswith("database:") and backup is not None and source is not None:
                restore_database_part(
                    session, runtime, drill, backup, source.destination, part, mode="replace"
                )
                checked[part["part"]] = _verify_database(session, runtime, drill, part)
        notes["checked"] = checked
        notes["message"] = f"{len(checked)} part(s) match the backup; the drill copy runs"
        run = session.get(DrRun, run_id)
        assert run is not None
        started = run.started_at
        run.rto_seconds = round((utcnow() - started).total_seconds(), 3)
        run.rpo_seconds = (
            round((started - run.data_at).total_seconds(), 3) if run.data_at is not None else 0.0
        )
        session.commit()


def _verify_volume(
    session: Session,
    runtime: Runtime,
    drill: Application,
    source: RestoreSource,
    part: dict[str, Any],
    swarm_volume: str,
    node_id: str,
) -> dict[str, Any]:
    from hostcraft.services.backups import remove_finished_job

    with any_manager(session, runtime, drill.region_id, require_quorum=True) as (_, client):
        result = run_job(
            client,
            image=image_for_region(session, drill.region_id, runtime.settings.backup_image),
            node_id=node_id,
            repository=restic_for(source.destination, runtime).repository,
            script=CHECKSUM_SCRIPT,
            variables={"HC_SNAPSHOT": "", "HC_SOURCE": VOLUME_MOUNT},
            mounts=[VolumeMount(volume=swarm_volume, target=VOLUME_MOUNT, read_only=True)],
            timeout=runtime.settings.backup_job_timeout_seconds,
            purpose="drill-verify",
        )
    remove_finished_job(session, runtime, result)
    if result.state != "complete" or result.exit_code != 0:
        raise ConflictError(f"failed to read back drill volume {swarm_volume}: job ended {result.state}")
    digest, files = manifest_digest(result.output)
    recorded = part.get("manifestSha256")
    if recorded is not None and (digest != recorded or files != part.get("files")):
        raise ConflictError(
            f"drill volume {swarm_volume} differs from the backup: {files} files, manifest {digest[:12]}; "
            f"recorded {part.get('files')} files, manifest {recorded[:12]}"
        )
    return {"compared": "checksum manifest" if recorded else "read back only", "files": files}


def _verify_database(
    session: Session, runtime: Runtime, drill: Application, part: dict[str, Any]
) -> dict[str, Any]:
    from hostcraft.services import backup_databases as databases

    name = part["part"].removeprefix("database:")
    entry = databases.find_entry(drill, name)
    source = databases.database_source(drill, runtime, {**entry, "database": part.get("database")})
    with databases.database_container(session, runtime, drill) as target:
        counts = databases.fingerprint(target, source, source.database)
    recorded = part.get("fingerprint")
    if recorded is not None and counts != recorded:
        raise ConflictError(
            f"database {name} in the drill copy has row counts {counts}, the backup {recorded}"
        )
    return {"compared": "row counts" if recorded is not None else "loaded only", "rows": counts}


def _teardown(
    session: Session,
    runtime: Runtime,
    drill_app_id: int | None,
    target: Region,
    volumes: dict[str, str],
    steps: StepLog,
) -> None:
    """Remove the drill copy and its volumes; a leftover is reported on the run, never hidden."""
    try:
        with steps.step("teardown") as notes:
            if drill_app_id is not None:
                delete_application(session, runtime, drill_app_id, actor="hostcraft-drill")
                session.commit()
            removed = _remove_volumes(session, runtime, target, volumes)
            notes["message"] = f"drill copy removed, {removed} volume(s) removed"
    except HostCraftError as exc:
        logger.warning("drill teardown incomplete", extra={"region": target.code, "error": exc.message})


def _remove_volumes(session: Session, runtime: Runtime, target: Region, volumes: dict[str, str]) -> int:
    from hostcraft.services.servers import engine_client, list_servers

    servers = {server.swarm_node_id: server for server in list_servers(session, region_id=target.id)}
    removed = 0
    for volume, node_id in volumes.items():
        server = servers.get(node_id)
        if server is None:
            continue
        with engine_client(server, runtime) as client:
            if _remove_volume(client, volume):
                removed += 1
    return removed


def _remove_volume(client: docker.DockerClient, volume: str) -> bool:
    # The deleted service's containers go away a moment later; until then the volume is in use.
    deadline = time.monotonic() + VOLUME_REMOVE_TIMEOUT_SECONDS
    while True:
        try:
            client.volumes.get(volume).remove(force=True)
            return True
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            if time.monotonic() > deadline:
                raise ConflictError(f"failed to remove drill volume {volume}: {exc}") from exc
            time.sleep(1)


def _finish(session: Session, runtime: Runtime, run_id: int, status: Outcome, message: str | None) -> None:
    run = get_run(session, run_id)
    notice: tuple[Trigger, str, str, Severity] | None = None
    if status != "succeeded":
        text = f"the live drill of {run.application_name} failed: {message}"
        notice = ("dr_drill_failed", f"DR drill failed: {run.application_name}", text, "critical")
    finish_run(session, runtime, run_id, status=status, message=message, notice=notice)
