"""PostgreSQL, MariaDB and Redis images built from Debian packages, for tests and the lab.

Nothing is pulled: each image is a Debian bookworm root file system made with
``debootstrap --variant=minbase`` and ``apt-get install`` in a chroot, trimmed, and loaded
with ``docker import``. The root file systems are cached as tar archives under
``/var/cache/hostcraft-images``, named after a digest of their recipe, so a second run only
imports (or finds) the image. Every image carries the label ``org.hostcraft.images.recipe``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
from docker.errors import APIError, ImageNotFound

from hostcraft.errors import LabError
from hostcraft.lab.engine import engine_running
from hostcraft.lab.locking import exclusive_lock
from hostcraft.lab.registry import image_labels
from hostcraft.lab.state import Lab
from hostcraft.lab.swarm import node_client

logger = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("HOSTCRAFT_IMAGE_CACHE", "/var/cache/hostcraft-images"))
ASSETS_DIR = Path(__file__).parent / "assets" / "databases"
RECIPE_LABEL = "org.hostcraft.images.recipe"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"

# Removed from every root file system: documentation, translations, package lists and logs.
# /usr/lib/locale stays, because it contains C.UTF-8.
_TRIM_PATHS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf/templates.dat-old",
    "var/log",
)

# Stops package scripts from starting services inside the chroot.
_POLICY_RC = "#!/bin/sh\nexit 101\n"


@dataclass(frozen=True)
class DatabaseImage:
    """The recipe of one image: Debian packages, extra trimming, files and image settings."""

    engine: str
    repository: str
    tag: str
    packages: tuple[str, ...]
    remove: tuple[str, ...]
    files: dict[str, str]
    changes: tuple[str, ...]

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    def recipe_digest(self) -> str:
        """Return a SHA-256 over everything the root file system is built from."""
        digest = hashlib.sha256()
        recipe = {
            "version": 1,
            "suite": SUITE,
            "mirror": MIRROR,
            "trim": _TRIM_PATHS,
            "engine": self.engine,
            "packages": self.packages,
            "remove": self.remove,
            "changes": self.changes,
        }
        digest.update(json.dumps(recipe, sort_keys=True).encode())
        for target, asset in sorted(self.files.items()):
            digest.update(f"\0{target}\0".encode())
            digest.update((ASSETS_DIR / asset).read_bytes())
        return digest.hexdigest()


POSTGRESQL = DatabaseImage(
    engine="postgresql",
    repository="hostcraft/postgres",
    tag="15",
    packages=("postgresql-15",),
    # The cluster Debian creates on installation, and the JIT compiler with its 100 MB LLVM
    # library: PostgreSQL runs without JIT when the provider library is absent.
    remove=(
        "var/lib/postgresql/15",
        "etc/postgresql/15",
        "usr/lib/postgresql/15/lib/llvmjit.so",
        "usr/lib/postgresql/15/lib/llvmjit_types.bc",
        "usr/lib/postgresql/15/lib/bitcode",
        "usr/lib/x86_64-linux-gnu/libLLVM-14.so.1",
        "usr/lib/x86_64-linux-gnu/libLLVM-14.so",
    ),
    files={"usr/local/bin/docker-entrypoint.sh": "postgresql/docker-entrypoint.sh"},
    changes=(
        "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        "ENV PGDATA=/var/lib/postgresql/data",
        'ENTRYPOINT ["docker-entrypoint.sh"]',
        'CMD ["postgres"]',
        "EXPOSE 5432",
        "VOLUME /var/lib/postgresql/data",
    ),
)

MARIADB = DatabaseImage(
    engine="mariadb",
    repository="hostcraft/mariadb",
    tag="10.11",
    packages=("mariadb-server", "mariadb-client"),
    remove=("var/lib/mysql",),
    files={
        "usr/local/bin/docker-entrypoint.sh": "mariadb/docker-entrypoint.sh",
        "etc/mysql/mariadb.conf.d/90-hostcraft.cnf": "mariadb/hostcraft.cnf",
    },
    changes=(
        "ENV LANG=C.UTF-8",
        'ENTRYPOINT ["docker-entrypoint.sh"]',
        'CMD ["mariadbd"]',
        "EXPOSE 3306",
        "VOLUME /var/lib/mysql",
    ),
)

REDIS = DatabaseImage(
    engine="redis",
    repository="hostcraft/redis",
    tag="7",
    packages=("redis-server",),
    remove=("var/lib/redis",),
    files={"usr/local/bin/docker-entrypoint.sh": "redis/docker-entrypoint.sh"},
    changes=(
        "ENV LANG=C.UTF-8",
        "WORKDIR /data",
        'ENTRYPOINT ["docker-entrypoint.sh"]',
        # The official image's build turns protected mode off; without it, a server without
        # a password refuses every client that is not on loopback.
        'CMD ["redis-server", "--protected-mode", "no"]',
        "EXPOSE 6379",
        "VOLUME /data",
    ),
)

DATABASE_IMAGES: dict[str, DatabaseImage] = {image.engine: image for image in (POSTGRESQL, MARIADB, REDIS)}

Progress = Callable[[str], None]


def ensure_database_images(
    client: docker.DockerClient, *, progress: Progress | None = None
) -> dict[str, str]:
    """Build or load the database images into ``client``'s engine; return their references.

    Keys are the engines (``postgresql``, ``mariadb``, ``redis``). An image whose recipe label
    matches is kept; otherwise its cached root file system is imported, and built first when
    the cache lacks it.
    """
    report = progress or (lambda message: None)
    references: dict[str, str] = {}
    for engine, image in DATABASE_IMAGES.items():
        references[engine] = image.reference
        digest = image.recipe_digest()
        if _local_recipe(client, image.reference) == digest:
            continue
        archive = rootfs_archive(image, progress=report)
        report(f"importing {image.reference}")
        _import(client, archive, image, image.repository, digest)
    return references


def push_database_images(
    lab: Lab, *, engines: Sequence[str] | None = None, progress: Progress | None = None
) -> dict[str, str]:
    """Import the database images on a lab node and push them to the lab registry.

    ``engines`` limits the work to those engines (default: every one). Returns the registry
    references keyed by engine. An image already in the registry with the current recipe
    digest is neither imported nor pushed again.
    """
    report = progress or (lambda message: None)
    unknown = sorted(set(engines or ()) - set(DATABASE_IMAGES))
    if unknown:
        raise LabError(
            f"unknown database engine {unknown[0]!r}: expected one of {', '.join(DATABASE_IMAGES)}",
            details={"engine": unknown[0]},
        )
    references = {
        engine: reference
        for engine, reference in lab.database_images().items()
        if engines is None or engine in engines
    }
    node_name = next((node.name for node in lab.nodes if engine_running(lab, node)), None)
    if node_name is None:
        raise LabError(
            f"no engine of lab {lab.name} is running to load the database images; "
            f"start the lab with `lab up {lab.name}`",
            details={"lab": lab.name},
        )
    client = node_client(lab.node(node_name), timeout=900)
    try:
        for engine, reference in references.items():
            image = DATABASE_IMAGES[engine]
            repository, tag = reference.rsplit(":", 1)
            digest = image.recipe_digest()
            if _registry_recipe(lab, reference) == digest:
                continue
            archive = rootfs_archive(image, progress=report)
            report(f"importing {reference} on {node_name}")
            _import(client, archive, image, repository, digest, tag=tag)
            report(f"pushing {reference}")
            _push(client, repository, tag)
    finally:
        client.close()
    return references


def rootfs_archive(image: DatabaseImage, *, progress: Progress | None = None) -> Path:
    """Return the cached root file system archive of ``image``, building it when missing."""
    report = progress or (lambda message: None)
    archive = CACHE_DIR / f"{image.engine}-{image.recipe_digest()[:16]}.tar"
    if archive.is_file():
        return archive
    with exclusive_lock(str(CACHE_DIR / ".lock")):
        # Another process may have built it while this one waited for the lock.
        if archive.is_file():
            return archive
        base = _base_archive(report)
        report(f"building the {image.engine} root file system (apt-get in a chroot)")
        _build_rootfs(image, base, archive)
        _remove_stale_archives(image.engine, keep=archive)
    return archive


def _base_archive(report: Progress) -> Path:
    digest = hashlib.sha256(f"{SUITE} {MIRROR} minbase apt-get-update".encode()).hexdigest()[:16]
    archive = CACHE_DIR / f"base-{SUITE}-{digest}.tar"
    if archive.is_file():
        return archive
    report(f"running debootstrap --variant=minbase {SUITE} (one time, about a minute)")
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="base-") as work:
        root = Path(work) / "root"
        _run(["debootstrap", "--variant=minbase", SUITE, str(root), MIRROR], what="debootstrap")
        _prepare_chroot(root)
        _run(["chroot", str(root), "apt-get", "update", "-qq"], what="apt-get update in the chroot")
        _write_archive(root, archive, exclude_devices=False)
    return archive


def _build_rootfs(image: DatabaseImage, base: Path, archive: Path) -> None:
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix=f"{image.engine}-") as work:
        root = Path(work) / "root"
        root.mkdir()
        _run(["tar", "--numeric-owner", "-xpf", str(base), "-C", str(root)], what="extract the base")
        _prepare_chroot(root)
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *image.packages]
        _run(["chroot", str(root), *install], what=f"apt-get install {' '.join(image.packages)}")
        _run(["chroot", str(root), "apt-get", "clean"], what="apt-get clean")

        for relative in (*_TRIM_PATHS, *image.remove):
            _remove(root / relative)
        (root / "var/log").mkdir(mode=0o755, exist_ok=True)
        (root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        for target, asset in image.files.items():
            destination = root / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ASSETS_DIR / asset, destination)
            destination.chmod(0o755 if target.endswith(".sh") else 0o644)
        _write_archive(root, archive, exclude_devices=True)


def _prepare_chroot(root: Path) -> None:
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(_POLICY_RC)
    policy.chmod(0o755)
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)


def _write_archive(root: Path, archive: Path, *, exclude_devices: bool) -> None:
    partial = archive.with_suffix(".partial")
    command = ["tar", "--numeric-owner", "-cpf", str(partial), "-C", str(root)]
    if exclude_devices:
        # The engine creates /dev in every container; device nodes in a layer are refused.
        command += ["--exclude=./dev/*"]
    _run([*command, "."], what=f"write {archive.name}")
    partial.rename(archive)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _remove_stale_archives(engine: str, *, keep: Path) -> None:
    for stale in CACHE_DIR.glob(f"{engine}-*.tar"):
        if stale != keep:
            stale.unlink(missing_ok=True)


def _run(command: list[str], *, what: str) -> None:
    environment = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
    }
    completed = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if completed.returncode != 0:
        output = (completed.stderr or completed.stdout)[-2000:]
        raise LabError(
            f"failed to {what} (exit code {completed.returncode}): {output}; "
            f"Debian's mirror {MIRROR} must be reachable and the command run as root",
            details={"command": command[0]},
        )


def _local_recipe(client: docker.DockerClient, reference: str) -> str | None:
    try:
        labels = client.images.get(reference).labels or {}
    except ImageNotFound:
        return None
    except APIError as exc:
        raise LabError(f"failed to inspect {reference}: {exc.explanation or exc}") from exc
    recipe: str | None = labels.get(RECIPE_LABEL)
    return recipe


def _registry_recipe(lab: Lab, reference: str) -> str | None:
    repository, tag = reference.removeprefix(f"{lab.registry}/").rsplit(":", 1)
    try:
        labels = image_labels(lab, repository, tag)
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise LabError(
            f"failed to read {reference} from the lab registry: {exc}",
            details={"lab": lab.name, "image": reference},
        ) from exc
    return None if labels is None else labels.get(RECIPE_LABEL)


def _import(
    client: docker.DockerClient,
    archive: Path,
    image: DatabaseImage,
    repository: str,
    digest: str,
    *,
    tag: str | None = None,
) -> None:
    changes = [*image.changes, f"LABEL {RECIPE_LABEL}={digest}"]
    try:
        response = client.api.import_image_from_file(
            str(archive), repository=repository, tag=tag or image.tag, changes=changes
        )
    except APIError as exc:
        raise LabError(f"failed to import {archive}: {exc.explanation or exc}") from exc
    if '"error"' in str(response):
        raise LabError(f"failed to import {archive}: {response}")


def _push(client: docker.DockerClient, repository: str, tag: str) -> None:
    try:
        for message in client.images.push(repository, tag=tag, stream=True, decode=True):
            if "error" in message:
                raise LabError(f"failed to push {repository}:{tag}: {message['error']}")
    except APIError as exc:
        raise LabError(f"failed to push {repository}:{tag}: {exc.explanation or exc}") from exc
