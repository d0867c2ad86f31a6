"""Copying images between two real registries, with an image pushed by the real engine."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from hostcraft.docker.registry_copy import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    BlobCopy,
    copy_image,
    image_present,
)
from hostcraft.errors import RegistryError
from tests.registry_servers import RegistryServer, free_port, running_registry

BUSYBOX = Path("/bin/busybox")
REPOSITORY = "hostcraft-test/tiny"
TAG = "1"
# Two layers and a config: three blobs per copy.
DOCKERFILE = b'FROM scratch\nCOPY busybox /bin/busybox\nCOPY marker /marker\nCMD ["/bin/busybox", "true"]\n'


def _context(marker: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content, mode in (
            ("Dockerfile", DOCKERFILE, 0o644),
            ("busybox", BUSYBOX.read_bytes(), 0o755),
            ("marker", marker, 0o644),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), mode
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_image(docker_engine: docker.DockerClient) -> Iterator[str]:
    """A two-layer busybox image built locally from scratch, so nothing is pulled."""
    if not BUSYBOX.is_file():
        pytest.fail(f"{BUSYBOX} not found: install Debian's busybox-static package (scripts/test does)")
    tag = f"hostcraft-test/registry-copy:{uuid.uuid4().hex[:8]}"
    image, _ = docker_engine.images.build(
        fileobj=io.BytesIO(_context(uuid.uuid4().bytes)), custom_context=True, tag=tag, pull=False, rm=True
    )
    yield str(image.id)
    docker_engine.images.remove(tag, force=True)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[RegistryServer]:
    with running_registry(tmp_path / "source") as registry:
        yield registry


@pytest.fixture
def target(tmp_path: Path) -> Iterator[RegistryServer]:
    with running_registry(tmp_path / "target") as registry:
        yield registry


def _push(engine: docker.DockerClient, image_id: str, registry: RegistryServer) -> str:
    """Push the image as ``REPOSITORY:TAG`` into ``registry`` and return the manifest digest."""
    repository = f"{registry.address}/{REPOSITORY}"
    engine.images.get(image_id).tag(repository, tag=TAG)
    digest = None
    try:
        for message in engine.images.push(repository, tag=TAG, stream=True, decode=True):
            assert "error" not in message, message
            digest = message.get("aux", {}).get("Digest", digest)
    finally:
        engine.images.remove(f"{repository}:{TAG}")
    assert digest is not None
    return str(digest)


def _copy(source: RegistryServer, target: RegistryServer, reference: str = TAG) -> tuple[str, list[BlobCopy]]:
    blobs: list[BlobCopy] = []
    digest = copy_image(
        source.address,
        target.address,
        REPOSITORY,
        reference,
        timeout=10,
        insecure=(source.address, target.address),
        progress=blobs.append,
    )
    return digest, blobs


def _present(registry: RegistryServer, reference: str) -> bool:
    return image_present(registry.address, REPOSITORY, reference, timeout=10, insecure=(registry.address,))


def test_copy_keeps_manifest_digest(
    docker_engine: docker.DockerClient, tiny_image: str, source: RegistryServer, target: RegistryServer
) -> None:
    pushed = _push(docker_engine, tiny_image, source)
    assert not _present(target, TAG)

    copied, blobs = _copy(source, target)

    assert copied == pushed
    assert _present(target, TAG)
    assert _present(target, pushed)
    assert len(blobs) == 3
    assert all(blob.uploaded for blob in blobs)


def test_copied_image_pulls_from_target(
    docker_engine: docker.DockerClient, tiny_image: str, source: RegistryServer, target: RegistryServer
) -> None:
    _push(docker_engine, tiny_image, source)
    _copy(source, target)

    pulled = docker_engine.images.pull(f"{target.address}/{REPOSITORY}", tag=TAG)
    try:
        assert pulled.id == tiny_image
    finally:
        docker_engine.images.remove(f"{target.address}/{REPOSITORY}:{TAG}")


def test_second_copy_uploads_no_blob(
    docker_engine: docker.DockerClient, tiny_image: str, source: RegistryServer, target: RegistryServer
) -> None:
    pushed = _push(docker_engine, tiny_image, source)
    _copy(source, target)

    again, blobs = _copy(source, target)

    assert again == pushed
    assert len(blobs) == 3
    assert not any(blob.uploaded for blob in blobs)


def test_copy_by_digest_stores_digest_only(
    docker_engine: docker.DockerClient, tiny_image: str, source: RegistryServer, target: RegistryServer
) -> None:
    pushed = _push(docker_engine, tiny_image, source)

    copied, _ = _copy(source, target, pushed)

    assert copied == pushed
    assert _present(target, pushed)
    assert not _present(target, TAG)


@pytest.mark.parametrize(("index_type", "tag"), [(DOCKER_MANIFEST_LIST, "list"), (OCI_INDEX, "index")])
def test_copy_index_copies_child_manifests(
    docker_engine: docker.DockerClient,
    tiny_image: str,
    source: RegistryServer,
    target: RegistryServer,
    index_type: str,
    tag: str,
) -> None:
    pushed = _push(docker_engine, tiny_image, source)
    index_digest = _put_index(source, index_type, tag, pushed)

    copied, blobs = _copy(source, target, tag)

    assert copied == index_digest
    assert _present(target, tag)
    assert _present(target, pushed)
    assert len(blobs) == 3
    with httpx.Client(base_url=f"http://{target.address}", trust_env=False) as client:
        stored = client.get(f"/v2/{REPOSITORY}/manifests/{tag}", headers={"Accept": index_type})
    assert stored.headers["Content-Type"] == index_type


def _put_index(registry: RegistryServer, index_type: str, tag: str, child_digest: str) -> str:
    with httpx.Client(base_url=f"http://{registry.address}", trust_env=False) as client:
        child = client.get(f"/v2/{REPOSITORY}/manifests/{child_digest}", headers={"Accept": DOCKER_MANIFEST})
        child.raise_for_status()
        index = {
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST,
                    "digest": child_digest,
                    "size": len(child.content),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
        response = client.put(
            f"/v2/{REPOSITORY}/manifests/{tag}",
            content=json.dumps(index).encode(),
            headers={"Content-Type": index_type},
        )
        response.raise_for_status()
    return str(response.headers["Docker-Content-Digest"])


def test_copy_missing_tag_names_registry(source: RegistryServer, target: RegistryServer) -> None:
    with pytest.raises(RegistryError) as caught:
        _copy(source, target, "no-such-tag")

    assert caught.value.reason == "not_found"
    assert source.address in caught.value.message
    assert f"{REPOSITORY}:no-such-tag" in caught.value.message
    assert "HTTP 404" in caught.value.message
    assert not _present(target, "no-such-tag")


def test_copy_from_unreachable_source_fails(target: RegistryServer) -> None:
    closed = f"127.0.0.1:{free_port()}"

    with pytest.raises(RegistryError) as caught:
        copy_image(closed, target.address, REPOSITORY, TAG, timeout=5, insecure=(closed, target.address))

    assert caught.value.reason == "unreachable"
    assert f"registry {closed} is unreachable" in caught.value.message
    assert caught.value.details["registry"] == closed


def test_copy_to_unreachable_target_fails(
    docker_engine: docker.DockerClient, tiny_image: str, source: RegistryServer
) -> None:
    _push(docker_engine, tiny_image, source)
    closed = f"127.0.0.1:{free_port()}"

    with pytest.raises(RegistryError) as caught:
        copy_image(source.address, closed, REPOSITORY, TAG, timeout=5, insecure=(source.address, closed))

    assert caught.value.reason == "unreachable"
    assert caught.value.details["registry"] == closed


def test_image_present_false_for_unknown_repository(source: RegistryServer) -> None:
    assert not image_present(
        source.address, "hostcraft-test/absent", TAG, timeout=5, insecure=(source.address,)
    )
