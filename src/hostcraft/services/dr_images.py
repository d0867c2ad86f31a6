"""Make an app's images pullable in another region: check the region's registry, copy when missing.

Nodes of a region pull from that region's registry (``Region.image_registry``). An image kept in
another region's registry is copied registry to registry, byte for byte, so its digest stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from hostcraft.docker.registry_copy import copy_image, image_present, split_reference
from hostcraft.errors import HostCraftError
from hostcraft.services.regions import get_region, image_for_region, list_regions, registry_of
from hostcraft.store.models import Region

logger = logging.getLogger(__name__)

REGISTRY_TIMEOUT_SECONDS = 30.0
COPYABLE = "a failover copies it from"


@dataclass
class ImageCheck:
    """The outcome of making images available in a region: present, copied, unchecked, missing."""

    present: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


def ensure_images(session: Session, region_id: int, images: list[str], *, copy: bool = True) -> ImageCheck:
    """Check that each image is in the region's registry and, with ``copy``, copy the missing ones.

    An image outside every region's registry (a public or shared registry) cannot be checked
    here and is listed as ``unchecked``. ``missing`` maps an image to why it is not available.
    """
    region = get_region(session, region_id)
    insecure = _region_registries(session)
    result = ImageCheck()
    for image in dict.fromkeys(images):
        wanted = image_for_region(session, region_id, image)
        if region.image_registry is None or registry_of(wanted) != region.image_registry:
            result.unchecked.append(wanted)
            continue
        _ensure_one(image, wanted, region, result, copy=copy, insecure=insecure)
    return result


def _region_registries(session: Session) -> list[str]:
    # NOTE: HostCraft talks plain HTTP to region registries, as the lab's need. A registry that
    # serves TLS would need a setting to select HTTPS, and that setting does not exist yet.
    return [region.image_registry for region in list_regions(session) if region.image_registry]


def _ensure_one(
    image: str, wanted: str, region: Region, result: ImageCheck, *, copy: bool, insecure: list[str]
) -> None:
    target = split_reference(wanted)
    reference = target.digest or target.tag or "latest"
    try:
        if image_present(
            str(region.image_registry),
            target.repository,
            reference,
            timeout=REGISTRY_TIMEOUT_SECONDS,
            insecure=insecure,
        ):
            result.present.append(wanted)
            return
    except HostCraftError as exc:
        result.missing[wanted] = f"registry {region.image_registry} of region {region.code}: {exc.message}"
        return
    source = registry_of(image)
    if source is None or source == region.image_registry:
        result.missing[wanted] = f"not in registry {region.image_registry} of region {region.code}"
        return
    if not copy:
        result.missing[wanted] = _copy_outlook(source, target.repository, reference, region, insecure)
        return
    try:
        copy_image(
            source,
            str(region.image_registry),
            target.repository,
            reference,
            timeout=REGISTRY_TIMEOUT_SECONDS,
            insecure=insecure,
        )
    except HostCraftError as exc:
        result.missing[wanted] = (
            f"not in registry {region.image_registry} of region {region.code}, and copying it from "
            f"{source} failed: {exc.message}"
        )
        logger.warning(
            "failed to copy image", extra={"image": image, "region": region.code, "error": exc.message}
        )
        return
    logger.info("image copied", extra={"image": image, "region": region.code})
    result.copied.append(wanted)


def _copy_outlook(source: str, repository: str, reference: str, region: Region, insecure: list[str]) -> str:
    """Say whether a missing image could be copied from its source registry, without copying it."""
    missing = f"not in registry {region.image_registry} of region {region.code}"
    try:
        if image_present(source, repository, reference, timeout=REGISTRY_TIMEOUT_SECONDS, insecure=insecure):
            return f"{missing}; {COPYABLE} {source}"
        return f"{missing}, and {source} does not have it either"
    except HostCraftError as exc:
        return f"{missing}, and {source} cannot be read: {exc.message}"
