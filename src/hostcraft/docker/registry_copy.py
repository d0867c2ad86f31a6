"""Copy images between registries byte-exact over the Docker Registry HTTP API v2.

A failover region's nodes pull from their own registry, so an image stored in the source
region's registry is copied there first. Manifests are copied as raw bytes, which keeps every
digest, and a blob the target already has is not sent again. Registries named in ``insecure``
are reached over plain http, every other one over https.

NOTE: registry authentication is not implemented, so both registries must allow anonymous
pull and push. A 401 or 403 becomes a ``RegistryError`` with reason ``unauthorized``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx

from hostcraft.domain.appspec import image_reference_problem
from hostcraft.errors import RegistryError, ValidationError

logger = logging.getLogger(__name__)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
MANIFEST_INDEXES = (DOCKER_MANIFEST_LIST, OCI_INDEX)
MANIFEST_ACCEPT = ", ".join(IMAGE_MANIFESTS + MANIFEST_INDEXES)

# Layers of these types (Windows base layers) are not pushed by default, and nodes fetch them
# from the ``urls`` of their descriptor, so they are not copied.
FOREIGN_LAYERS = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
)

DEFAULT_TIMEOUT_SECONDS = 30.0

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


@dataclass(frozen=True)
class ImageReference:
    """An image reference split into its parts. ``registry`` is None for Docker Hub."""

    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def manifest_reference(self) -> str:
        """The tag or digest to fetch the manifest by: the digest wins, and no tag means ``latest``."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        name = f"{self.registry}/{self.repository}" if self.registry else self.repository
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{name}{tag}{digest}"


@dataclass(frozen=True)
class BlobCopy:
    """One blob handled by ``copy_image``. ``uploaded`` is False when the target already had it."""

    digest: str
    size: int
    uploaded: bool


@dataclass(frozen=True)
class _Manifest:
    content: bytes
    media_type: str
    digest: str


@dataclass(frozen=True)
class _Descriptor:
    digest: str
    size: int


@dataclass(frozen=True)
class _Registry:
    """An open client for one registry, whose ``host:port`` error messages show as ``name``."""

    name: str
    client: httpx.Client


def split_reference(image: str) -> ImageReference:
    """Split ``image`` into registry, repository, tag and digest, or raise ValidationError if invalid.

    The first path component is the registry only when it contains '.' or ':' or is 'localhost'.
    """
    problem = image_reference_problem(image)
    if problem is not None:
        raise ValidationError(f"invalid image {image!r}: {problem}", field="image")
    name, _, digest = image.partition("@")
    tag = None
    last_colon, last_slash = name.rfind(":"), name.rfind("/")
    if last_colon > last_slash:
        name, tag = name[:last_colon], name[last_colon + 1 :]
    registry = None
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, name = first, rest
    return ImageReference(registry=registry, repository=name, tag=tag, digest=digest or None)


def rewrite_registry(image: str, source_registry: str, target_registry: str) -> str:
    """Return ``image`` with its registry swapped to ``target_registry`` when it is ``source_registry``."""
    reference = split_reference(image)
    if reference.registry != source_registry:
        return image
    return str(replace(reference, registry=target_registry))


def image_present(
    registry: str,
    repository: str,
    reference: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    insecure: Collection[str] = (),
) -> bool:
    """Tell whether ``registry`` has a manifest for ``repository`` at ``reference`` (tag or digest)."""
    _check_name(repository, reference)
    with _open_registry(registry, timeout=timeout, insecure=insecure) as target:
        response = _send(
            target, "HEAD", _manifest_path(repository, reference), headers={"Accept": MANIFEST_ACCEPT}
        )
    if response.status_code == 404:
        return False
    _raise_for_status(response, target, f"read manifest {repository}:{reference}")
    return True


def copy_image(
    source_registry: str,
    target_registry: str,
    repository: str,
    reference: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    insecure: Collection[str] = (),
    progress: Callable[[BlobCopy], None] | None = None,
) -> str:
    """Copy ``repository`` at ``reference`` byte-exact from one registry to the other and return its digest.

    ``timeout`` bounds each request, not the whole copy. ``progress`` is called once per blob.
    """
    _check_name(repository, reference)
    report = progress or (lambda blob: None)
    with (
        _open_registry(source_registry, timeout=timeout, insecure=insecure) as source,
        _open_registry(target_registry, timeout=timeout, insecure=insecure) as target,
    ):
        digest = _copy_manifest(source, target, repository, reference, report)
    logger.info(
        "image copied",
        extra={
            "repository": repository,
            "reference": reference,
            "digest": digest,
            "source_registry": source_registry,
            "target_registry": target_registry,
        },
    )
    return digest


def _copy_manifest(
    source: _Registry,
    target: _Registry,
    repository: str,
    reference: str,
    report: Callable[[BlobCopy], None],
) -> str:
    manifest = _get_manifest(source, repository, reference)
    descriptors = _descriptors(manifest, source, repository, reference)
    if manifest.media_type in MANIFEST_INDEXES:
        # The target registry rejects an index whose child manifests it does not have yet.
        for child in descriptors:
            _copy_manifest(source, target, repository, child.digest, report)
    else:
        for blob in descriptors:
            report(_copy_blob(source, target, repository, blob))
    _put_manifest(target, repository, reference, manifest)
    return manifest.digest


def _get_manifest(source: _Registry, repository: str, reference: str) -> _Manifest:
    response = _send(
        source, "GET", _manifest_path(repository, reference), headers={"Accept": MANIFEST_ACCEPT}
    )
    _raise_for_status(response, source, f"read manifest {repository}:{reference}")
    content = response.content
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    announced = response.headers.get("Docker-Content-Digest")
    expected = reference if reference.startswith("sha256:") else announced
    if expected is not None and expected != digest:
        raise RegistryError(
            f"registry {source.name} returned manifest {repository}:{reference} with digest {digest}, "
            f"expected {expected}: the registry's storage may be corrupt; check it before copying",
            reason="digest_mismatch",
            details={"registry": source.name, "repository": repository, "reference": reference},
        )
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    return _Manifest(content=content, media_type=media_type, digest=digest)


def _descriptors(
    manifest: _Manifest, source: _Registry, repository: str, reference: str
) -> list[_Descriptor]:
    """Return the child manifests of an index, or the config and layers of an image manifest."""
    if manifest.media_type not in IMAGE_MANIFESTS + MANIFEST_INDEXES:
        raise RegistryError(
            f"manifest {repository}:{reference} in registry {source.name} has media type "
            f"{manifest.media_type!r}, which HostCraft cannot copy: push the image again with a "
            "current Docker, which stores a schema 2 or OCI manifest",
            reason="unsupported",
            details={"registry": source.name, "repository": repository, "mediaType": manifest.media_type},
        )
    try:
        document = json.loads(manifest.content)
        if manifest.media_type in MANIFEST_INDEXES:
            return [_descriptor(item) for item in document["manifests"]]
        layers = [layer for layer in document["layers"] if layer.get("mediaType") not in FOREIGN_LAYERS]
        return [_descriptor(item) for item in [document["config"], *layers]]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RegistryError(
            f"registry {source.name} returned an invalid manifest for {repository}:{reference}: "
            f"{type(exc).__name__}: {exc}",
            reason="invalid_response",
            details={"registry": source.name, "repository": repository, "reference": reference},
        ) from exc


def _descriptor(item: Any) -> _Descriptor:
    digest, size = item["digest"], item["size"]
    # The digest becomes part of a URL path, so only the form registries produce is accepted.
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ValueError(f"invalid descriptor digest {digest!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"invalid descriptor size {size!r}")
    return _Descriptor(digest=digest, size=size)


def _copy_blob(source: _Registry, target: _Registry, repository: str, blob: _Descriptor) -> BlobCopy:
    present = _send(target, "HEAD", f"/v2/{repository}/blobs/{blob.digest}")
    if present.status_code == 200:
        return BlobCopy(digest=blob.digest, size=blob.size, uploaded=False)
    if present.status_code != 404:
        _raise_for_status(present, target, f"check blob {blob.digest} of {repository}")

    upload_url = _start_upload(target, repository)
    with _stream_blob(source, repository, blob.digest) as chunks:
        response = _send(
            target,
            "PUT",
            upload_url.copy_merge_params({"digest": blob.digest}),
            content=chunks,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
        )
    _raise_for_status(response, target, f"upload blob {blob.digest} of {repository}")
    return BlobCopy(digest=blob.digest, size=blob.size, uploaded=True)


def _start_upload(target: _Registry, repository: str) -> httpx.URL:
    response = _send(target, "POST", f"/v2/{repository}/blobs/uploads/")
    _raise_for_status(response, target, f"start a blob upload to {repository}")
    location = response.headers.get("Location")
    if not location:
        raise RegistryError(
            f"registry {target.name} started a blob upload to {repository} without a Location header",
            reason="invalid_response",
            details={"registry": target.name, "repository": repository},
        )
    # The Location may be relative, and its query carries the upload's state.
    return response.url.join(location)


@contextmanager
def _stream_blob(source: _Registry, repository: str, digest: str) -> Iterator[Iterator[bytes]]:
    action = f"read blob {digest} of {repository}"
    response = _send(source, "GET", f"/v2/{repository}/blobs/{digest}", stream=True)
    try:
        if not response.is_success:
            response.read()
        _raise_for_status(response, source, action)
        yield _source_chunks(response, source, action)
    finally:
        response.close()


def _source_chunks(response: httpx.Response, source: _Registry, action: str) -> Iterator[bytes]:
    # Raised here, a read error names the source registry, not the target that was receiving.
    try:
        yield from response.iter_bytes()
    except httpx.TransportError as exc:
        raise _transport_error(exc, source, action) from exc


def _put_manifest(target: _Registry, repository: str, reference: str, manifest: _Manifest) -> None:
    response = _send(
        target,
        "PUT",
        _manifest_path(repository, reference),
        content=manifest.content,
        headers={"Content-Type": manifest.media_type},
    )
    _raise_for_status(response, target, f"store manifest {repository}:{reference}")
    stored = response.headers.get("Docker-Content-Digest")
    if stored != manifest.digest:
        raise RegistryError(
            f"registry {target.name} stored manifest {repository}:{reference} as {stored}, "
            f"expected {manifest.digest}: the copy is not byte-exact, so nodes would run another "
            "image; check that the target registry stores manifests unchanged",
            reason="digest_mismatch",
            details={"registry": target.name, "repository": repository, "reference": reference},
        )


@contextmanager
def _open_registry(registry: str, *, timeout: float, insecure: Collection[str]) -> Iterator[_Registry]:
    scheme = "http" if registry in insecure else "https"
    # trust_env=False: proxy variables meant for the internet must not carry registry traffic.
    with httpx.Client(
        base_url=f"{scheme}://{registry}", timeout=timeout, trust_env=False, follow_redirects=True
    ) as client:
        yield _Registry(name=registry, client=client)


def _send(
    registry: _Registry, method: str, url: httpx.URL | str, *, stream: bool = False, **kwargs: Any
) -> httpx.Response:
    try:
        request = registry.client.build_request(method, url, **kwargs)
        return registry.client.send(request, stream=stream)
    except httpx.TransportError as exc:
        raise _transport_error(exc, registry, f"{method} {url}") from exc


def _transport_error(exc: httpx.TransportError, registry: _Registry, action: str) -> RegistryError:
    if isinstance(exc, httpx.TimeoutException):
        reason, failure = "timeout", "timed out"
    else:
        reason, failure = "unreachable", f"is unreachable ({exc})"
    return RegistryError(
        f"registry {registry.name} {failure} during {action}: check that it runs at "
        f"{registry.client.base_url} and that the control plane can reach it",
        reason=reason,
        details={"registry": registry.name},
    )


def _raise_for_status(response: httpx.Response, registry: _Registry, action: str) -> None:
    if response.is_success:
        return
    status = response.status_code
    errors = _registry_errors(response)
    if status == 404:
        reason, hint = "not_found", "push the image there or correct the image reference"
    elif status in (401, 403):
        reason, hint = "unauthorized", "HostCraft copies only between registries that allow anonymous access"
    elif status == 400 and any(code == "DIGEST_INVALID" for code, _ in errors):
        reason, hint = "digest_mismatch", "the source registry sent content that does not match its digest"
    else:
        reason, hint = "rejected", "see the registry's log"
    summary = "; ".join(f"{code}: {message}" for code, message in errors)
    detail = f" ({summary})" if summary else ""
    raise RegistryError(
        f"failed to {action} in registry {registry.name}: HTTP {status}{detail}; {hint}",
        reason=reason,
        details={"registry": registry.name, "status": status},
    )


def _registry_errors(response: httpx.Response) -> list[tuple[str, str]]:
    """Return the ``(code, message)`` pairs of a registry's JSON error body, if it has one."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return []
    return [
        (str(error.get("code")), str(error.get("message"))) for error in errors if isinstance(error, dict)
    ]


def _manifest_path(repository: str, reference: str) -> str:
    return f"/v2/{repository}/manifests/{reference}"


def _check_name(repository: str, reference: str) -> None:
    separator = "@" if reference.startswith("sha256:") else ":"
    image = f"{repository}{separator}{reference}"
    problem = image_reference_problem(image)
    if problem is not None:
        raise ValidationError(f"invalid image {image!r}: {problem}", field="image")
