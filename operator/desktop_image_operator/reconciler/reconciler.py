"""The reconciler: observe the cloud, decide, take at most one action, say when to look again.

It is level-triggered: every run starts from the object as it is now and the cloud's answers, never from
which event woke it, so a restart, a replayed event or `kubectl replace` changes nothing. No run waits for
a cloud operation: a running one is recorded in `status.operation` and polled by later runs, so a spec
change, the pause annotation or a deletion takes effect while a long copy runs.

The decisions, in order (reconcile):
1. Our operation still runs: report it, poll again soon. It failed: record the failure, retry on its
   schedule (a new idempotency key). It succeeded: forget the record and look at the image.
2. Status names an image the cloud no longer has: ImageNotFound, never a silent re-copy.
3. No image of ours (looked up by the ownership label, whatever its name): copy, unless an image with our
   name belongs to someone else (NameConflict) or a failed copy's retry is not due yet.
4. Our image is still being created: wait. Being deleted by someone else: ImageNotFound.
5. Name, description or labels differ: one Update with a field mask.
6. Otherwise Ready, from this fresh read of the image (an operation's answer is never the last word).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from desktop_image_operator.api import (
    CONDITION_READY,
    CONDITION_SYNCED,
    DesktopImageStatus,
    OperationKind,
    OperationRecord,
)
from desktop_image_operator.cloud.errors import CloudError, Code
from desktop_image_operator.cloud.types import (
    CloudImage,
    CloudOperation,
    CopyRequest,
    DesktopImageClient,
    ImageStatus,
)
from desktop_image_operator.reconciler import conditions as c
from desktop_image_operator.reconciler import naming
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.desired import DesiredImage
from desktop_image_operator.reconciler.durations import OperationDurations
from desktop_image_operator.reconciler.failures import Failure, Stage, classify, operation_failed
from desktop_image_operator.reconciler.listings import FolderListings
from desktop_image_operator.reconciler.observation import Observation, OperationView, observe
from desktop_image_operator.reconciler.ownership import AssumeOwnersExist, Claim, Owner, Owners, claim
from desktop_image_operator.reconciler.resource import Resource
from desktop_image_operator.reconciler.timing import Timing

log = logging.getLogger(__name__)

_REASON_OF_RUNNING: dict[OperationKind, str] = {"Copy": r.COPYING, "Update": r.UPDATING, "Delete": r.DELETING}
_SYNC_OK = "The last reconcile reached the cloud without error."


class StatusWriter(Protocol):
    async def __call__(self, patch: dict[str, Any]) -> None:
        """Merge-patch the object's status subresource."""


class Events(Protocol):
    def normal(self, reason: str, message: str) -> None: ...

    def warning(self, reason: str, message: str) -> None: ...


class Result(StrEnum):
    READY = "ready"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    TRANSIENT_ERROR = "transient_error"
    TERMINAL_ERROR = "terminal_error"
    DELETED = "deleted"
    RETAINED = "retained"


@dataclass(frozen=True)
class Outcome:
    result: Result
    reason: str
    # Seconds until the next look when the reconciler knows (a poll, a retry that is due); None lets the
    # controller choose (resync, or backoff by its count of consecutive failures).
    requeue_after: float | None = None
    # True the first time this object's image is seen Ready (for the time-to-ready metric).
    first_ready: bool = False


class Reconciler:
    def __init__(
        self,
        *,
        timing: Timing | None = None,
        cluster_id: str = "",
        owners: Owners | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`cluster_id` identifies this cluster in the ownership labels; `owners` tells whether another
        object that owns an image still exists (by default it is assumed to)."""
        self.timing = timing or Timing()
        self.durations = OperationDurations()
        self.listings = FolderListings(max_age_seconds=self.timing.folder_listing_max_age_seconds)
        self._cluster_id = cluster_id
        self._owners = owners or AssumeOwnersExist()
        self._now = clock

    def _run(self, resource: Resource, write: StatusWriter, events: Events) -> _Run:
        me = Owner.of(resource.uid, self._cluster_id, resource.namespace, resource.name)
        return _Run(resource, me, write, events, self._now(), self.timing, self.durations, self.listings)

    async def report(
        self, resource: Resource, failure: Failure, write: StatusWriter, events: Events
    ) -> Outcome:
        """Record a failure found before any cloud call (no usable credentials, say)."""
        return await self._run(resource, write, events).fail(failure)

    # -- the live object ------------------------------------------------------------------------------

    async def reconcile(
        self, resource: Resource, cloud: DesktopImageClient, write: StatusWriter, events: Events
    ) -> Outcome:
        run = self._run(resource, write, events)
        if resource.paused:
            return await run.paused("Paused by the clouddesktop.yc.io/paused annotation.")
        try:
            seen = await observe(resource, run.me, cloud, self.timing, run.now, self.listings)
            return await _Decide(run, cloud, seen, self._owners, self.listings).reconcile()
        except CloudError as error:
            return await run.fail(classify(error, during=run.stage))
        except Failure as failure:
            return await run.fail(failure)

    # -- deletion -------------------------------------------------------------------------------------

    async def finalize(
        self, resource: Resource, cloud: DesktopImageClient | None, write: StatusWriter, events: Events
    ) -> Outcome:
        """Release the object: delete its cloud image (policy Delete) or leave it (Retain).

        Returns DELETED or RETAINED when the finalizer may go; otherwise an outcome to look again after.
        """
        run = self._run(resource, write, events)
        if resource.retains_image:
            if run.status.image_id:
                why = "observed only" if resource.observe_only else "deletionPolicy Retain"
                events.normal("ImageRetained", f"Cloud image {run.status.image_id} is kept ({why}).")
            return Outcome(Result.RETAINED, r.DELETING)
        if resource.paused:
            return await run.paused("Deletion waits: paused by the clouddesktop.yc.io/paused annotation.")
        assert cloud is not None, "only a Retain policy needs no cloud client"
        run.stage = "delete"
        try:
            seen = await observe(resource, run.me, cloud, self.timing, run.now, self.listings)
            return await _Decide(run, cloud, seen, self._owners, self.listings).release()
        except CloudError as error:
            return await run.fail(classify(error, during="delete"))
        except Failure as failure:
            return await run.fail(failure)


class _Decide:
    """One decision on one observation, and the single action it takes."""

    def __init__(
        self,
        run: _Run,
        cloud: DesktopImageClient,
        seen: Observation,
        owners: Owners,
        listings: FolderListings,
    ) -> None:
        self.run = run
        self.cloud = cloud
        self.seen = seen
        self.owners = owners
        self.listings = listings
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
        if any(claim(image.labels, self.run.me)[0] in (Claim.OURS, Claim.PREVIOUS) for image in images):
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
        if claim(image.labels, self.run.me)[0] not in (Claim.OURS, Claim.PREVIOUS):
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


class _Run:
    """One reconcile's working state: the status being built, and writes only when something changed."""

    def __init__(
        self,
        resource: Resource,
        me: Owner,
        write: StatusWriter,
        events: Events,
        now: datetime,
        timing: Timing,
        durations: OperationDurations,
        listings: FolderListings,
    ) -> None:
        self.resource = resource
        self.me = me
        self.durations = durations
        self.listings = listings
        self.status: DesktopImageStatus = resource.status.model_copy(deep=True)
        self.events = events
        self.now = now
        self.timing = timing
        self.stage: Stage = "observe"
        self._write = write
        self._written = _dump(resource.status)
        before = c.find(self.status.conditions, CONDITION_READY)
        self.ready_before = before if before is None else (before.status, before.reason)

    def learn(self, operation: OperationView | None) -> None:
        if operation is not None and operation.duration is not None:
            self.durations.observe(operation.record.kind, operation.duration)

    def poll_after(self, record: OperationRecord) -> float:
        return self.timing.poll_after(record, self.now, self.durations.expected(record.kind))

    # -- conditions -----------------------------------------------------------------------------------

    def _set(self, condition_type: str, verdict: c.Verdict) -> None:
        self.status.conditions = c.apply(
            self.status.conditions, condition_type, verdict, self.resource.generation, self.now
        )

    def _ready_reason(self) -> str | None:
        return self.ready_before[1] if self.ready_before else None

    def mirror(self, image: CloudImage) -> None:
        self.status.image_id = image.id
        self.status.image_status = image.status.value
        self.status.storage_size = image.storage_size
        self.status.min_disk_size = image.min_disk_size
        self.status.folder_id = image.folder_id
        self.status.created_at = image.created_at

    # -- outcomes -------------------------------------------------------------------------------------

    async def ready(self, image: CloudImage, message: str | None = None) -> Outcome:
        first = self.resource.status.image_status != ImageStatus.ACTIVE.value
        self.mirror(image)
        self.status.operation = None
        self.status.observed_generation = self.resource.generation
        self._set(CONDITION_READY, c.ready(message=message) if message else c.ready())
        self._set(CONDITION_SYNCED, c.ready(r.RECONCILE_SUCCESS, _SYNC_OK))
        was_ready = self.ready_before is not None and self.ready_before[0] == "True"
        if not was_ready:
            event = "ImageUpdated" if self._ready_reason() == r.UPDATING else "ImageReady"
            self.events.normal(event, f"Cloud image {image.id} is ACTIVE and matches the spec.")
        await self.flush()
        return Outcome(Result.READY, r.AVAILABLE, first_ready=first and not was_ready)

    async def started(self, kind: OperationKind, operation_id: str, message: str) -> Outcome:
        """Record an operation the cloud just accepted: a restart follows it instead of starting another."""
        previous = self.status.operation
        repeat = previous is not None and previous.kind == kind and previous.phase == "Failed"
        same_change = self.status.observed_generation == self.resource.generation
        record = OperationRecord(
            kind=kind,
            id=operation_id,
            phase="Running",
            started_at=self.now,
            attempts=previous.attempts + 1 if previous is not None and repeat and same_change else 1,
        )
        self.status.operation = record
        self.status.operation_id = operation_id
        self.status.observed_generation = self.resource.generation
        self._set(CONDITION_READY, c.not_ready(_REASON_OF_RUNNING[kind], message))
        self._set(CONDITION_SYNCED, c.ready(r.RECONCILE_SUCCESS, _SYNC_OK))
        await self.flush()
        return Outcome(Result.PROGRESSING, _REASON_OF_RUNNING[kind], self.poll_after(record))

    async def progressing(self, record: OperationRecord, message: str, reason: str | None = None) -> Outcome:
        """Our operation still runs: say so (once: polls write nothing new), look again soon."""
        reason = reason or _REASON_OF_RUNNING[record.kind]
        self.status.observed_generation = self.resource.generation
        if self._ready_reason() != reason:  # the message written when it started says more
            self._set(CONDITION_READY, c.not_ready(reason, message))
        self._set(CONDITION_SYNCED, c.ready(r.RECONCILE_SUCCESS, _SYNC_OK))
        await self.flush()
        return Outcome(Result.PROGRESSING, reason, self.poll_after(record))

    async def waiting(self, reason: str, message: str) -> Outcome:
        """Waiting on the cloud without an operation of ours (an image still being created, say)."""
        self.status.observed_generation = self.resource.generation
        self._set(CONDITION_READY, c.not_ready(reason, message))
        self._set(CONDITION_SYNCED, c.ready(r.RECONCILE_SUCCESS, _SYNC_OK))
        await self.flush()
        return Outcome(Result.PROGRESSING, reason, self.timing.poll_base_seconds)

    async def retry_later(self, reason: str, due_in: float) -> Outcome:
        """A failed operation waits for its retry: the conditions already say why; write nothing new."""
        result = Result.TERMINAL_ERROR if r.kind_of(reason) is r.Kind.TERMINAL else Result.TRANSIENT_ERROR
        return Outcome(result, reason, due_in)

    async def paused(self, message: str) -> Outcome:
        self._set(CONDITION_SYNCED, c.not_ready(r.RECONCILE_PAUSED, message))
        await self.flush()
        return Outcome(Result.PAUSED, r.RECONCILE_PAUSED)

    async def operation_failed(self, operation: OperationView) -> Outcome:
        record = operation.record
        assert operation.error is not None
        self.status.operation = record.model_copy(update={"phase": "Failed", "finished_at": self.now})
        if record.kind == "Copy":
            # The cloud removes the image of a failed copy; the next copy makes a new one.
            self.status.image_id = None
            self.status.image_status = None
            self.listings.forget(self.status.folder_id or "")
        failure = operation_failed(record.kind, operation.error)
        outcome = await self.fail(failure)
        return Outcome(
            outcome.result, outcome.reason, self.timing.retry_after(failure.reason, record.attempts)
        )

    async def fail(self, failure: Failure) -> Outcome:
        log.info("%s: %s", self.resource.ref, failure)
        self.status.observed_generation = self.resource.generation
        if failure.cloud_error:
            self._set(CONDITION_SYNCED, c.not_ready(failure.reason, failure.message))
        else:
            self._set(CONDITION_SYNCED, c.ready(r.RECONCILE_SUCCESS, _SYNC_OK))
        # A passing outage while our operation runs leaves Ready saying what the image is doing: the
        # operation goes on, and the next run polls it again.
        running = self.status.operation is not None and self.status.operation.phase == "Running"
        if not (running and failure.kind is r.Kind.TRANSIENT):
            if failure.reason != self._ready_reason():
                self.events.warning(failure.reason, failure.message)
            self._set(CONDITION_READY, c.not_ready(failure.reason, failure.message))
        await self.flush()
        result = Result.TERMINAL_ERROR if failure.terminal else Result.TRANSIENT_ERROR
        return Outcome(result, failure.reason)

    async def flush(self) -> None:
        """Write the status if it differs from what the object has (one merge patch)."""
        current = _dump(self.status)
        if current == self._written:
            return
        await self._write({"status": _merge_patch(self._written, current)})
        self._written = current


def _merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch from old to new: changed fields, and null for each field that went away."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old or old[key] != value:
            patch[key] = _merge_patch(old[key], value) if _both_dicts(old.get(key), value) else value
    for gone in old.keys() - new.keys():
        patch[gone] = None
    return patch


def _both_dicts(a: object, b: object) -> bool:
    return isinstance(a, dict) and isinstance(b, dict)


def _dump(status: DesktopImageStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")
