"""Gathering an observation: reads only (Operation Get, image Get, Desktop Get, List, and the API server
for a claimed owner), in an order that stops as soon as the decision has what it needs.

Every image the decision may act on is read by its ID here, whatever found it: a listing says where to
look, never what the image is now.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from desktop_image_operator.api import OperationRecord
from desktop_image_operator.cloud.types import CloudError, CloudImage, Code, DesktopImageClient, ImageStatus
from desktop_image_operator.reconciler.listings import FolderListings, Listing
from desktop_image_operator.reconciler.observation import Found, Observation, OperationView
from desktop_image_operator.reconciler.ownership import Claim, Owner, Owners, claim
from desktop_image_operator.reconciler.resource import Resource
from desktop_image_operator.reconciler.timing import Timing


class Observer:
    """Reads what one decision needs. One per reconciler; the listings are shared by every object."""

    def __init__(self, timing: Timing, listings: FolderListings, owners: Owners) -> None:
        self._timing = timing
        self._listings = listings
        self._owners = owners

    async def observe(
        self, resource: Resource, me: Owner, cloud: DesktopImageClient, now: datetime
    ) -> Observation:
        operation = await _operation(resource.status.operation, cloud, self._timing, now)
        seen = Observation(
            me=me,
            operation=operation,
            unsure_until=self._unsure_until(resource.status.operation),
            copies_without_labels=not cloud.copies_carry_labels,
        )
        if operation is not None and operation.running:
            return seen  # nothing else can change until it ends
        recorded = _recorded_image(resource, operation)
        if recorded is not None:
            image_id, found = recorded
            image = await _get(cloud, image_id)
            if image is not None:
                seen = replace(seen, image=image, found=found, folder_id=image.folder_id)
                return await self._with_owner(seen, resource)
            if found is not Found.OPERATION:
                return replace(seen, image_gone=True)
        return await self._look_up(seen, resource, cloud)

    def _unsure_until(self, record: OperationRecord | None) -> datetime | None:
        """A copy Sent with no answer may have made an image List does not show before this instant."""
        if record is None or record.kind != "Copy" or record.phase != "Sent":
            return None
        return record.started_at + timedelta(seconds=self._timing.list_lag_seconds)

    async def _look_up(self, seen: Observation, resource: Resource, cloud: DesktopImageClient) -> Observation:
        """This object's image by its ownership labels, whatever its name (status does not know it yet)."""
        folder_id = await _folder(resource, cloud)
        if folder_id is None:
            return replace(seen, source_missing=True)
        if not resource.access.allows(folder_id):
            return replace(seen, folder_id=folder_id)  # not even listed: the decision refuses it
        listing = await self._listings.listing(cloud, folder_id, not_before=_fresh_from(resource, seen))
        candidate, found = _candidate(listing, resource, seen)
        image = await _get(cloud, candidate.id) if candidate is not None else None
        seen = replace(seen, folder_id=folder_id, name_holder=_name_holder(listing, resource, image))
        if image is None:
            return seen
        return await self._with_owner(replace(seen, image=image, found=found), resource)

    async def _with_owner(self, seen: Observation, resource: Resource) -> Observation:
        """Whether the other object of this cluster that the image's labels name still exists (asked of
        the API server each time: a cache could call a live owner gone)."""
        seen_as, owner = seen.claim
        if seen_as is not Claim.OTHER_OBJECT or owner is None or not owner.name_is_whole:
            return seen
        if resource.observe_only:
            return seen  # observing takes nothing over
        return replace(seen, owner_exists=await self._owners.exists(owner))


def _recorded_image(resource: Resource, operation: OperationView | None) -> tuple[str, Found] | None:
    """The image this object already knows by ID, and how it knows it."""
    if resource.spec.source.image_id:
        return resource.spec.source.image_id, Found.SPEC
    if operation is not None and operation.failed and operation.record.kind == "Copy":
        return None  # the cloud removes the image of a failed copy; the decision records the failure
    if resource.status.image_id:
        return resource.status.image_id, Found.STATUS
    if operation is not None and operation.image_id and operation.record.kind == "Copy":
        return operation.image_id, Found.OPERATION
    return None


def _fresh_from(resource: Resource, seen: Observation) -> datetime | None:
    """The earliest a listing may have begun to prove anything absent for this object: not before the
    object (an earlier object's image may still be in an older one), nor before a copy of unknown
    outcome could show. creationTimestamp has whole seconds; within its second, the read by ID that
    confirms whatever a listing shows keeps an image deleted since from being taken."""
    instants = [moment for moment in (resource.created_at, seen.unsure_until) if moment is not None]
    return max(instants, default=None)


def _candidate(listing: Listing, resource: Resource, seen: Observation) -> tuple[CloudImage | None, Found]:
    ours = [image for image in listing.owned_by(seen.me) if not _predecessors_leaving(image, seen.me)]
    if ours:
        return _best(ours), Found.LABELS
    if seen.copies_without_labels or seen.unsure_until is not None:
        return _best(_unlabelled_copies(listing, resource)), Found.NAME
    return None, Found.LABELS


def _predecessors_leaving(image: CloudImage, me: Owner) -> bool:
    """An earlier object's image being deleted (its deletion released that object): not ours to resume."""
    return image.status is ImageStatus.DELETING and claim(image.labels, me)[0] is Claim.PREVIOUS


def _unlabelled_copies(listing: Listing, resource: Resource) -> list[CloudImage]:
    """Where copies may lose their labels (the cloud refuses or drops them), crash safety rests on the
    name and the time: an unlabelled image of this object's name made after the object was, in the folder
    it copies into, is its own copy whose answer was lost."""
    created = resource.created_at
    return [
        image
        for image in listing.named(resource.image_name)
        if not image.labels
        and created is not None
        and image.created_at is not None
        and image.created_at >= created
    ]


def _name_holder(listing: Listing, resource: Resource, image: CloudImage | None) -> CloudImage | None:
    """An image with this object's name that is not the one found for it (it blocks a copy)."""
    return next((i for i in listing.named(resource.image_name) if image is None or i.id != image.id), None)


def _best(images: list[CloudImage]) -> CloudImage | None:
    """Of several images of ours (only a cloud ignoring idempotency keys makes them), the live oldest."""
    live = [image for image in images if image.status is not ImageStatus.DELETING] or images
    return min(live, key=_age_order, default=None)


def _age_order(image: CloudImage) -> tuple[bool, float, str]:
    return (image.created_at is None, image.created_at.timestamp() if image.created_at else 0.0, image.id)


async def _operation(
    record: OperationRecord | None, cloud: DesktopImageClient, timing: Timing, now: datetime
) -> OperationView | None:
    if record is None or record.phase != "Running" or not record.id:
        return None
    try:
        operation = await cloud.get_operation(record.id)
    except CloudError as error:
        if error.code is not Code.NOT_FOUND:
            raise
        age = (now - record.started_at).total_seconds()
        return OperationView(record, done=False, lost=age > timing.operation_visible_within_seconds)
    failure = operation.error if operation.done else None
    return OperationView(
        record, done=operation.done, error=failure, duration=operation.duration, image_id=operation.image_id
    )


async def _get(cloud: DesktopImageClient, image_id: str) -> CloudImage | None:
    try:
        return await cloud.get_image(image_id)
    except CloudError as error:
        if error.code is not Code.NOT_FOUND:
            raise
        return None


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
