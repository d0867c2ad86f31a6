"""Run one restic command where the data lives: a Swarm ``replicated-job`` pinned to a node.

The job mounts the volume (read-only for backups), gets the repository secrets through its
environment, prints restic's ``--json`` lines, and is removed when it ends. The result is read
from reality: the task's state and exit code, and the job's own output.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import docker.types

from hostcraft.backup.restic import Repository
from hostcraft.errors import BackupError, EngineUnavailable

logger = logging.getLogger(__name__)

LABEL_JOB = "io.hostcraft.backup-job"
TERMINAL_TASK_STATES = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}
VOLUME_MOUNT = "/data"


@dataclass(frozen=True)
class VolumeMount:
    volume: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class JobResult:
    state: str
    exit_code: int | None
    output: str
    error: str | None
    node_id: str | None
    service_id: str | None = None


def run_job(
    client: docker.DockerClient,
    *,
    image: str,
    node_id: str,
    repository: Repository,
    script: str,
    variables: dict[str, str],
    mounts: list[VolumeMount],
    timeout: float,
    purpose: str,
) -> JobResult:
    """Run ``sh -c SCRIPT`` once on ``node_id`` and return its final task state and output.

    ``script`` is a fixed program text. Every value it uses comes from ``variables`` or the
    repository environment, so no input is formatted into a shell string.
    """
    name = f"hostcraft-{purpose}-{uuid.uuid4().hex[:10]}"
    env = {**repository.environment(), **variables, "RESTIC_OPTIONS": " ".join(repository.options())}
    spec_mounts = [
        docker.types.Mount(target=mount.target, source=mount.volume, type="volume", read_only=mount.read_only)
        for mount in mounts
    ]
    if not repository.is_s3:
        # A local-path repository is a folder on the node itself (or shared storage mounted there).
        spec_mounts.append(docker.types.Mount(target=repository.url, source=repository.url, type="bind"))
    template = docker.types.TaskTemplate(
        container_spec=docker.types.ContainerSpec(
            image,
            command=["sh", "-c", script],
            env=[f"{key}={value}" for key, value in env.items()],
            mounts=spec_mounts,
        ),
        restart_policy=docker.types.RestartPolicy(condition="none"),
        placement=docker.types.Placement(constraints=[f"node.id=={node_id}"]),
    )
    try:
        service = client.api.create_service(
            template,
            name=name,
            labels={LABEL_JOB: purpose},
            mode=docker.types.ServiceMode("replicated-job", concurrency=1, replicas=1),
        )
    except docker.errors.APIError as exc:
        raise BackupError(
            f"failed to start the {purpose} job on node {node_id}: {exc.explanation}", reason="failed"
        ) from exc
    service_id = str(service["ID"])
    try:
        task = _wait_for_task(client, service_id, timeout=timeout, purpose=purpose)
        output = _logs(client, service_id)
    finally:
        _remove(client, service_id)
    status = task.get("Status") or {}
    container = status.get("ContainerStatus") or {}
    exit_code = container.get("ExitCode")
    return JobResult(
        state=str(status.get("State")),
        exit_code=int(exit_code) if exit_code is not None else None,
        output=output,
        error=status.get("Err"),
        node_id=task.get("NodeID"),
        service_id=service_id,
    )


def _wait_for_task(
    client: docker.DockerClient, service_id: str, *, timeout: float, purpose: str
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            tasks = client.api.tasks(filters={"service": service_id})
        except (docker.errors.APIError, OSError) as exc:
            raise EngineUnavailable(f"failed to read the {purpose} job's task: {exc}") from exc
        finished = [task for task in tasks if (task.get("Status") or {}).get("State") in TERMINAL_TASK_STATES]
        if finished:
            return dict(finished[0])
        time.sleep(0.5)
    raise BackupError(
        f"the {purpose} job did not finish within {timeout:.0f} s; it was removed", reason="failed"
    )


def _logs(client: docker.DockerClient, service_id: str) -> str:
    # The task has ended, but its last lines can reach the manager a moment later.
    text = ""
    for _ in range(10):
        raw = client.api.service_logs(service_id, stdout=True, stderr=True, follow=False)
        chunks = raw if isinstance(raw, bytes) else b"".join(raw)
        text = chunks.decode(errors="replace")
        if "hostcraft-job-end" in text:
            break
        time.sleep(0.5)
    return text


def _remove(client: docker.DockerClient, service_id: str) -> None:
    try:
        client.api.remove_service(service_id)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        logger.warning("failed to remove backup job", extra={"service_id": service_id, "error": str(exc)})


# Job programs. They print "hostcraft-job-end" last, so the caller knows it has every line.

BACKUP_SCRIPT = """
restic $RESTIC_OPTIONS --no-cache backup --json --host "$HC_HOST" --tag "$HC_TAGS" "$HC_SOURCE"
status=$?
echo hostcraft-job-end
exit $status
"""

# Back up like BACKUP_SCRIPT, then print the checksum manifest of the tree it read, in the
# format of CHECKSUM_SCRIPT, so a later restore test can compare the restored tree with it.
BACKUP_MANIFEST_SCRIPT = """
restic $RESTIC_OPTIONS --no-cache backup --json --host "$HC_HOST" --tag "$HC_TAGS" "$HC_SOURCE"
status=$?
if [ $status -eq 0 ] && cd "$HC_SOURCE"; then
  find . -type f -exec md5sum {} + | sed 's/^/sum /'
  find . -type l | while read -r link; do echo "link $(readlink "$link") $link"; done
  find . -type d | sed 's/^/dir /'
fi
echo hostcraft-job-end
exit $status
"""

# Restore into a staging folder inside the target volume, so a failed restore leaves the
# volume's data untouched. Only then is the volume's content replaced by the snapshot's tree.
RESTORE_SCRIPT = """
set -u
staging="$HC_TARGET/.hostcraft-restore-$HC_RUN"
mkdir -p "$staging" || { echo "failed to create $staging" >&2; echo hostcraft-job-end; exit 2; }
if ! restic $RESTIC_OPTIONS --no-cache restore "$HC_SNAPSHOT" --target "$staging"; then
  rm -rf "$staging"
  echo hostcraft-job-end
  exit 1
fi
tree="$staging$HC_SNAPSHOT_PATH"
fail() { echo "$1" >&2; echo hostcraft-job-end; exit 3; }
find "$HC_TARGET" -mindepth 1 -maxdepth 1 ! -path "$staging" -exec rm -rf {} + || fail "failed to clear"
for entry in "$tree"/* "$tree"/.[!.]* "$tree"/..?*; do
  if [ -e "$entry" ] || [ -L "$entry" ]; then mv "$entry" "$HC_TARGET"/ || fail "failed to move"; fi
done
rm -rf "$staging"
echo restored
echo hostcraft-job-end
"""

# Verify a restore: restore into a scratch folder and print one checksum line per file.
# NOTE: names containing a newline print as two lines, and both manifests split them alike.
CHECKSUM_SCRIPT = """
set -u
if [ -n "${HC_SNAPSHOT:-}" ]; then
  if ! restic $RESTIC_OPTIONS --no-cache restore "$HC_SNAPSHOT" --target /scratch >/dev/null; then
    echo hostcraft-job-end
    exit 1
  fi
  root="/scratch$HC_SNAPSHOT_PATH"
else
  root="$HC_SOURCE"
fi
cd "$root" || { echo hostcraft-job-end; exit 2; }
find . -type f -exec md5sum {} + | sed 's/^/sum /'
find . -type l | while read -r link; do echo "link $(readlink "$link") $link"; done
find . -type d | sed 's/^/dir /'
echo hostcraft-job-end
"""


def manifest_digest(output: str) -> tuple[str, int]:
    """Return the SHA-256 of a job's sorted manifest lines and the number of files in it."""
    lines = sorted(line for line in output.splitlines() if line.startswith(("sum ", "link ", "dir ")))
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return digest, sum(1 for line in lines if line.startswith("sum "))


def remove_job_containers(node_client: docker.DockerClient, service_id: str) -> int:
    """Remove the finished containers a job left on its node; return how many were removed.

    Swarm 20.10 keeps the container of a finished job task after the service is removed, and
    its configuration contains the repository password and S3 keys from the job's environment.
    """
    removed = 0
    for container in node_client.api.containers(
        all=True, filters={"label": f"com.docker.swarm.service.id={service_id}"}
    ):
        node_client.api.remove_container(container["Id"], force=True)
        removed += 1
    return removed
