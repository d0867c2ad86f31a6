"""The DR report: per application, objectives against what drills and failovers measured.

It also names the region the control plane runs in. A control plane inside an app's home region
goes down with that region, and then nothing is left to run the failover.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hostcraft.domain.dr import DrPolicy, policy_of
from hostcraft.metrics import register_store_collector
from hostcraft.runtime import Runtime
from hostcraft.services.dr_runs import stamp
from hostcraft.services.failover import data_parts, data_time, newest_complete_backup, stateful
from hostcraft.services.regions import list_regions
from hostcraft.services.servers import list_servers
from hostcraft.store.models import Application, DrFence, DrRun, DrStandby, Region, utcnow

logger = logging.getLogger(__name__)


def build_report(session: Session, runtime: Runtime) -> dict[str, Any]:
    regions = {region.id: region for region in list_regions(session)}
    codes = {region.code: region for region in regions.values()}
    location = control_plane_region(session, runtime)
    apps = []
    warnings = []
    for app in session.scalars(select(Application).order_by(Application.project, Application.name)):
        policy = policy_of(app.spec)
        if policy is None:
            continue
        entry = _app_entry(session, app, policy, regions, codes)
        if location is not None and location.code in {policy.home_region, regions[app.region_id].code}:
            role = "runs" if location.code == regions[app.region_id].code else "has its home region"
            warning = (
                f"HostCraft runs inside region {location.code}, where {app.project}/{app.name} {role}: "
                "if the region is lost, the control plane is lost with it. Run HostCraft in a DR region or "
                "a third site, or restore it there from its self-backup (hostcraft restore-self)"
            )
            entry["warnings"].append(warning)
            warnings.append(warning)
        apps.append(entry)
    return {
        "generatedAt": stamp(utcnow()),
        "controlPlane": {
            "region": location.code if location else None,
            "detectedFrom": "HOSTCRAFT_CONTROL_PLANE_REGION"
            if runtime.settings.control_plane_region
            else "addresses of this machine",
            "warnings": warnings,
        },
        "applications": apps,
    }


def _app_entry(
    session: Session,
    app: Application,
    policy: DrPolicy,
    regions: dict[int, Region],
    codes: dict[str, Region],
) -> dict[str, Any]:
    drill = _last_run(session, app.id, ("drill",))
    real = _last_run(session, app.id, ("failover", "failback"))
    entry: dict[str, Any] = {
        "applicationId": app.id,
        "application": f"{app.project}/{app.name}",
        "activeRegion": regions[app.region_id].code,
        "homeRegion": policy.home_region,
        "drRegions": list(policy.regions),
        "mode": policy.mode,
        "automatic": policy.automatic,
        "objectives": {"rtoSeconds": policy.rto_seconds, "rpoSeconds": policy.rpo_seconds},
        "lastDrill": _run_summary(drill, policy),
        "lastFailover": _run_summary(real, policy),
        "replicatedBackups": _backup_ages(session, app, policy, codes),
        "standbys": _standbys(session, app.id, regions),
        "pendingFences": [
            regions[fence.region_id].code
            for fence in session.scalars(
                select(DrFence).where(DrFence.application_id == app.id, DrFence.status == "pending")
            )
            if fence.region_id in regions
        ],
        "warnings": [],
    }
    for code, age in entry["replicatedBackups"].items():
        if age is None and stateful(app):
            entry["warnings"].append(
                f"no backup of this app is readable in {code}: a failover there would fail"
            )
        elif age is not None and age > policy.rpo_seconds:
            entry["warnings"].append(
                f"the newest backup readable in {code} is {age:.0f} s old, above the RPO objective"
            )
    return entry


def _last_run(session: Session, app_id: int, kinds: tuple[str, ...]) -> DrRun | None:
    return session.scalar(
        select(DrRun)
        .where(
            DrRun.application_id == app_id, DrRun.kind.in_(kinds), DrRun.status.in_(("succeeded", "failed"))
        )
        .order_by(DrRun.id.desc())
        .limit(1)
    )


def _run_summary(run: DrRun | None, policy: DrPolicy) -> dict[str, Any] | None:
    if run is None:
        return None
    meets = (
        run.status == "succeeded"
        and run.rto_seconds is not None
        and run.rto_seconds <= policy.rto_seconds
        and (run.rpo_seconds or 0.0) <= policy.rpo_seconds
    )
    return {
        "runId": run.id,
        "kind": run.kind,
        "status": run.status,
        "at": stamp(run.started_at),
        "rtoSeconds": run.rto_seconds,
        "rpoSeconds": run.rpo_seconds,
        "result": "pass" if meets else "fail",
        "message": run.message,
    }


def _backup_ages(
    session: Session, app: Application, policy: DrPolicy, codes: dict[str, Region]
) -> dict[str, float | None]:
    """Return, per DR region (and home when the app runs elsewhere), the age of the newest backup there."""
    active = next((code for code, region in codes.items() if region.id == app.region_id), None)
    wanted = [
        code for code in [*policy.regions, policy.home_region] if code and code != active and code in codes
    ]
    ages: dict[str, float | None] = {}
    for code in dict.fromkeys(wanted):
        found = newest_complete_backup(session, app, codes[code].id, data_parts(app))
        if found is None:
            ages[code] = None
            continue
        backup, _ = found
        ages[code] = round((utcnow() - data_time(backup)).total_seconds(), 1)
    return ages


def _standbys(session: Session, app_id: int, regions: dict[int, Region]) -> list[dict[str, Any]]:
    return [
        {
            "region": regions[row.region_id].code if row.region_id in regions else None,
            "status": row.status,
            "image": row.image_reference,
            "seededBackupId": row.seeded_backup_id,
            "preparedAt": stamp(row.prepared_at),
            "message": row.message,
        }
        for row in session.scalars(select(DrStandby).where(DrStandby.application_id == app_id))
    ]


# Where the control plane runs


def control_plane_region(session: Session, runtime: Runtime) -> Region | None:
    """Return the managed region this HostCraft process runs in, or None when it runs outside them.

    ``HOSTCRAFT_CONTROL_PLANE_REGION`` sets it explicitly. Otherwise a server whose endpoint is a
    local socket or an address of this machine places the control plane in that server's region.
    """
    regions = list_regions(session)
    if runtime.settings.control_plane_region:
        return next(
            (region for region in regions if region.code == runtime.settings.control_plane_region), None
        )
    local = local_addresses()
    for server in list_servers(session):
        if _endpoint_is_local(server.endpoint, local):
            return next((region for region in regions if region.id == server.region_id), None)
    return None


def _endpoint_is_local(endpoint: str, local: set[str]) -> bool:
    parts = urlsplit(endpoint)
    if parts.scheme in ("unix", "npipe"):
        return True
    host = parts.hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in ("localhost",)
    return address.is_loopback or str(address) in local


def local_addresses() -> set[str]:
    """Return the IP addresses of this machine's interfaces (in its own network namespace)."""
    try:
        output = subprocess.run(
            ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=5, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("failed to list local addresses", extra={"error": str(exc)})
        return set()
    return {
        str(item["local"])
        for interface in json.loads(output or "[]")
        for item in interface.get("addr_info") or []
        if item.get("local")
    }


@register_store_collector
def dr_metrics(session: Session) -> Iterable[Metric]:
    """DR runs by kind and status, and the RTO/RPO measured by each app's last finished run."""
    runs = GaugeMetricFamily(
        "hostcraft_dr_runs", "DR runs recorded, by kind and status.", labels=["kind", "status"]
    )
    for kind, status, count in session.execute(
        select(DrRun.kind, DrRun.status, func.count(DrRun.id)).group_by(DrRun.kind, DrRun.status)
    ):
        runs.add_metric([kind, status], count)
    rto = GaugeMetricFamily(
        "hostcraft_dr_measured_rto_seconds",
        "RTO of the app's last succeeded run.",
        labels=["application", "kind"],
    )
    rpo = GaugeMetricFamily(
        "hostcraft_dr_measured_rpo_seconds",
        "RPO of the app's last succeeded run.",
        labels=["application", "kind"],
    )
    latest: dict[tuple[str, str], DrRun] = {}
    for run in session.scalars(
        select(DrRun)
        .where(DrRun.status == "succeeded", DrRun.application_name.is_not(None))
        .order_by(DrRun.id)
    ):
        latest[(str(run.application_name), run.kind)] = run
    for (application, kind), run in latest.items():
        if run.rto_seconds is not None:
            rto.add_metric([application, kind], run.rto_seconds)
        if run.rpo_seconds is not None:
            rpo.add_metric([application, kind], run.rpo_seconds)
    return [runs, rto, rpo]
