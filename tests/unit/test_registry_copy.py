from __future__ import annotations

import pytest

from hostcraft.docker.registry_copy import ImageReference, rewrite_registry, split_reference
from hostcraft.errors import ValidationError

DIGEST = "sha256:" + "ab" * 32

SPLIT_CASES = [
    ("nginx", ImageReference(None, "nginx", None, None)),
    ("nginx:1.27", ImageReference(None, "nginx", "1.27", None)),
    ("library/nginx:1.27", ImageReference(None, "library/nginx", "1.27", None)),
    ("myorg/app", ImageReference(None, "myorg/app", None, None)),
    ("10.77.91.1:5000/demo/web:1", ImageReference("10.77.91.1:5000", "demo/web", "1", None)),
    ("127.0.0.1:5000/busybox", ImageReference("127.0.0.1:5000", "busybox", None, None)),
    ("localhost/app:v2", ImageReference("localhost", "app", "v2", None)),
    ("localhost:5000/app", ImageReference("localhost:5000", "app", None, None)),
    ("registry.example.com/team/app:2.0", ImageReference("registry.example.com", "team/app", "2.0", None)),
    (f"nginx@{DIGEST}", ImageReference(None, "nginx", None, DIGEST)),
    (f"nginx:1.27@{DIGEST}", ImageReference(None, "nginx", "1.27", DIGEST)),
    (
        f"10.77.91.1:5000/demo/web:1@{DIGEST}",
        ImageReference("10.77.91.1:5000", "demo/web", "1", DIGEST),
    ),
    ("[::1]:5000/app:1", ImageReference("[::1]:5000", "app", "1", None)),
    # A single component is never a registry, even with a dot: "web.app" is a repository.
    ("web.app:3", ImageReference(None, "web.app", "3", None)),
]


@pytest.mark.parametrize(("image", "expected"), SPLIT_CASES, ids=[case[0] for case in SPLIT_CASES])
def test_split_reference_parts(image: str, expected: ImageReference) -> None:
    assert split_reference(image) == expected


@pytest.mark.parametrize(("image", "_expected"), SPLIT_CASES, ids=[case[0] for case in SPLIT_CASES])
def test_split_reference_round_trips(image: str, _expected: ImageReference) -> None:
    assert str(split_reference(image)) == image


@pytest.mark.parametrize(
    ("image", "manifest_reference"),
    [
        ("nginx", "latest"),
        ("nginx:1.27", "1.27"),
        (f"nginx:1.27@{DIGEST}", DIGEST),
        (f"nginx@{DIGEST}", DIGEST),
    ],
)
def test_manifest_reference_prefers_digest(image: str, manifest_reference: str) -> None:
    assert split_reference(image).manifest_reference == manifest_reference


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("", "repository name is missing"),
        ("Nginx:1", "must be lowercase"),
        ("nginx:-bad", "tag '-bad'"),
        ("nginx@sha256:short", "digest 'sha256:short'"),
        ("bad host/app", "whitespace"),
        ("reg..example.com/app", "not a valid host"),
    ],
)
def test_split_reference_rejects_invalid_image(image: str, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        split_reference(image)
    assert caught.value.field == "image"
    assert reason in caught.value.message


REWRITE_CASES = [
    ("10.77.91.1:5000/demo/web:1", "10.77.92.1:5000/demo/web:1"),
    (f"10.77.91.1:5000/demo/web:1@{DIGEST}", f"10.77.92.1:5000/demo/web:1@{DIGEST}"),
    (f"10.77.91.1:5000/demo/web@{DIGEST}", f"10.77.92.1:5000/demo/web@{DIGEST}"),
    ("10.77.91.1:5000/busybox", "10.77.92.1:5000/busybox"),
    # Other registries, Docker Hub and a different port of the same host stay unchanged.
    ("registry.example.com/demo/web:1", "registry.example.com/demo/web:1"),
    ("nginx:1.27", "nginx:1.27"),
    ("10.77.91.1:5001/demo/web:1", "10.77.91.1:5001/demo/web:1"),
    ("10.77.91.1/demo/web:1", "10.77.91.1/demo/web:1"),
]


@pytest.mark.parametrize(("image", "expected"), REWRITE_CASES, ids=[case[0] for case in REWRITE_CASES])
def test_rewrite_registry_swaps_only_source(image: str, expected: str) -> None:
    assert rewrite_registry(image, "10.77.91.1:5000", "10.77.92.1:5000") == expected


def test_rewrite_registry_rejects_invalid_image() -> None:
    with pytest.raises(ValidationError):
        rewrite_registry("Bad Image", "10.77.91.1:5000", "10.77.92.1:5000")
