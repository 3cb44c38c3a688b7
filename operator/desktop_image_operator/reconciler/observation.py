"""The observation: what the cloud says about an object's image and operation, read before any action.

`observe` only reads (Operation Get, image Get, Desktop Get, List); the reconciler then decides on it
and takes at most one mutating action.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from desktop_image_operator.api import OperationRecord
from desktop_image_operator.cloud.errors import CloudError, Code
from desktop_image_operator.cloud.types import CloudImage, DesktopImageClient, ImageStatus
from desktop_image_operator.reconciler.listings import FolderListings
from desktop_image_operator.reconciler.ownership import Owner, is_ours
from desktop_image_operator.reconciler.resource import Resource
from desktop_image_operator.reconciler.timing import Timing


@dataclass(frozen=True)
class OperationView:
    """Our Running operation as the cloud reports it now."""

    record: OperationRecord
    done: bool
    error: CloudError | None = None
    # NOT_FOUND for longer than a just-started operation may be invisible: its outcome is unknown.
    lost: bool = False
    # How long the cloud took, once it is done (from the cloud's own timestamps).
    duration: float | None = None

    @property
    def running(self) -> bool:
        return not self.done and not self.lost

    @property
    def failed(self) -> bool:
        return self.done and self.error is not None

    @property
    def succeeded(self) -> bool:
        return self.done and self.error is None


@dataclass(frozen=True)
class Observation:
    operation: OperationView | None = None
    # Our image, freshly read; None when there is none (or while an operation runs: not looked at then).
    image: CloudImage | None = None
    # The image was found by its ownership label, not through status (a copy whose answer was lost).
    found_by_label: bool = False
    # Status (or spec.source.imageId) names an image the cloud does not have.
    recorded_image_gone: bool = False
    folder_id: str | None = None
    # The desktop to copy from does not exist (so its folder is unknown).
    source_missing: bool = False
    # An image with our name that is not ours (blocks a copy).
    name_taken_by: CloudImage | None = None


async def observe(
    resource: Resource,
    me: Owner,
    cloud: DesktopImageClient,
    timing: Timing,
    now: datetime,
    listings: FolderListings,
) -> Observation:
    operation = await _operation(resource.status.operation, cloud, timing, now)
    if operation is not None and operation.running:
        return Observation(operation=operation)  # nothing else can change until it ends
    image_id = resource.spec.source.image_id or resource.status.image_id
    if operation is not None and operation.failed and operation.record.kind == "Copy":
        image_id = resource.spec.source.image_id  # the cloud removes the image of a failed copy
    if image_id:
        return await _recorded_image(cloud, image_id, operation)
    return await _look_up(resource, me, cloud, operation, listings)


async def _operation(
    record: OperationRecord | None, cloud: DesktopImageClient, timing: Timing, now: datetime
) -> OperationView | None:
    if record is None or record.phase != "Running":
        return None
    try:
        operation = await cloud.get_operation(record.id)
    except CloudError as error:
        if error.code is not Code.NOT_FOUND:
            raise
        age = (now - record.started_at).total_seconds()
        return OperationView(record, done=False, lost=age > timing.operation_visible_within_seconds)
    failure = operation.error if operation.done else None
    return OperationView(record, done=operation.done, error=failure, duration=operation.duration)


async def _recorded_image(
    cloud: DesktopImageClient, image_id: str, operation: OperationView | None
) -> Observation:
    try:
        image = await cloud.get_image(image_id)
    except CloudError as error:
        if error.code is not Code.NOT_FOUND:
            raise
        return Observation(operation=operation, recorded_image_gone=True)
    return Observation(operation=operation, image=image, folder_id=image.folder_id)


async def _look_up(
    resource: Resource,
    me: Owner,
    cloud: DesktopImageClient,
    operation: OperationView | None,
    listings: FolderListings,
) -> Observation:
    """Our image by its ownership labels, whatever its name (status does not know it)."""
    folder_id = await _folder(resource, cloud)
    if folder_id is None:
        return Observation(operation=operation, source_missing=True)
    listing = await listings.listing(cloud, folder_id)
    ours = listing.owned_by(me)
    stranger = next((i for i in listing.named(resource.image_name) if not is_ours(i.labels, me)), None)
    return Observation(
        operation=operation,
        image=_best(ours),
        found_by_label=bool(ours),
        folder_id=folder_id,
        name_taken_by=stranger,
    )


def _best(images: list[CloudImage]) -> CloudImage | None:
    """Of several images of ours (only a cloud ignoring idempotency keys makes them), the live oldest."""
    live = [image for image in images if image.status is not ImageStatus.DELETING] or images
    return min(live, key=_age_order, default=None)


def _age_order(image: CloudImage) -> tuple[bool, float, str]:
    return (image.created_at is None, image.created_at.timestamp() if image.created_at else 0.0, image.id)


async def _folder(resource: Resource, cloud: DesktopImageClient) -> str | None:
    spec, status = resource.spec, resource.status
    if spec.folder_id or status.folder_id:
        return spec.folder_id or status.folder_id
    assert spec.source.desktop_id  # the schema requires a folder for Compute images
    try:
        return await cloud.get_desktop_folder(spec.source.desktop_id)
    except CloudError as error:
        if error.code is Code.NOT_FOUND:
            return None
        raise
