"""Building the lab images on a lab node and pushing them to the lab registry.

Nothing is pulled from outside: the busybox base is ``FROM scratch`` with Debian's static
``/bin/busybox``, and the web app is built on that base. Every image carries the label
``org.hostcraft.lab.assets``, a digest of what it was built from, so an image is rebuilt only
when the registry lacks it or contains one built from other assets.
"""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import httpx
from docker.errors import APIError, BuildError

from hostcraft.backup.image import build_restic_image
from hostcraft.errors import BackupError, LabError
from hostcraft.lab.engine import engine_running
from hostcraft.lab.host import require_lab_host
from hostcraft.lab.registry import image_labels
from hostcraft.lab.state import Lab, LabNode
from hostcraft.lab.swarm import node_client

logger = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).parent / "assets"
BUSYBOX_BINARY = Path("/bin/busybox")
ASSETS_LABEL = "org.hostcraft.lab.assets"
WEBAPP_VERSIONS = ("v1", "v2")

# Fixed timestamp for files in build contexts, so equal inputs give equal tar archives.
_CONTEXT_MTIME = 1_700_000_000


def build_images(lab: Lab, *, progress: Callable[[str], None] | None = None) -> dict[str, str]:
    """Build the lab images and push them to the lab registry; return their references.

    Keys are ``busybox``, ``webapp:v1`` and ``webapp:v2``. An image already in the registry
    with the current assets digest is neither built nor pushed again.
    """
    report = progress or (lambda message: None)
    require_lab_host(programs={})
    if not BUSYBOX_BINARY.is_file():
        raise LabError(f"{BUSYBOX_BINARY} not found; install it with `apt-get install busybox-static`")
    references = lab.images()
    digest = assets_digest()
    missing = [name for name, ref in references.items() if not _pushed(lab, ref, digest)]
    if not missing:
        return references

    node = _build_node(lab)
    client = node_client(node, timeout=600)
    try:
        labels = {ASSETS_LABEL: digest}
        # The web app is built FROM the base, so the base is built whenever anything is
        # missing. An unchanged base is a cache hit on the node.
        report(f"building {references['busybox']} on {node.name}")
        _build(client, _busybox_context(), references["busybox"], labels, {})
        if "busybox" in missing:
            report(f"pushing {references['busybox']}")
            _push(client, references["busybox"])
        for version in WEBAPP_VERSIONS:
            name = f"webapp:{version}"
            if name not in missing:
                continue
            report(f"building {references[name]} on {node.name}")
            build_args = {"BASE_IMAGE": references["busybox"]}
            _build(client, _webapp_context(version), references[name], labels, build_args)
            report(f"pushing {references[name]}")
            _push(client, references[name])
    finally:
        client.close()
    return references


def push_backup_image(lab: Lab, *, progress: Callable[[str], None] | None = None) -> str:
    """Build the backup job image from this machine's restic and push it to the lab registry.

    Returns its reference. The build runs on a lab node, where an unchanged build is a cache
    hit, and a push of layers the registry has sends only the manifest.
    """
    report = progress or (lambda message: None)
    reference = lab.backup_image()
    node = _build_node(lab)
    client = node_client(node, timeout=600)
    try:
        report(f"building {reference} on {node.name}")
        try:
            build_restic_image(client, reference)
        except BackupError as exc:
            raise LabError(exc.message, details={"image": reference}) from exc
        report(f"pushing {reference}")
        _push(client, reference)
    finally:
        client.close()
    return reference


def assets_digest() -> str:
    """Return a SHA-256 over the image assets and the busybox binary they embed."""
    digest = hashlib.sha256()
    for path in sorted(_asset_files()):
        digest.update(str(path.relative_to(ASSETS_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(BUSYBOX_BINARY.read_bytes())
    return digest.hexdigest()


def _pushed(lab: Lab, reference: str, digest: str) -> bool:
    repository, tag = reference.removeprefix(f"{lab.registry}/").rsplit(":", 1)
    try:
        labels = image_labels(lab, repository, tag)
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise LabError(
            f"failed to read {reference} from the lab registry: {exc}",
            details={"lab": lab.name, "image": reference},
        ) from exc
    return labels is not None and labels.get(ASSETS_LABEL) == digest


def _build_node(lab: Lab) -> LabNode:
    for node in lab.nodes:
        if engine_running(lab, node):
            return node
    raise LabError(
        f"no engine of lab {lab.name} is running to build the images; start the lab with `lab up {lab.name}`",
        details={"lab": lab.name},
    )


def _build(
    client: docker.DockerClient,
    context: bytes,
    tag: str,
    labels: dict[str, str],
    build_args: dict[str, str],
) -> None:
    try:
        client.images.build(
            fileobj=io.BytesIO(context),
            custom_context=True,
            tag=tag,
            labels=labels,
            buildargs=build_args,
            pull=False,
            rm=True,
            forcerm=True,
            use_config_proxy=False,
        )
    except BuildError as exc:
        build_log = "".join(str(entry.get("stream", "")) for entry in exc.build_log)
        raise LabError(
            f"failed to build {tag}: {exc.msg}\n{build_log[-2000:]}", details={"image": tag}
        ) from exc
    except APIError as exc:
        raise LabError(f"failed to build {tag}: {exc.explanation or exc}", details={"image": tag}) from exc


def _push(client: docker.DockerClient, reference: str) -> None:
    repository, tag = reference.rsplit(":", 1)
    try:
        stream = client.images.push(repository, tag=tag, stream=True, decode=True)
        for message in stream:
            if "error" in message:
                raise LabError(
                    f"failed to push {reference}: {message['error']}",
                    details={"image": reference},
                )
    except APIError as exc:
        raise LabError(
            f"failed to push {reference}: {exc.explanation or exc}", details={"image": reference}
        ) from exc


def _busybox_context() -> bytes:
    source = ASSETS_DIR / "busybox"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        _add_file(archive, "Dockerfile", (source / "Dockerfile").read_bytes(), 0o644)
        _add_directory(archive, "rootfs/bin", 0o755)
        _add_file(archive, "rootfs/bin/busybox", BUSYBOX_BINARY.read_bytes(), 0o755)
        for applet in _busybox_applets():
            _add_symlink(archive, f"rootfs/bin/{applet}", "busybox")
        _add_directory(archive, "rootfs/etc", 0o755)
        for name in ("passwd", "group"):
            _add_file(archive, f"rootfs/etc/{name}", (source / "etc" / name).read_bytes(), 0o644)
        _add_directory(archive, "rootfs/tmp", 0o1777)
        _add_directory(archive, "rootfs/root", 0o700)
    return buffer.getvalue()


def _webapp_context(version: str) -> bytes:
    source = ASSETS_DIR / "webapp"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        _add_file(archive, "Dockerfile", (source / "Dockerfile").read_bytes(), 0o644)
        _add_file(archive, "www/version", f"{version}\n".encode(), 0o644)
        for path in sorted((source / "www").rglob("*")) + sorted((source / "app").rglob("*")):
            if path.is_file():
                mode = 0o755 if path.parent.name in ("cgi-bin", "app") else 0o644
                _add_file(archive, str(path.relative_to(source)), path.read_bytes(), mode)
    return buffer.getvalue()


def _busybox_applets() -> list[str]:
    completed = subprocess.run([str(BUSYBOX_BINARY), "--list"], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise LabError(f"failed to list the applets of {BUSYBOX_BINARY}: {completed.stderr}")
    applets = {line.strip() for line in completed.stdout.splitlines() if line.strip()}
    # A link named busybox would replace the binary it points to.
    applets.discard("busybox")
    return sorted(applets)


def _asset_files() -> Iterator[Path]:
    # The database images have their own recipe digest in hostcraft.lab.database_images.
    return (
        path
        for path in ASSETS_DIR.rglob("*")
        if path.is_file() and path.relative_to(ASSETS_DIR).parts[0] != "databases"
    )


def _add_file(archive: tarfile.TarFile, name: str, content: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = mode
    info.mtime = _CONTEXT_MTIME
    archive.addfile(info, io.BytesIO(content))


def _add_directory(archive: tarfile.TarFile, name: str, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = _CONTEXT_MTIME
    archive.addfile(info)


def _add_symlink(archive: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mode = 0o777
    info.mtime = _CONTEXT_MTIME
    archive.addfile(info)
