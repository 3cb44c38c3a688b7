"""The decisions: one observation in, at most one mutating cloud call, one outcome out.

The order of questions (reconcile):
1. Our operation still runs: report it, poll again soon. It failed: record the failure, retry on its
   schedule (a new idempotency key). It succeeded: forget the record and look at the image.
2. Status names an image the cloud no longer has: ImageNotFound, never a silent re-copy.
3. Observe only: report what the image is, change nothing.
4. No image of ours (looked up by the ownership labels, whatever its name): copy, unless an image with our
   name belongs to someone else (NameConflict) or a failed copy's retry is not due yet. An image named by
   spec.source.imageId is adopted, unless another live object owns it (AdoptionConflict).
5. Our image is still being created: wait. Being deleted by someone else: ImageNotFound.
6. Name, description or labels differ: one Update with a field mask.
7. Otherwise Ready, from this fresh read of the image (an operation's answer is never the last word).

Deletion (release) waits out a running operation, then deletes an image of ours, never another's.
"""

from __future__ import annotations

from desktop_image_operator.api import OperationKind, OperationRecord
from desktop_image_operator.cloud.errors import CloudError, Code
from desktop_image_operator.cloud.types import (
    CloudImage,
    CloudOperation,
    CopyRequest,
    DesktopImageClient,
    ImageStatus,
)
from desktop_image_operator.reconciler import naming
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.desired import DesiredImage
from desktop_image_operator.reconciler.failures import Failure
from desktop_image_operator.reconciler.observation import Observation, OperationView
from desktop_image_operator.reconciler.outcome import Outcome, Result
from desktop_image_operator.reconciler.ownership import Claim, Owner, Owners, claim, is_ours
from desktop_image_operator.reconciler.resource import Resource
from desktop_image_operator.reconciler.run import Run


class Decide:
    """One decision on one observation, and the single action it takes."""

    def __init__(
        self,
        run: Run,
        cloud: DesktopImageClient,
        seen: Observation,
        owners: Owners,
    ) -> None:
        self.run = run
        self.cloud = cloud
        self.seen = seen
        self.owners = owners
        self.listings = run.listings  # one per process, shared with the observation
        self.status = run.status
        self.resource = run.resource

    async def reconcile(self) -> Outcome:
        operation = self.seen.operation
        self.run.learn(operation)
        if operation is not None:
            if operation.running:
                return await self.run.progressing(operation.record, _running_message(operation.record))
            if operation.failed:
                return await self.run.operation_failed(operation)
            self.status.operation = None  # it succeeded (or is lost): the image says the rest
        if self.seen.recorded_image_gone:
            raise _image_gone(self.resource)
        image = self.seen.image
        if self.resource.observe_only:
            return await self._observe_only(image)
        if image is None:
            return await self._copy()
        if self.resource.spec.source.image_id and self.status.image_id != image.id:
            await self._may_adopt(image)
            self.status.image_id = image.id
        return await self._converge(image)

    async def _observe_only(self, image: CloudImage | None) -> Outcome:
        """Managed by someone else: read and report, never change anything in the cloud."""
        if image is None:
            message = "No cloud image to observe: set spec.source.imageId, or switch to Manage to create one."
            raise Failure(r.IMAGE_NOT_FOUND, message, cloud_error=False)
        self.run.mirror(image)
        if image.status is ImageStatus.ACTIVE:
            return await self.run.ready(image, "The cloud image is ACTIVE (observed, not managed).")
        if image.status is ImageStatus.DELETING:
            raise Failure(r.IMAGE_NOT_FOUND, f"Cloud image {image.id} is being deleted.", cloud_error=False)
        return await self.run.waiting(r.COPYING, f"Cloud image {image.id} is still {image.status.value}.")

    async def _may_adopt(self, image: CloudImage) -> None:
        """spec.source.imageId names an image: take it, unless another live object of this cluster owns it."""
        seen_as, owner = claim(image.labels, self.run.me)
        note = ""
        if seen_as is Claim.OTHER_OBJECT and owner is not None:
            if not owner.name_is_whole or await self.owners.exists(owner):
                raise _adoption_conflict(image, owner)
            note = f" It was owned by {owner.ref}, which no longer exists."
        elif seen_as is Claim.OTHER_CLUSTER and owner is not None:
            note = f" It was owned by DesktopImage {owner.namespace}/{owner.name} of another cluster."
        self.run.events.normal(
            "ImageAdopted", f"Adopting cloud image {image.id} (spec.source.imageId).{note}"
        )

    async def _converge(self, image: CloudImage) -> Outcome:
        if self.seen.found_by_label and self.status.image_id != image.id:
            self.status.image_id = image.id
            self.run.events.normal(
                "ImageAdopted", f"Found cloud image {image.id} created for this object; adopting it."
            )
        if image.status is ImageStatus.DELETING:
            message = f"Cloud image {image.id} is being deleted outside the operator."
            raise Failure(r.IMAGE_NOT_FOUND, message, cloud_error=False)
        if image.status is not ImageStatus.ACTIVE:
            self.run.mirror(image)
            return await self.run.waiting(r.COPYING, f"Cloud image {image.id} is still {image.status.value}.")
        mask = DesiredImage.of(self.resource, self.run.me).mask(image)
        if mask:
            return await self._update(image, mask)
        return await self.run.ready(image)

    # -- copy -----------------------------------------------------------------------------------------

    async def _copy(self) -> Outcome:
        if self.seen.source_missing:
            source = self.resource.spec.source.desktop_id
            raise Failure(r.SOURCE_NOT_FOUND, f"Desktop {source} does not exist.")
        if self.seen.name_taken_by is not None:
            raise self._name_conflict(self.seen.name_taken_by)
        if (wait := await self._retry_not_due("Copy")) is not None:
            return wait
        assert self.seen.folder_id is not None
        self.run.stage = "copy"
        try:
            operation = await self.cloud.copy(
                _copy_request(self.resource, self.run.me, self.seen.folder_id),
                idempotency_key=naming.copy_key(self.resource.uid, self.status.operation_id),
            )
        except CloudError as error:
            if error.code is not Code.ALREADY_EXISTS:
                if error.retryable or error.code in (Code.UNKNOWN, Code.CANCELLED, Code.DEADLINE_EXCEEDED):
                    self.listings.forget(self.seen.folder_id)  # the copy may have happened all the same
                raise
            return await self._name_taken()
        return await self._copy_started(operation, self.seen.folder_id)

    async def _copy_started(self, operation: CloudOperation, folder_id: str) -> Outcome:
        status, source = self.status, self.resource.source_id
        if operation.image_id:
            self.listings.add(
                self.cloud, _copied_image(self.resource, self.run.me, folder_id, operation.image_id)
            )
        status.image_id = operation.image_id
        status.folder_id = folder_id
        status.image_status = "CREATING"
        message = f"Copying {source} into image {operation.image_id} ({operation.id})."
        self.run.events.normal("CopyStarted", message)
        return await self.run.started("Copy", operation.id, message)

    async def _name_taken(self) -> Outcome:
        """The name is taken: by an earlier copy of ours whose answer we lost, or by someone else."""
        assert self.seen.folder_id is not None
        self.run.stage = "observe"
        images = await self.cloud.find_images(self.seen.folder_id, self.resource.image_name)
        if any(is_ours(image.labels, self.run.me) for image in images):
            self.listings.forget(self.seen.folder_id)  # our copy, missing from the listing: list anew
            return await self.run.waiting(
                r.COPYING, "Found this object's own copy under its name; adopting it."
            )
        if images:
            raise self._name_conflict(images[0])
        # The holder is not listed yet (the cloud's index lags a just accepted copy): not proof of a stranger.
        return await self.run.waiting(
            r.COPYING,
            f"The name {self.resource.image_name!r} is taken by an image the cloud does not list yet.",
        )

    # -- update ---------------------------------------------------------------------------------------

    async def _update(self, image: CloudImage, mask: list[str]) -> Outcome:
        if (wait := await self._retry_not_due("Update")) is not None:
            return wait
        desired = DesiredImage.of(self.resource, self.run.me)
        self.run.stage = "update"
        key = naming.update_key(
            self.resource.uid, image.id, desired.change_digest(image, mask), self.status.operation_id
        )
        operation = await self.cloud.update(
            image.id,
            mask=mask,
            name=desired.name,
            description=desired.description,
            labels=desired.labels,
            idempotency_key=key,
        )
        self.run.mirror(image)
        message = f"Updating {', '.join(mask)} of cloud image {image.id} ({operation.id})."
        self.run.events.normal("UpdateStarted", message)
        return await self.run.started("Update", operation.id, message)

    # -- deletion -------------------------------------------------------------------------------------

    async def release(self) -> Outcome:
        operation = self.seen.operation
        self.run.learn(operation)
        if operation is not None:
            if operation.running:
                return await self.run.progressing(
                    operation.record, _waiting_to_delete(operation.record), r.DELETING
                )
            if operation.record.kind == "Delete":
                return await self._delete_ended(operation)
            self.status.operation = None  # a copy or update ended: now the image can go
        image = self.seen.image
        if image is None:
            return Outcome(Result.DELETED, r.DELETING)
        if not is_ours(image.labels, self.run.me):
            # Named by spec.source.imageId but never taken over (another object's, say): not ours to delete.
            message = f"Cloud image {image.id} is not deleted: this object never took it over."
            self.run.events.normal("ImageRetained", message)
            return Outcome(Result.RETAINED, r.DELETING)
        self.status.image_id = image.id  # found by label: read it by its ID from now on
        if image.status is not ImageStatus.ACTIVE:
            # Being created (adopted mid-copy) or being deleted (by us before a restart, or by someone).
            return await self.run.waiting(
                r.DELETING, f"Waiting for cloud image {image.id} ({image.status.value})."
            )
        return await self._delete(image)

    async def _delete_ended(self, operation: OperationView) -> Outcome:
        if operation.failed and not _gone(operation.error):
            return await self.run.operation_failed(operation)
        if operation.lost:
            self.status.operation = None
            return await self.run.waiting(r.DELETING, f"Lost track of {operation.record.id}; looking again.")
        self.run.events.normal("ImageDeleted", f"Cloud image {self.status.image_id} is deleted.")
        return Outcome(Result.DELETED, r.DELETING)

    async def _delete(self, image: CloudImage) -> Outcome:
        if (wait := await self._retry_not_due("Delete")) is not None:
            return wait
        key = naming.delete_key(self.resource.uid, image.id, self.status.operation_id)
        try:
            operation = await self.cloud.delete(image.id, idempotency_key=key)
        except CloudError as error:
            if error.code is Code.NOT_FOUND:
                return Outcome(Result.DELETED, r.DELETING)  # already gone: never hang on it
            if error.code is not Code.FAILED_PRECONDITION:
                raise
            return await self.run.waiting(
                r.DELETING, f"Cloud image {image.id} is busy; waiting to delete it."
            )
        self.status.image_id = image.id
        return await self.run.started(
            "Delete", operation.id, f"Deleting cloud image {image.id} ({operation.id})."
        )

    def _name_conflict(self, holder: CloudImage) -> Failure:
        name, folder = self.resource.image_name, self.seen.folder_id
        seen_as, owner = claim(holder.labels, self.run.me)
        lead = f"Folder {folder} already has an image named {name!r} ({holder.id})"
        adopt = f"re-create this object with spec.source.imageId: {holder.id} (spec.source cannot change)"
        if seen_as is Claim.OTHER_OBJECT and owner is not None:
            message = f"{lead}, owned by {owner.ref}. Choose another spec.name."
        elif seen_as is Claim.OTHER_CLUSTER and owner is not None:
            message = (
                f"{lead}, owned by DesktopImage {owner.namespace}/{owner.name} of another cluster; it is "
                f"left alone. To manage it from this cluster, {adopt}; otherwise choose another spec.name."
            )
        else:
            message = (
                f"{lead} that this object did not create; it is left alone. Choose another spec.name, or to "
                f"manage that image, {adopt}."
            )
        return Failure(r.NAME_CONFLICT, message, cloud_error=False)

    # -- retries --------------------------------------------------------------------------------------

    async def _retry_not_due(self, kind: OperationKind) -> Outcome | None:
        """While a failed operation of this kind waits for its retry (and the spec did not change): say so."""
        record = self.status.operation
        if record is None or record.phase != "Failed" or record.kind != kind:
            return None
        if self.status.observed_generation != self.resource.generation:
            return None  # something changed: try at once
        reason = _FAILED_REASON[kind]
        due_in = self.run.timing.retry_due_in(record, reason, self.run.now)
        if due_in <= 0:
            return None
        return await self.run.retry_later(reason, due_in)


_FAILED_REASON: dict[OperationKind, str] = {
    "Copy": r.COPY_FAILED,
    "Update": r.UPDATE_FAILED,
    "Delete": r.DELETE_FAILED,
}


def _gone(error: CloudError | None) -> bool:
    return error is not None and error.code is Code.NOT_FOUND


def _running_message(record: OperationRecord) -> str:
    return f"{record.kind} operation {record.id} is running."


def _waiting_to_delete(record: OperationRecord) -> str:
    if record.kind == "Delete":
        return f"Deleting the cloud image ({record.id})."
    return f"Waiting for the {record.kind.lower()} operation {record.id} to end before deleting the image."


def _image_gone(resource: Resource) -> Failure:
    if resource.spec.source.image_id:
        message = f"Cloud image {resource.spec.source.image_id} (spec.source.imageId) does not exist."
    else:
        message = f"Cloud image {resource.status.image_id} no longer exists; it is not recreated."
    return Failure(r.IMAGE_NOT_FOUND, message, cloud_error=False)


def _adoption_conflict(image: CloudImage, owner: Owner) -> Failure:
    message = (
        f"Cloud image {image.id} belongs to {owner.ref}, which still exists; it is not taken over. Delete "
        "that object with deletionPolicy Retain first, or adopt another image."
    )
    return Failure(r.ADOPTION_CONFLICT, message, cloud_error=False)


def _copied_image(resource: Resource, me: Owner, folder_id: str, image_id: str) -> CloudImage:
    """The image a copy just accepted will be, as far as a look-up by label needs to know."""
    desired = DesiredImage.of(resource, me)
    return CloudImage(
        id=image_id,
        folder_id=folder_id,
        name=desired.name,
        description=desired.description,
        labels=dict(desired.labels),
        status=ImageStatus.CREATING,
        storage_size=0,
        min_disk_size=0,
        created_at=None,
    )


def _copy_request(resource: Resource, me: Owner, folder_id: str) -> CopyRequest:
    desired = DesiredImage.of(resource, me)
    return CopyRequest(
        name=desired.name,
        desktop_id=resource.spec.source.desktop_id,
        compute_image_id=resource.spec.source.compute_image_id,
        folder_id=folder_id,
        description=desired.description,
        labels=desired.labels,
    )
