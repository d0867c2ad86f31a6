"""Build Engine API service specs from validated application documents (camelCase JSON).

Swarm objects of an application are namespaced by project: the service is ``<project>_<name>``,
volumes ``<project>_<volume>``, secrets ``<project>_<secret>_<version>`` and the network
``<project>_default``, so two projects can both have an app ``web`` and a volume ``data``.
"""

from __future__ import annotations

from typing import Any

NS = 1_000_000_000
LABEL_APP = "io.hostcraft.app"
LABEL_PROJECT = "io.hostcraft.project"
LABEL_APP_ID = "io.hostcraft.app-id"
LABEL_DEPLOYMENT = "io.hostcraft.deployment"


def service_name(project: str, name: str) -> str:
    return f"{project}_{name}"


def volume_name(project: str, volume: str) -> str:
    return f"{project}_{volume}"


def network_name(project: str) -> str:
    return f"{project}_default"


def _mounts(app: dict[str, Any]) -> list[dict[str, Any]]:
    mounts = []
    for volume in app.get("volumes") or []:
        mounts.append(
            {
                "Type": "volume",
                "Source": volume_name(app["project"], volume["name"]),
                "Target": volume["target"],
                "ReadOnly": bool(volume.get("readOnly")),
                "VolumeOptions": {
                    "Labels": {LABEL_PROJECT: app["project"], LABEL_APP: app["name"]},
                    "DriverConfig": {
                        "Name": volume.get("driver") or "local",
                        "Options": dict(volume.get("driverOptions") or {}),
                    },
                },
            }
        )
    return mounts


def _healthcheck(app: dict[str, Any]) -> dict[str, Any] | None:
    check = app.get("healthcheck")
    if not check:
        return None
    return {
        "Test": list(check["test"]),
        "Interval": int(float(check.get("intervalSeconds", 30)) * NS),
        "Timeout": int(float(check.get("timeoutSeconds", 30)) * NS),
        "Retries": int(check.get("retries", 3)),
        "StartPeriod": int(float(check.get("startPeriodSeconds", 0)) * NS),
    }


def _resources(app: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for key, engine_key in (("limits", "Limits"), ("reservations", "Reservations")):
        values = (app.get("resources") or {}).get(key) or {}
        block: dict[str, Any] = {}
        if values.get("cpus") is not None:
            block["NanoCPUs"] = int(float(values["cpus"]) * NS)
        if values.get("memoryBytes") is not None:
            block["MemoryBytes"] = int(values["memoryBytes"])
        if block:
            resources[engine_key] = block
    return resources


def _placement(app: dict[str, Any], pinned_node_id: str | None) -> dict[str, Any]:
    placement = app.get("placement") or {}
    constraints = list(placement.get("constraints") or [])
    if pinned_node_id:
        # A node-local volume lives on one node: the task must run there.
        constraints.append(f"node.id=={pinned_node_id}")
    result: dict[str, Any] = {"Constraints": constraints}
    preferences = placement.get("preferences") or []
    if preferences:
        result["Preferences"] = [{"Spread": {"SpreadDescriptor": item}} for item in preferences]
    if placement.get("maxReplicasPerNode"):
        result["MaxReplicas"] = int(placement["maxReplicasPerNode"])
    return result


def _endpoint(app: dict[str, Any]) -> dict[str, Any]:
    ports = [
        {
            "Protocol": port.get("protocol") or "tcp",
            "TargetPort": int(port["target"]),
            **({"PublishedPort": int(port["published"])} if port.get("published") else {}),
            "PublishMode": port.get("mode") or "ingress",
        }
        for port in app.get("ports") or []
    ]
    return {"Mode": app.get("endpointMode") or "vip", "Ports": ports}


def build_service_spec(
    app: dict[str, Any],
    *,
    app_id: int,
    deployment_id: int,
    image: str,
    update_config: dict[str, Any],
    rollback_config: dict[str, Any],
    secret_refs: list[dict[str, Any]],
    network_id: str | None,
    pinned_node_id: str | None = None,
    force_update: int = 0,
) -> dict[str, Any]:
    """Return the ``Spec`` of the app's Swarm service for one deployment.

    ``image`` is the reference pinned by digest. The deployment id goes into the container
    labels, so every deployment rolls out new tasks and each task names the deployment it runs.
    """
    labels = {LABEL_APP: app["name"], LABEL_PROJECT: app["project"], LABEL_APP_ID: str(app_id)}
    container: dict[str, Any] = {
        "Image": image,
        "Env": [f"{key}={value}" for key, value in (app.get("env") or {}).items()],
        "Labels": {**labels, LABEL_DEPLOYMENT: str(deployment_id)},
        "Mounts": _mounts(app),
        "Secrets": secret_refs,
    }
    if app.get("command"):
        # Compose's `command` replaces the image's CMD, which is Args in a Swarm container spec.
        container["Args"] = list(app["command"])
    healthcheck = _healthcheck(app)
    if healthcheck is not None:
        container["Healthcheck"] = healthcheck
    task_template: dict[str, Any] = {
        "ContainerSpec": container,
        "Resources": _resources(app),
        "RestartPolicy": {"Condition": "any", "Delay": 5 * NS, "MaxAttempts": 0},
        "Placement": _placement(app, pinned_node_id),
        "ForceUpdate": force_update,
    }
    if network_id:
        task_template["Networks"] = [{"Target": network_id, "Aliases": [app["name"]]}]
    return {
        "Name": service_name(app["project"], app["name"]),
        "Labels": labels,
        "TaskTemplate": task_template,
        "Mode": {"Replicated": {"Replicas": int(app.get("replicas", 1))}},
        "UpdateConfig": update_config,
        "RollbackConfig": rollback_config,
        "EndpointSpec": _endpoint(app),
    }
