"""The decision: one observation in, one action out. Pure: no cloud, no Kubernetes, no clock but `now`.

The order of questions (reconcile):
1. Our operation still runs: poll it. It failed: record the failure (retried on its schedule). It
   succeeded or is lost: the image says the rest.
2. The image, or the folder a copy would go to, is outside the folders granted to the namespace:
   FolderNotGranted, and nothing of that folder reaches status.
3. spec.source.imageId, or an image confirmed earlier, is gone: ImageNotFound, never a silent re-copy.
4. Observe only: report what the image is and whether it matches the spec; change nothing.
5. An image was found: whose it is decides. This object's: converge it. Unowned and named by the user (or
   this object's copy stored without labels), a predecessor's of the same name, or a gone object's:
   take it over. A live object's of this cluster, or another cluster's without the opt-in annotation:
   AdoptionConflict, and the image is never written.
6. No image: copy, unless the name belongs to another image (NameConflict) or a failed copy's retry is
   not due yet.
7. Name, description or labels differ: one Update with a field mask. Otherwise Ready.

Deletion (release) waits out a running operation and a copy of unknown outcome, then deletes an image of
this object's, never another's, and never one in a folder no longer granted.
"""

from __future__ import annotations

from datetime import datetime

from desktop_image_operator.api import OperationKind
from desktop_image_operator.cloud.types import CloudImage, Code, ImageStatus
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.actions import (
    RUNNING_REASON,
    Copy,
    Decision,
    Delete,
    MarkReady,
    Poll,
    RecordFailure,
    Release,
    Report,
    RetryLater,
    Update,
    Wait,
)
from desktop_image_operator.reconciler.annotations import ADOPT_FROM_OTHER_CLUSTER
from desktop_image_operator.reconciler.desired import DesiredImage, observed_differences
from desktop_image_operator.reconciler.failures import Failure
from desktop_image_operator.reconciler.observation import Found, Observation, OperationView
from desktop_image_operator.reconciler.outcome import Result
from desktop_image_operator.reconciler.ownership import Claim, Owner
from desktop_image_operator.reconciler.resource import Resource
from desktop_image_operator.reconciler.timing import Timing


def decide(seen: Observation, resource: Resource, now: datetime, timing: Timing) -> Decision:
    """What to do next for a live object."""
    operation = seen.operation
    if operation is not None:
        if operation.running:
            return Decision(
                Poll(operation.record, RUNNING_REASON[operation.record.kind], _running(operation))
            )
        if operation.failed:
            return Decision(RecordFailure(operation))
    if (outside := _outside_grant(seen, resource)) is not None:
        return Decision(Report(outside))
    if seen.image_gone:
        return Decision(Report(_image_gone(resource)))
    if resource.observe_only:
        return _observe_only(seen, resource)
    if seen.image is None:
        return Decision(_copy(seen, resource, now, timing))
    return _manage(seen, seen.image, resource, now, timing)


def _outside_grant(seen: Observation, resource: Resource) -> Failure | None:
    """The image (or the folder a copy would go to) lies outside the folders granted to the namespace."""
    folder = seen.image.folder_id if seen.image is not None else seen.folder_id
    if folder is None or resource.access.allows(folder):
        return None
    return resource.access.folder_refusal(folder)


# -- observe only -------------------------------------------------------------------------------------


def _observe_only(seen: Observation, resource: Resource) -> Decision:
    image = seen.image
    if image is None:
        message = "No cloud image to observe: set spec.source.imageId, or switch to Manage to create one."
        return Decision(Report(Failure(r.IMAGE_NOT_FOUND, message, cloud_error=False)))
    if image.status is ImageStatus.ACTIVE:
        matches = not observed_differences(resource, image)
        return Decision(MarkReady(image, observed_only=True, matches=matches), keep=image)
    return Decision(_not_active(image, outside=True), keep=image)


# -- manage -------------------------------------------------------------------------------------------


def _manage(
    seen: Observation, image: CloudImage, resource: Resource, now: datetime, timing: Timing
) -> Decision:
    seen_as, owner = seen.claim
    if seen_as is Claim.OURS or _ours_unlabelled(seen, resource):
        return _converge(seen, image, resource, now, timing, owner)
    refusal = _refuse_take_over(seen, image, resource, seen_as, owner)
    if refusal is not None:
        return Decision(Report(refusal))
    return _take_over(seen, image, resource, now, timing, owner)


def _ours_unlabelled(seen: Observation, resource: Resource) -> bool:
    """An image without ownership labels that this object's own copy made (the cloud dropped them, or a
    take-over's Update has not landed yet): recorded as ours, never named by the user."""
    if seen.claim[0] is not Claim.UNOWNED or resource.spec.source.image_id:
        return False
    return seen.found in (Found.STATUS, Found.OPERATION, Found.NAME)


def _refuse_take_over(
    seen: Observation, image: CloudImage, resource: Resource, seen_as: Claim, owner: Owner | None
) -> Failure | None:
    """Why an image that is not this object's may not be taken; None when it may."""
    if seen_as is Claim.OTHER_OBJECT and owner is not None and seen.owner_exists is not False:
        return _adoption_conflict(image, owner)
    if seen_as is Claim.OTHER_CLUSTER and owner is not None and not resource.adopts_from_other_cluster:
        return _other_cluster(image, owner)
    return None


def _take_over(
    seen: Observation,
    image: CloudImage,
    resource: Resource,
    now: datetime,
    timing: Timing,
    owner: Owner | None,
) -> Decision:
    """Stamp this object's ownership labels (and the spec's fields) on the image, once it is ACTIVE."""
    if image.status is not ImageStatus.ACTIVE:
        return Decision(_not_active(image, outside=seen.found is Found.SPEC), keep=image)
    mask = tuple(DesiredImage.of(resource, seen.me).mask(image)) or ("labels",)
    return _update(Update(image, mask, owner), resource, now, timing, _take_over_note(seen, image, owner))


def _converge(
    seen: Observation,
    image: CloudImage,
    resource: Resource,
    now: datetime,
    timing: Timing,
    owner: Owner | None,
) -> Decision:
    adopted = None
    if seen.found in (Found.LABELS, Found.NAME):
        adopted = (
            f"Found cloud image {image.id} created for this object (by {seen.found.value}); adopting it."
        )
    if image.status is not ImageStatus.ACTIVE:
        return Decision(_not_active(image, outside=False), keep=image, adopted=adopted)
    mask = tuple(DesiredImage.of(resource, seen.me).mask(image))
    if not mask:
        return Decision(MarkReady(image), keep=image, adopted=adopted)
    return _update(Update(image, mask, owner), resource, now, timing, adopted)


def _update(update: Update, resource: Resource, now: datetime, timing: Timing, note: str | None) -> Decision:
    """The Update, unless a failed one waits for its retry (announced only when it goes out)."""
    if (wait := _retry_not_due(resource, "Update", now, timing)) is not None:
        return Decision(wait, keep=update.image)
    return Decision(update, keep=update.image, adopted=note)


def _not_active(image: CloudImage, *, outside: bool) -> Wait | Report:
    if image.status is ImageStatus.DELETING:
        where = "" if outside else " outside the operator"
        message = f"Cloud image {image.id} is being deleted{where}."
        return Report(Failure(r.IMAGE_NOT_FOUND, message, cloud_error=False))
    if image.status is ImageStatus.STATUS_UNSPECIFIED:
        message = f"Cloud image {image.id} reports no status (STATUS_UNSPECIFIED); looking again."
        return Report(Failure(r.IMAGE_STATUS_UNKNOWN, message, cloud_error=False))
    return Wait(r.COPYING, f"Cloud image {image.id} is still {image.status.value}.")


# -- copy ---------------------------------------------------------------------------------------------


def _copy(
    seen: Observation, resource: Resource, now: datetime, timing: Timing
) -> Copy | Report | Wait | RetryLater:
    if seen.source_missing:
        return Report(
            Failure(r.SOURCE_NOT_FOUND, f"Desktop {resource.spec.source.desktop_id} does not exist.")
        )
    if seen.name_holder is not None:
        return _name_held(seen, seen.name_holder, resource)
    if (wait := _retry_not_due(resource, "Copy", now, timing)) is not None:
        return wait
    assert seen.folder_id is not None, "the look-up that found nothing knows the folder"
    return Copy(seen.folder_id)


def _name_held(seen: Observation, holder: CloudImage, resource: Resource) -> Report:
    seen_as, _ = seen.claim_of(holder)
    if seen_as in (Claim.OURS, Claim.PREVIOUS):
        # This object's or an earlier one's, gone or going since it was listed: the name frees up.
        message = (
            f"The name {resource.image_name!r} is held by cloud image {holder.id}, which is going; waiting."
        )
        return Report(Failure(r.NAME_PENDING, message, cloud_error=False))
    return Report(name_conflict(seen, holder, resource))


# -- retries ------------------------------------------------------------------------------------------


def _retry_not_due(
    resource: Resource, kind: OperationKind, now: datetime, timing: Timing
) -> RetryLater | None:
    """While a failed operation of this kind waits for its retry (and the spec did not change): say so."""
    status = resource.status
    record = status.operation
    if record is None or record.phase != "Failed" or record.kind != kind:
        return None
    if status.observed_generation != resource.generation:
        return None  # something changed: try at once
    reason = FAILED_REASON[kind]
    due_in = timing.retry_due_in(record, reason, now)
    return RetryLater(reason, due_in) if due_in > 0 else None


FAILED_REASON: dict[OperationKind, str] = {
    "Copy": r.COPY_FAILED,
    "Update": r.UPDATE_FAILED,
    "Delete": r.DELETE_FAILED,
}


# -- deletion -----------------------------------------------------------------------------------------


def decide_release(seen: Observation, resource: Resource, now: datetime) -> Decision:
    """What to do next for an object being deleted under deletionPolicy Delete."""
    operation = seen.operation
    if operation is not None:
        record = operation.record
        if operation.running:
            return Decision(Poll(record, r.DELETING, _waiting_to_delete(record.kind, record.id)))
        if record.kind == "Delete":
            return _delete_ended(seen, resource)
    image = seen.image
    if image is not None and not resource.access.allows(image.folder_id):
        # Granted once, no longer: the finalizer lets go, and the image stays where no grant reaches.
        refusal = resource.access.folder_refusal(image.folder_id)
        note = f"Cloud image {image.id} is not deleted: {refusal.message}"
        return Decision(Release(Result.RETAINED, note))
    if image is None:
        if seen.unsure_until is not None and now < seen.unsure_until:
            left = (seen.unsure_until - now).total_seconds()
            message = "A copy's outcome is unknown; waiting until the cloud's listing must show its image."
            return Decision(Wait(r.DELETING, message, after=left))
        return Decision(Release(Result.DELETED))
    seen_as, owner = seen.claim
    if seen_as not in (Claim.OURS, Claim.PREVIOUS) and not _ours_unlabelled(seen, resource):
        # Named by spec.source.imageId but never taken over (another object's, say): not ours to delete.
        note = f"Cloud image {image.id} is not deleted: this object never took it over."
        return Decision(Release(Result.RETAINED, note))
    if image.status is not ImageStatus.ACTIVE:
        # Being created (adopted mid-copy) or being deleted (by us before a restart, or by someone).
        message = f"Waiting for cloud image {image.id} ({image.status.value})."
        return Decision(Wait(r.DELETING, message), keep=image)
    return Decision(Delete(image, owner), keep=image)


def _delete_ended(seen: Observation, resource: Resource) -> Decision:
    operation = seen.operation
    assert operation is not None
    if operation.failed and not (operation.error is not None and operation.error.code is Code.NOT_FOUND):
        return Decision(RecordFailure(operation))
    if operation.lost:
        message = f"Lost track of {operation.record.id}; looking again."
        return Decision(Wait(r.DELETING, message))
    image_id = operation.image_id or resource.status.image_id
    return Decision(Release(Result.DELETED, f"Cloud image {image_id} is deleted."))


# -- messages -----------------------------------------------------------------------------------------


def _running(operation: OperationView) -> str:
    return f"{operation.record.kind} operation {operation.record.id} is running."


def _waiting_to_delete(kind: OperationKind, operation_id: str | None) -> str:
    if kind == "Delete":
        return f"Deleting the cloud image ({operation_id})."
    return f"Waiting for the {kind.lower()} operation {operation_id} to end before deleting the image."


def _image_gone(resource: Resource) -> Failure:
    if resource.spec.source.image_id:
        message = f"Cloud image {resource.spec.source.image_id} (spec.source.imageId) does not exist."
    else:
        message = f"Cloud image {resource.status.image_id} no longer exists; it is not recreated."
    return Failure(r.IMAGE_NOT_FOUND, message, cloud_error=False)


def _take_over_note(seen: Observation, image: CloudImage, owner: Owner | None) -> str:
    seen_as = seen.claim[0]
    lead = f"Taking over cloud image {image.id} (found by {seen.found.value if seen.found else 'its ID'})."
    if seen_as is Claim.OTHER_OBJECT and owner is not None:
        return f"{lead} It was owned by {owner.ref}, which no longer exists."
    if seen_as is Claim.OTHER_CLUSTER and owner is not None:
        return (
            f"{lead} It was owned by DesktopImage {owner.namespace}/{owner.object_name} of another cluster "
            f"({ADOPT_FROM_OTHER_CLUSTER} is set)."
        )
    if seen_as is Claim.PREVIOUS and owner is not None:
        return f"{lead} It was owned by an earlier object of this name (uid {owner.uid})."
    return lead


def _adoption_conflict(image: CloudImage, owner: Owner) -> Failure:
    message = (
        f"Cloud image {image.id} belongs to {owner.ref}, which still exists; it is not taken over. Delete "
        "that object with deletionPolicy Retain first, or adopt another image."
    )
    return Failure(r.ADOPTION_CONFLICT, message, cloud_error=False)


def _other_cluster(image: CloudImage, owner: Owner) -> Failure:
    message = (
        f"Cloud image {image.id} belongs to DesktopImage {owner.namespace}/{owner.object_name} of another "
        "cluster; "
        f"it is not taken over. If that cluster no longer manages it, annotate this object with "
        f'{ADOPT_FROM_OTHER_CLUSTER}: "true" to take it over.'
    )
    return Failure(r.ADOPTION_CONFLICT, message, cloud_error=False)


def name_conflict(seen: Observation, holder: CloudImage, resource: Resource) -> Failure:
    name, folder = resource.image_name, seen.folder_id or holder.folder_id
    seen_as, owner = seen.claim_of(holder)
    lead = f"Folder {folder} already has an image named {name!r} ({holder.id})"
    adopt = f"re-create this object with spec.source.imageId: {holder.id} (spec.source cannot change)"
    adopt_foreign = f'{adopt} and the annotation {ADOPT_FROM_OTHER_CLUSTER}: "true"'
    if seen_as is Claim.OTHER_OBJECT and owner is not None:
        message = f"{lead}, owned by {owner.ref}. Choose another spec.name."
    elif seen_as is Claim.OTHER_CLUSTER and owner is not None:
        message = (
            f"{lead}, owned by DesktopImage {owner.namespace}/{owner.object_name} of another cluster; it is "
            f"left alone. To manage it from this cluster, {adopt_foreign}; otherwise choose another "
            "spec.name."
        )
    else:
        message = (
            f"{lead} that this object did not create; it is left alone. Choose another spec.name, or to "
            f"manage that image, {adopt}."
        )
    return Failure(r.NAME_CONFLICT, message, cloud_error=False)
