"""Doing what a decision says: at most one mutating cloud call, and the status and events that record it.

Every write to an existing image (Update, Delete) first reads the image again and goes out only if its
ownership labels still name whom the decision saw: an image taken over in between is never overwritten.
Cloud errors leave here as Failures that carry their reason, classified by the call that met them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from desktop_image_operator.api import OperationRecord
from desktop_image_operator.cloud.types import CloudError, CloudImage, Code, CopyRequest, DesktopImageClient
from desktop_image_operator.reconciler import naming
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.actions import (
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
from desktop_image_operator.reconciler.decide import name_conflict
from desktop_image_operator.reconciler.desired import DesiredImage
from desktop_image_operator.reconciler.failures import Failure, Stage, classify
from desktop_image_operator.reconciler.observation import Observation
from desktop_image_operator.reconciler.outcome import Outcome, Result
from desktop_image_operator.reconciler.ownership import Claim, Owner, claim
from desktop_image_operator.reconciler.working_state import Run

T = TypeVar("T")

# Answers that say the cloud refused a copy before doing anything: no image can come of it.
_REFUSED = frozenset(
    {
        Code.INVALID_ARGUMENT,
        Code.PERMISSION_DENIED,
        Code.UNAUTHENTICATED,
        Code.NOT_FOUND,
        Code.FAILED_PRECONDITION,
        Code.RESOURCE_EXHAUSTED,
    }
)


async def act(run: Run, cloud: DesktopImageClient, seen: Observation, decision: Decision) -> Outcome:
    """Perform the decision's action and record it; returns the run's outcome."""
    _settle_operation(run, seen)
    if decision.keep is not None:
        run.mirror(decision.keep)
    if decision.adopted is not None:
        run.events.normal("ImageAdopted", decision.adopted)
    return await _perform(run, cloud, seen, decision)


def _settle_operation(run: Run, seen: Observation) -> None:
    operation = seen.operation
    if operation is None:
        return
    run.learn(operation)
    if not operation.running and not operation.failed:
        run.status.operation = None  # it succeeded (or is lost): the image says the rest


async def _perform(run: Run, cloud: DesktopImageClient, seen: Observation, decision: Decision) -> Outcome:
    action = decision.action
    match action:
        case Poll(record, reason, message):
            return await run.progressing(record, message, reason)
        case RecordFailure(operation):
            return await run.operation_failed(operation)
        case Report(failure):
            return await run.fail(failure)
        case RetryLater(reason, due_in):
            return await run.retry_later(reason, due_in)
        case Wait(reason, message, after):
            return await run.waiting(reason, message, after)
        case MarkReady(image, observed_only, matches):
            return await run.ready(image, observed_only=observed_only, matches=matches)
        case Release(result, note):
            if note is not None:
                run.events.normal("ImageDeleted" if result is Result.DELETED else "ImageRetained", note)
            return Outcome(result, r.DELETING)
        case Copy(folder_id):
            return await _copy(run, cloud, seen, folder_id)
        case Update(image, mask, owner):
            return await _update(run, cloud, image, list(mask), owner)
        case Delete(image, owner):
            return await _delete(run, cloud, image, owner)
    raise AssertionError(f"no way to perform {action!r}")


# -- copy ---------------------------------------------------------------------------------------------


async def _copy(run: Run, cloud: DesktopImageClient, seen: Observation, folder_id: str) -> Outcome:
    resource, status = run.resource, run.status
    key = naming.copy_key(resource.uid, status.operation_id)  # unchanged by Sent: a re-send repeats it
    before = status.operation
    status.applied_labels = DesiredImage.of(resource, run.me).applied_keys(status.applied_labels)
    await run.sent("Copy")
    try:
        operation = await cloud.copy(_copy_request(run, folder_id), idempotency_key=key)
    except CloudError as error:
        if error.code is Code.ALREADY_EXISTS:
            return await _name_taken(run, cloud, seen, folder_id, before)
        if error.code in _REFUSED:
            status.operation = before  # nothing was copied: no unknown outcome to wait out
        raise classify(error, during="copy") from None
    message = f"Copying {resource.source_id} into image {operation.image_id} ({operation.id})."
    run.events.normal("CopyStarted", message)
    return await run.started("Copy", operation.id, message)


async def _name_taken(
    run: Run, cloud: DesktopImageClient, seen: Observation, folder_id: str, before: OperationRecord | None
) -> Outcome:
    """The name is taken: by an earlier copy of ours whose answer we lost, or by someone else."""
    images = await _calling("observe", cloud.find_images(folder_id, run.resource.image_name))
    ours = [image for image in images if _ours_by_name(run, seen, image, before)]
    if ours:
        image = await _calling("observe", cloud.get_image(ours[0].id))
        run.mirror(image)  # read by its ID: from now on it is this object's recorded image
        run.status.operation = None
        return await run.waiting(
            r.COPYING, f"Found this object's own copy {image.id} under its name; adopting it."
        )
    if images:
        run.status.operation = before  # a stranger's: nothing of ours is in flight
        raise name_conflict(seen, images[0], run.resource)
    # The holder is not listed yet (the cloud's index lags a just accepted copy, perhaps ours): not proof
    # of a stranger. The Sent record stays, and the retry follows the backoff of a transient reason.
    message = f"The name {run.resource.image_name!r} is taken by an image the cloud does not list yet."
    raise Failure(r.NAME_PENDING, message, cloud_error=False)


def _ours_by_name(run: Run, seen: Observation, image: CloudImage, before: OperationRecord | None) -> bool:
    """Labelled for this object; or, where copies may lose their labels (the cloud said so, or an earlier
    copy's answer is unknown), unlabelled and made after this object was."""
    if claim(image.labels, run.me)[0] in (Claim.OURS, Claim.PREVIOUS):
        return True
    unsure = seen.copies_without_labels or (before is not None and before.phase == "Sent")
    created = run.resource.created_at
    made = image.created_at
    return unsure and not image.labels and created is not None and made is not None and made >= created


def _copy_request(run: Run, folder_id: str) -> CopyRequest:
    desired = DesiredImage.of(run.resource, run.me)
    return CopyRequest(
        name=desired.name,
        desktop_id=run.resource.spec.source.desktop_id,
        compute_image_id=run.resource.spec.source.compute_image_id,
        folder_id=folder_id,
        description=desired.description,
        labels=desired.labels,
    )


# -- writes to an existing image ----------------------------------------------------------------------


async def _update(
    run: Run, cloud: DesktopImageClient, image: CloudImage, mask: list[str], owner: Owner | None
) -> Outcome:
    fresh = await _reread(cloud, image)
    if fresh is None or Owner.from_labels(fresh.labels) != owner:
        return await _look_again(run, image, r.UPDATING, gone=fresh is None)
    desired = DesiredImage.of(run.resource, run.me)
    mask = desired.mask(fresh) or mask
    key = naming.update_key(
        run.resource.uid, fresh.id, desired.change_digest(fresh, mask), run.status.operation_id
    )
    operation = await _calling(
        "update",
        cloud.update(
            fresh.id,
            mask=mask,
            name=desired.name,
            description=desired.description,
            labels=desired.labels_for(fresh),
            idempotency_key=key,
        ),
    )
    run.mirror(fresh)
    run.status.applied_labels = desired.applied_keys(run.status.applied_labels)
    message = f"Updating {', '.join(mask)} of cloud image {fresh.id} ({operation.id})."
    run.events.normal("UpdateStarted", message)
    return await run.started("Update", operation.id, message)


async def _delete(run: Run, cloud: DesktopImageClient, image: CloudImage, owner: Owner | None) -> Outcome:
    fresh = await _reread(cloud, image)
    if fresh is None:
        return Outcome(Result.DELETED, r.DELETING)  # already gone: never hang on it
    if Owner.from_labels(fresh.labels) != owner:
        return await _look_again(run, image, r.DELETING, gone=False)
    key = naming.delete_key(run.resource.uid, fresh.id, run.status.operation_id)
    try:
        operation = await cloud.delete(fresh.id, idempotency_key=key)
    except CloudError as error:
        if error.code is Code.NOT_FOUND:
            return Outcome(Result.DELETED, r.DELETING)
        if error.code is not Code.FAILED_PRECONDITION:
            raise classify(error, during="delete") from None
        return await run.waiting(r.DELETING, f"Cloud image {fresh.id} is busy; waiting to delete it.")
    return await run.started("Delete", operation.id, f"Deleting cloud image {fresh.id} ({operation.id}).")


async def _reread(cloud: DesktopImageClient, image: CloudImage) -> CloudImage | None:
    """The image as it is right before a write; None once it is gone."""
    try:
        return await cloud.get_image(image.id)
    except CloudError as error:
        if error.code is Code.NOT_FOUND:
            return None
        raise classify(error, during="observe") from None


async def _look_again(run: Run, image: CloudImage, reason: str, *, gone: bool) -> Outcome:
    """The image changed between the observation and the write: no write; the next run decides anew."""
    what = "is gone" if gone else "changed owner"
    return await run.waiting(reason, f"Cloud image {image.id} {what} since it was read; looking again.")


async def _calling(stage: Stage, call: Awaitable[T]) -> T:
    try:
        return await call
    except CloudError as error:
        raise classify(error, during=stage) from None
