"""Build the backup job image from this machine's files: restic, its libraries and busybox.

Nothing is pulled: the image is ``FROM scratch`` with the host's ``restic`` binary, the shared
libraries ``ldd`` lists for it, and Debian's static busybox for the job's shell, ``find`` and
``md5sum``. Production installs may point ``HOSTCRAFT_BACKUP_IMAGE`` at any image that has
``restic`` (0.14 or newer) and a POSIX shell with those tools.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import docker
import docker.errors

from hostcraft.errors import BackupError

BUSYBOX = Path("/bin/busybox")
# Tools the job programs in ``backup/jobs.py`` call.
APPLETS = ("sh", "find", "md5sum", "sed", "rm", "mv", "mkdir", "readlink", "cat", "echo", "xargs", "ls")
DOCKERFILE = b"""FROM scratch
COPY rootfs/ /
ENV PATH=/bin:/usr/bin
ENTRYPOINT []
"""
_MTIME = 1_700_000_000


def restic_image_context(restic_binary: str = "restic") -> bytes:
    """Return a tar build context holding restic, its libraries and busybox."""
    restic = shutil.which(restic_binary)
    if restic is None:
        raise BackupError(
            f"failed to build the backup image: {restic_binary!r} is not installed", reason="failed"
        )
    if not BUSYBOX.is_file():
        raise BackupError(
            f"failed to build the backup image: {BUSYBOX} not found (apt-get install busybox-static)",
            reason="failed",
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        _add_bytes(archive, "Dockerfile", DOCKERFILE, 0o644)
        _add_path(archive, "rootfs/usr/bin/restic", Path(restic).resolve())
        for library in _libraries(restic):
            _add_path(archive, f"rootfs{library}", Path(library).resolve())
        _add_path(archive, "rootfs/bin/busybox", BUSYBOX)
        for applet in APPLETS:
            info = tarfile.TarInfo(f"rootfs/bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            info.mtime = _MTIME
            archive.addfile(info)
        for folder in ("rootfs/tmp", "rootfs/scratch", "rootfs/root"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder.endswith("tmp") else 0o755
            info.mtime = _MTIME
            archive.addfile(info)
    return buffer.getvalue()


def build_restic_image(client: docker.DockerClient, tag: str, *, restic_binary: str = "restic") -> str:
    """Build the backup job image on the engine behind ``client``; return its id."""
    try:
        image, _ = client.images.build(
            fileobj=io.BytesIO(restic_image_context(restic_binary)),
            custom_context=True,
            tag=tag,
            pull=False,
            rm=True,
            forcerm=True,
        )
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise BackupError(f"failed to build the backup image {tag}: {exc}", reason="failed") from exc
    return str(image.id)


def _libraries(binary: str) -> list[str]:
    completed = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        # ldd exits non-zero for a static binary, which needs no libraries.
        return []
    return re.findall(r"(/\S+\.so[.\d]*)", completed.stdout)


def _add_path(archive: tarfile.TarFile, name: str, path: Path) -> None:
    _add_bytes(archive, name, path.read_bytes(), 0o755)


def _add_bytes(archive: tarfile.TarFile, name: str, content: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = mode
    info.mtime = _MTIME
    archive.addfile(info, io.BytesIO(content))
