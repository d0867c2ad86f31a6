"""The probe image: a one-binary busybox image that HostCraft runs on nodes to measure them.

HostCraft never pulls it. When a node lacks it, HostCraft imports it from the control plane's
statically linked busybox (Debian's ``busybox-static``, ``/bin/busybox``). Operators who have
no static busybox set ``HOSTCRAFT_PROBE_IMAGE`` to an image their nodes already have.
"""

from __future__ import annotations

import io
import logging
import subprocess
import tarfile
import threading
from pathlib import Path

import docker
import docker.errors

from hostcraft.errors import HostCraftError

logger = logging.getLogger(__name__)

DEFAULT_PROBE_IMAGE = "hostcraft/probe:1"
BUSYBOX_PATH = Path("/bin/busybox")
APPLETS = ("sh", "df", "grep", "tail", "nc", "cat", "sleep", "echo", "true")

_import_lock = threading.Lock()


class ProbeImageMissing(HostCraftError):
    """The probe image is absent on a node and cannot be imported there."""


def _is_static(binary: Path) -> bool:
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    return "not a dynamic executable" in (result.stdout + result.stderr)


def build_probe_tar(busybox: Path = BUSYBOX_PATH) -> bytes:
    """Return a root file system tar holding busybox and its applet links."""
    if not busybox.exists() or not _is_static(busybox):
        raise ProbeImageMissing(
            f"cannot build the probe image: {busybox} is missing or not statically linked. "
            "Install Debian's busybox-static, or set HOSTCRAFT_PROBE_IMAGE to an image with "
            "sh, df, grep, tail and nc that every node already has"
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for directory in ("bin", "tmp", "engine-root"):
            entry = tarfile.TarInfo(directory)
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o1777 if directory == "tmp" else 0o755
            archive.addfile(entry)
        archive.add(str(busybox), arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            archive.addfile(link)
    return buffer.getvalue()


def ensure_probe_image(client: docker.DockerClient, image: str) -> None:
    """Make sure the node has the probe image, importing the built-in one when it is missing."""
    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    if image != DEFAULT_PROBE_IMAGE:
        raise ProbeImageMissing(
            f"probe image {image!r} is not present on the node, and HostCraft does not pull it: "
            "load it on every node or unset HOSTCRAFT_PROBE_IMAGE to use the built-in one"
        )
    repository, tag = image.rsplit(":", 1)
    with _import_lock:
        client.api.import_image_from_data(
            build_probe_tar(), repository=repository, tag=tag, changes=["ENV PATH=/bin"]
        )
    logger.info("imported probe image", extra={"image": image})
