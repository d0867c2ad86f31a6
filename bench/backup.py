"""Measure a 1 GiB volume backup, a 1 % incremental backup and a restore: HostCraft, bare restic, tar | gzip.

The script brings up its own lab ``hbe`` (one manager on 10.77.180.0/24), forms the swarm through
HostCraft's API and deploys an app with one volume on the node, filled with 1 GiB of random data
in 4 files. Each method then backs the volume up into its own folder on this machine's disk:

- HostCraft: ``POST /api/applications/{id}/backups {"type": "volume"}`` (a restic job pinned to
  the node, then ``restic check``), and ``POST /api/backups/{id}/restore {"mode": "new"}``;
- bare restic: ``restic -r DIR backup VOLUME_DIR`` and ``restic -r DIR restore latest --target DIR``
  run directly on the volume's folder, with the same restic binary version, and ``restic check``
  after each backup as HostCraft does;
- tar | gzip (the peers' method): ``tar -C VOLUME_DIR -cf - . | gzip -1`` into a file, a full
  archive again for the "incremental" run, and ``gzip -dc | tar -x`` for the restore.

Between the first and the incremental backup, 1 % of the data (10 MiB in the middle of one file)
is overwritten with new random bytes. Bytes stored is the size of each method's folder. The lab is
removed at the end, also when the run fails.

Needs root on Linux with the lab's programs and restic installed:

    .venv/bin/python bench/backup.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from hostcraft.api.app import create_app
from hostcraft.backup.image import build_restic_image
from hostcraft.config import Settings
from hostcraft.lab import Lab, build_images, lab_down, lab_up, node_client
from hostcraft.runtime import Runtime
from hostcraft.services.tokens import create_token

LAB_NAME = "hbe"
LAB_SUBNET = "10.77.180.0/24"
FILE_COUNT = 4
FILE_BYTES = 256 * 1024 * 1024
CHANGED_BYTES = FILE_COUNT * FILE_BYTES // 100
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Fixed shell text, run in a container on the node with the volume at /data.
FILL_SCRIPT = f"""
set -e
for n in $(seq 1 {FILE_COUNT}); do head -c {FILE_BYTES} /dev/urandom > /data/big-$n.bin; done
"""
CHANGE_SCRIPT = f"""
set -e
head -c {CHANGED_BYTES} /dev/urandom | dd of=/data/big-2.bin bs=1048576 seek=100 conv=notrunc 2>/dev/null
"""


class BenchError(Exception):
    pass


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.monotonic()
    result = action()
    return time.monotonic() - started, result


def folder_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file() and not item.is_symlink())


def tree_digest(path: Path) -> str:
    output = subprocess.run(
        ["sh", "-c", 'cd "$1" && md5sum big-*.bin', "sh", str(path)], check=True, capture_output=True
    )
    return output.stdout.decode()


def run(command: list[str], *, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, env=env, capture_output=True)
    if result.returncode != 0:
        raise BenchError(f"{command[0]} failed: {result.stderr.decode()[-800:]}")


class Api:
    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def post(self, path: str, body: dict[str, Any] | None = None, *, expected: int = 200) -> dict[str, Any]:
        response = self.client.post(path, json=body, headers=self.headers)
        if response.status_code != expected:
            raise BenchError(f"POST {path} returned {response.status_code}: {response.text[:800]}")
        return dict(response.json())

    def get(self, path: str) -> Any:
        return self.client.get(path, headers=self.headers).json()


def run_in_volume(lab: Lab, busybox: str, volume: str, script: str) -> None:
    client = node_client(lab.nodes[0], timeout=900)
    try:
        client.containers.run(
            busybox, ["sh", "-c", script], volumes={volume: {"bind": "/data", "mode": "rw"}}, remove=True
        )
    finally:
        client.close()


def volume_folder(lab: Lab, volume: str) -> Path:
    client = node_client(lab.nodes[0])
    try:
        return Path(client.volumes.get(volume).attrs["Mountpoint"])
    finally:
        client.close()


def bench(work: Path) -> dict[str, Any]:
    lab_down(LAB_NAME)
    lab = lab_up(LAB_NAME, managers=1, workers=0, subnet=LAB_SUBNET, swarm=False)
    busybox = build_images(lab)["busybox"]
    backup_image = f"{lab.registry}/hostcraft/restic:0.14"
    builder = node_client(lab.nodes[0], timeout=600)
    build_restic_image(builder, backup_image)
    for line in builder.images.push(backup_image.rsplit(":", 1)[0], tag="0.14", stream=True, decode=True):
        if "error" in line:
            raise BenchError(f"failed to push the restic image: {line}")
    builder.close()

    runtime = Runtime.create(
        Settings(data_dir=work / "hostcraft", engine_enabled=False, backup_image=backup_image)
    )
    try:
        with runtime.store.session() as session:
            _, token = create_token(session, name="bench-admin", role="admin")
        api = Api(TestClient(create_app(runtime, run_engine=False)), token)
        region = api.post(
            "/api/regions", {"name": "Lab", "code": "lab", "priority": 1, "isPrimary": True}, expected=201
        )
        node = lab.nodes[0]
        server = api.post(
            "/api/servers",
            {"name": node.name, "endpoint": node.endpoint, "regionId": region["id"]},
            expected=201,
        )
        api.post(f"/api/servers/{server['id']}/swarm/init", {"advertiseAddress": node.address})
        app = api.post(
            "/api/applications",
            {
                "name": "bench",
                "project": "bench",
                "image": busybox,
                "command": ["sleep", "1000000"],
                "volumes": [{"name": "data", "target": "/data"}],
            },
            expected=201,
        )
        deployed = api.post(f"/api/applications/{app['id']}/deploy?wait=true", expected=202)
        if deployed["status"] != "succeeded":
            raise BenchError(f"deploy failed: {deployed}")
        volume = api.get(f"/api/applications/{app['id']}/volumes")[0]["swarmName"]
        source = volume_folder(lab, volume)
        run_in_volume(lab, busybox, volume, FILL_SCRIPT)
        results: dict[str, dict[str, Any]] = {}

        # HostCraft
        repo = work / "hostcraft-repo"
        destination = api.post(
            "/api/backup-destinations", {"name": "bench", "kind": "local", "path": str(repo)}, expected=201
        )

        def hostcraft_backup() -> dict[str, Any]:
            done = api.post(
                f"/api/applications/{app['id']}/backups?wait=true",
                {"type": "volume", "destinationId": destination["id"]},
                expected=202,
            )
            if done["status"] != "succeeded":
                raise BenchError(f"HostCraft backup failed: {done['message']}")
            return done

        first, done = timed(hostcraft_backup)
        hostcraft_first_bytes = folder_bytes(repo)
        run_in_volume(lab, busybox, volume, CHANGE_SCRIPT)
        changed = tree_digest(source)
        incremental, done = timed(hostcraft_backup)
        restore, restored = timed(lambda: api.post(f"/api/backups/{done['id']}/restore", {"mode": "new"}))
        target = volume_folder(lab, restored["restored"][0]["volume"])
        if tree_digest(target) != changed:
            raise BenchError("HostCraft's restore differs from the backed-up tree")
        results["hostcraft"] = {
            "first": first,
            "incremental": incremental,
            "restore": restore,
            "bytesStoredFirst": hostcraft_first_bytes,
            "bytesStored": folder_bytes(repo),
        }

        # Bare restic, the same version on this machine, straight on the volume's folder.
        run_in_volume(lab, busybox, volume, "rm -f /data/big-*.bin")
        run_in_volume(lab, busybox, volume, FILL_SCRIPT)
        bare = work / "restic-repo"
        env = {
            "PATH": os.environ["PATH"],
            "RESTIC_REPOSITORY": str(bare),
            "RESTIC_PASSWORD": "bench-password",
        }
        run(["restic", "init"], env=env)

        def restic_backup() -> None:
            run(["restic", "--no-cache", "backup", "--json", "--host", "bench", str(source)], env=env)
            run(["restic", "--no-cache", "check"], env=env)

        first, _ = timed(restic_backup)
        restic_first_bytes = folder_bytes(bare)
        run_in_volume(lab, busybox, volume, CHANGE_SCRIPT)
        changed = tree_digest(source)
        incremental, _ = timed(restic_backup)
        restore_dir = work / "restic-restore"
        restore, _ = timed(
            lambda: run(["restic", "--no-cache", "restore", "latest", "--target", str(restore_dir)], env=env)
        )
        if tree_digest(Path(f"{restore_dir}{source}")) != changed:
            raise BenchError("restic's restore differs from the backed-up tree")
        results["restic"] = {
            "first": first,
            "incremental": incremental,
            "restore": restore,
            "bytesStoredFirst": restic_first_bytes,
            "bytesStored": folder_bytes(bare),
        }
        shutil.rmtree(restore_dir)

        # tar | gzip: every run is a full archive.
        archives = work / "tar"
        archives.mkdir()

        def tar_backup(name: str) -> None:
            run(["sh", "-c", 'tar -C "$1" -cf - . | gzip -1 > "$2"', "sh", str(source), str(archives / name)])

        first, _ = timed(lambda: tar_backup("first.tar.gz"))
        tar_first_bytes = folder_bytes(archives)
        run_in_volume(lab, busybox, volume, CHANGE_SCRIPT)
        changed = tree_digest(source)
        incremental, _ = timed(lambda: tar_backup("second.tar.gz"))
        untar = work / "tar-restore"
        untar.mkdir()
        restore, _ = timed(
            lambda: run(
                [
                    "sh",
                    "-c",
                    'gzip -dc "$1" | tar -x -C "$2"',
                    "sh",
                    str(archives / "second.tar.gz"),
                    str(untar),
                ]
            )
        )
        if tree_digest(untar) != changed:
            raise BenchError("tar's restore differs from the archived tree")
        results["tar_gzip"] = {
            "first": first,
            "incremental": incremental,
            "restore": restore,
            "bytesStoredFirst": tar_first_bytes,
            "bytesStored": folder_bytes(archives),
        }
        return results
    finally:
        runtime.close()


def restic_version() -> str:
    return subprocess.run(["restic", "version"], capture_output=True, check=False).stdout.decode().strip()


def format_table(results: dict[str, dict[str, Any]]) -> str:
    base = results["restic"]
    lines = [
        "| method | first backup | incremental (1 %) | restore | stored after first | stored after both |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (
        ("hostcraft", "HostCraft"),
        ("restic", "bare restic"),
        ("tar_gzip", "tar \\| gzip -1"),
    ):
        row = results[name]
        cells = [
            f"{row[key]:.1f} s ({row[key] / base[key]:.2f}x)" for key in ("first", "incremental", "restore")
        ]
        stored = [f"{row[key] / 2**20:.0f} MiB" for key in ("bytesStoredFirst", "bytesStored")]
        lines.append(f"| {label} | {' | '.join(cells)} | {' | '.join(stored)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="folder for repositories (default: a temp dir)"
    )
    options = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/backup.py needs root (it runs a lab)", file=sys.stderr)
        return 2
    work = options.work_dir or Path(tempfile.mkdtemp(prefix="hostcraft-bench-backup-"))
    try:
        results = bench(work)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        lab_down(LAB_NAME)
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "results": results,
        "restic": restic_version(),
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "backup.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
