"""The reconciler: decides what a DesktopImage needs and has the cloud client do it.

It is level-triggered: every run starts from the object's status and the cloud's answers, never from
which event woke it, so a restart, a replayed event or `kubectl replace` changes nothing. The order of
questions is what makes it crash-safe:

1. Is an operation of ours still running (status says Copying/Updating)? Follow it to its end.
2. Do we know our image (status.imageId)? Read it. Gone: ImageNotFound, never a silent re-copy.
3. Else, is there an image carrying our UID label under our name in the folder (a copy accepted just
   before a crash)? Adopt it. One with our name that is not ours is a NameConflict.
4. Else copy, with an idempotency key derived from the UID, and record the operation at once.
5. Then converge name, description and labels with one Update and a field mask.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from desktop_image_operator.api import CONDITION_READY, CONDITION_SYNCED, DesktopImageStatus
from desktop_image_operator.cloud.backoff import Backoff
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
from desktop_image_operator.reconciler.desired import DesiredImage
from desktop_image_operator.reconciler.failures import Failure, classify, describe
from desktop_image_operator.reconciler.resource import Resource

log = logging.getLogger(__name__)

# Ready reasons meaning "an operation of ours may still be running".
_IN_FLIGHT = frozenset({c.COPYING, c.UPDATING, c.DELETING})


class StatusWriter(Protocol):
    async def __call__(self, patch: dict[str, Any]) -> None:
        """Merge-patch the object's status subresource."""


class Events(Protocol):
    def normal(self, reason: str, message: str) -> None: ...

    def warning(self, reason: str, message: str) -> None: ...


class Result(StrEnum):
    READY = "ready"
    PAUSED = "paused"
    TRANSIENT_ERROR = "transient_error"
    TERMINAL_ERROR = "terminal_error"
    DELETED = "deleted"
    RETAINED = "retained"


@dataclass(frozen=True)
class Outcome:
    result: Result
    reason: str
    # True when the status went from not Ready to Ready in this run (for the time-to-ready metric).
    became_ready: bool = False


@dataclass
class ImageWait:
    """How long to wait for an image that is CREATING without an operation we know of (an adopted one)."""

    backoff: Backoff
    timeout: float = 3600.0


class Reconciler:
    def __init__(
        self,
        *,
        image_wait: ImageWait | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._image_wait = image_wait or ImageWait(Backoff(base=2.0, cap=30.0))
        self._now = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    # -- the live object ------------------------------------------------------------------------------

    async def report(
        self, resource: Resource, failure: Failure, write: StatusWriter, events: Events
    ) -> Outcome:
        """Record a failure found before any cloud call (no usable credentials, say)."""
        return await _Run(resource, write, events, self._now).fail(failure)

    async def reconcile(
        self, resource: Resource, cloud: DesktopImageClient, write: StatusWriter, events: Events
    ) -> Outcome:
        run = _Run(resource, write, events, self._now)
        if resource.paused:
            run.synced(c.not_ready(c.RECONCILE_PAUSED, "Paused by the clouddesktop.yc.io/paused annotation."))
            await run.flush()
            return Outcome(Result.PAUSED, c.RECONCILE_PAUSED)
        try:
            image = await self._obtain(run, cloud)
            image = await self._converge(run, cloud, image)
        except CloudError as error:
            return await run.fail(classify(error, during=run.stage))
        except Failure as failure:
            return await run.fail(failure)
        run.mirror(image)
        run.status.observed_generation = resource.generation
        was_ready = run.ready_reason == c.AVAILABLE and run.ready_status == "True"
        run.ready(c.ready())
        run.synced(c.ready(c.RECONCILE_SUCCESS, "The last reconcile reached the cloud without error."))
        if not was_ready:
            run.events.normal("ImageReady", f"Cloud image {image.id} is ACTIVE.")
        await run.flush()
        return Outcome(Result.READY, c.AVAILABLE, became_ready=not was_ready)

    async def _obtain(self, run: _Run, cloud: DesktopImageClient) -> CloudImage:
        """The cloud image this object owns, copying it if there is none yet."""
        status = run.status
        reason = run.ready_reason
        retry_after: str | None = None  # a failed copy's operation: the next copy needs a new key

        if status.operation_id and reason in (c.COPYING, c.UPDATING):
            operation = await cloud.follow_operation(status.operation_id)
            if operation.error is not None:
                failed = c.COPY_FAILED if reason == c.COPYING else c.UPDATE_FAILED
                raise Failure(failed, describe(operation.error), terminal=True)
            if operation.image_id and not status.image_id:
                status.image_id = operation.image_id
            if operation.image is not None and reason == c.COPYING:
                return operation.image

        if reason == c.COPY_FAILED and status.operation_id:
            retry_after = status.operation_id
            status.image_id = None  # the cloud removed the image of the failed copy

        if status.image_id:
            try:
                image = await cloud.get_image(status.image_id)
            except CloudError as error:
                if error.code is Code.NOT_FOUND:
                    message = f"Cloud image {status.image_id} no longer exists; it is not recreated."
                    raise Failure(c.IMAGE_NOT_FOUND, message, terminal=True, cloud_error=False) from error
                raise
            if image.status is ImageStatus.DELETING:
                message = f"Cloud image {image.id} is being deleted outside the operator."
                raise Failure(c.IMAGE_NOT_FOUND, message, terminal=True, cloud_error=False)
            return await self._wait_active(cloud, image)

        run.stage = "copy"  # from here a NOT_FOUND means the source is missing
        folder_id = await self._folder(run, cloud)
        run.stage = "observe"
        adopted = await self._adopt(run, cloud, folder_id)
        return adopted or await self._copy(run, cloud, folder_id, retry_after)

    async def _adopt(
        self, run: _Run, cloud: DesktopImageClient, folder_id: str, conflict: CloudError | None = None
    ) -> CloudImage | None:
        """Our image under our name in the folder (a copy whose answer we never saw), if there is one.

        An image of that name that is not ours is a NameConflict: never adopted, never touched.
        """
        name = run.resource.image_name
        found = await cloud.find_images(folder_id, name)
        ours = [image for image in found if naming.is_owned_by(image.labels, run.resource.uid)]
        if ours:
            image = ours[0]
            run.status.image_id = image.id
            run.events.normal(
                "ImageAdopted", f"Found cloud image {image.id} created for this object; adopting it."
            )
            return await self._wait_active(cloud, image)
        if found or conflict:
            holder = f" ({found[0].id})" if found else ""
            message = (
                f"Folder {folder_id} already has an image named {name!r}{holder} that this object did not "
                "create; it is left alone. Choose another spec.name."
            )
            raise Failure(c.NAME_CONFLICT, message, terminal=True, cloud_error=False)
        return None

    async def _folder(self, run: _Run, cloud: DesktopImageClient) -> str:
        spec, status = run.resource.spec, run.status
        if spec.folder_id:
            return spec.folder_id
        if not status.folder_id:
            assert spec.source.desktop_id  # the schema requires a folder for Compute images
            status.folder_id = await cloud.get_desktop_folder(spec.source.desktop_id)
        return status.folder_id

    async def _copy(
        self, run: _Run, cloud: DesktopImageClient, folder_id: str, failed_operation_id: str | None
    ) -> CloudImage:
        resource, status = run.resource, run.status
        desired = DesiredImage.of(resource)
        request = CopyRequest(
            name=desired.name,
            desktop_id=resource.spec.source.desktop_id,
            compute_image_id=resource.spec.source.compute_image_id,
            folder_id=folder_id,
            description=desired.description,
            labels=desired.labels,
        )
        run.stage = "copy"
        try:
            operation = await cloud.copy(
                request, idempotency_key=naming.copy_key(resource.uid, failed_operation_id)
            )
        except CloudError as error:
            if error.code is not Code.ALREADY_EXISTS:
                raise
            # Our own earlier attempt may hold the name: its answer lost and its key not honoured.
            run.stage = "observe"
            adopted = await self._adopt(run, cloud, folder_id, conflict=error)
            assert adopted is not None  # _adopt raises NameConflict when the image is not ours
            return adopted
        # Record the operation before waiting on it: after a crash, the next run resumes it.
        status.operation_id = operation.id
        status.image_id = operation.image_id
        status.folder_id = folder_id
        status.image_status = "CREATING"
        status.observed_generation = resource.generation
        source = resource.spec.source.desktop_id or resource.spec.source.compute_image_id
        run.ready(
            c.not_ready(c.COPYING, f"Copying {source} into image {operation.image_id} ({operation.id}).")
        )
        run.synced(c.ready(c.RECONCILE_SUCCESS, "The copy was accepted by the cloud."))
        run.events.normal(
            "CopyStarted", f"Copying {source} into cloud image {operation.image_id} ({operation.id})."
        )
        await run.flush()

        run.stage = "observe"
        done = await cloud.follow_operation(operation.id)
        return await self._image_of(cloud, done, run, failed_reason=c.COPY_FAILED)

    async def _image_of(
        self, cloud: DesktopImageClient, operation: CloudOperation, run: _Run, *, failed_reason: str
    ) -> CloudImage:
        if operation.error is not None:
            raise Failure(failed_reason, describe(operation.error), terminal=True)
        if operation.image is not None:
            return operation.image
        assert operation.image_id or run.status.image_id
        return await cloud.get_image(operation.image_id or run.status.image_id or "")

    async def _wait_active(self, cloud: DesktopImageClient, image: CloudImage) -> CloudImage:
        """An image still CREATING with no operation we know of (an adopted one): wait until it is not."""
        return await self._wait_while(cloud, image, ImageStatus.CREATING)

    async def _wait_while(
        self, cloud: DesktopImageClient, image: CloudImage, *busy: ImageStatus
    ) -> CloudImage:
        """Poll the image, backing off, while its status is one of `busy`; NOT_FOUND propagates."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._image_wait.timeout
        attempt = 1
        while image.status in busy:
            if loop.time() >= deadline:
                raise CloudError(Code.DEADLINE_EXCEEDED, f"image {image.id} still {image.status.value}")
            await self._sleep(self._image_wait.backoff.equal_jitter(attempt, self._rng))
            attempt += 1
            image = await cloud.get_image(image.id)
        return image

    async def _converge(self, run: _Run, cloud: DesktopImageClient, image: CloudImage) -> CloudImage:
        desired = DesiredImage.of(run.resource)
        mask = desired.mask(image)
        if not mask:
            return image
        run.stage = "update"
        key = naming.update_key(run.resource.uid, image.id, desired.change_digest(image, mask))
        operation = await cloud.update(
            image.id,
            mask=mask,
            name=desired.name,
            description=desired.description,
            labels=desired.labels,
            idempotency_key=key,
        )
        # Recorded before waiting, as for a copy: a restart follows this update instead of starting another.
        message = f"Updating {', '.join(mask)} of cloud image {image.id} ({operation.id})."
        run.status.operation_id = operation.id
        run.status.observed_generation = run.resource.generation
        run.ready(c.not_ready(c.UPDATING, message))
        run.synced(c.ready(c.RECONCILE_SUCCESS, "The update was accepted by the cloud."))
        run.events.normal("UpdateStarted", message)
        await run.flush()
        run.stage = "observe"
        done = await cloud.follow_operation(operation.id)
        return await self._image_of(cloud, done, run, failed_reason=c.UPDATE_FAILED)

    # -- deletion -------------------------------------------------------------------------------------

    async def finalize(
        self, resource: Resource, cloud: DesktopImageClient | None, write: StatusWriter, events: Events
    ) -> Outcome:
        """Release the object: delete its cloud image (policy Delete) or leave it (Retain).

        Returns DELETED or RETAINED when the finalizer may go; otherwise an error outcome to retry.
        """
        run = _Run(resource, write, events, self._now)
        if resource.spec.deletion_policy == "Retain":
            if run.status.image_id:
                events.normal(
                    "ImageRetained", f"Cloud image {run.status.image_id} is kept (deletionPolicy Retain)."
                )
            return Outcome(Result.RETAINED, c.DELETING)
        if resource.paused:
            run.synced(c.not_ready(c.RECONCILE_PAUSED, "Deletion waits: paused by the annotation."))
            await run.flush()
            return Outcome(Result.PAUSED, c.RECONCILE_PAUSED)
        assert cloud is not None, "only a Retain policy needs no cloud client"
        run.stage = "delete"
        try:
            image_id = await self._image_to_delete(run, cloud)
            if image_id is None:
                return Outcome(Result.DELETED, c.DELETING)
            await self._delete(run, cloud, image_id)
        except CloudError as error:
            return await run.fail(classify(error, during="delete"))
        except Failure as failure:
            return await run.fail(failure)
        events.normal("ImageDeleted", f"Cloud image {image_id} is deleted.")
        return Outcome(Result.DELETED, c.DELETING)

    async def _image_to_delete(self, run: _Run, cloud: DesktopImageClient) -> str | None:
        status, reason = run.status, run.ready_reason
        if status.operation_id and reason == c.COPYING:
            # Wait out the copy: the image cannot be deleted while it is being created.
            operation = await cloud.follow_operation(status.operation_id)
            if operation.error is not None:
                return None  # the copy failed and the cloud removed its image
            status.image_id = status.image_id or operation.image_id
        if reason == c.COPY_FAILED:
            return None
        if status.image_id:
            return status.image_id
        # No image recorded: a copy may have been accepted just before a crash. Look for ours.
        folder_id = run.resource.spec.folder_id or status.folder_id
        if not folder_id and run.resource.spec.source.desktop_id:
            try:
                folder_id = await cloud.get_desktop_folder(run.resource.spec.source.desktop_id)
            except CloudError as error:
                if error.code is not Code.NOT_FOUND:
                    raise
                return None  # no desktop: nothing can have been copied from it into an unknown folder
        if not folder_id:
            return None
        found = await cloud.find_images(folder_id, run.resource.image_name)
        ours = [image for image in found if naming.is_owned_by(image.labels, run.resource.uid)]
        return ours[0].id if ours else None

    async def _delete(self, run: _Run, cloud: DesktopImageClient, image_id: str) -> None:
        status = run.status
        if run.ready_reason == c.DELETING and status.operation_id:
            # Our delete was accepted before a restart: see it through rather than ask again.
            done = await cloud.follow_operation(status.operation_id)
            if done.error is None or done.error.code is Code.NOT_FOUND:
                return
        key = naming.delete_key(run.resource.uid, image_id)
        try:
            operation = await cloud.delete(image_id, idempotency_key=key)
        except CloudError as error:
            if error.code is Code.NOT_FOUND:
                return  # already gone: never hang on an image that does not exist
            if error.code is not Code.FAILED_PRECONDITION:
                raise
            # Busy: still being created (adopted mid-copy) or already being deleted (our own unrecorded
            # call). Wait until it settles; gone is done, ACTIVE is deleted now.
            try:
                await self._wait_while(
                    cloud, await cloud.get_image(image_id), ImageStatus.CREATING, ImageStatus.DELETING
                )
            except CloudError as gone:
                if gone.code is Code.NOT_FOUND:
                    return
                raise
            operation = await cloud.delete(image_id, idempotency_key=key)
        status.operation_id = operation.id
        run.ready(c.not_ready(c.DELETING, f"Deleting cloud image {image_id} ({operation.id})."))
        run.synced(c.ready(c.RECONCILE_SUCCESS, "The deletion was accepted by the cloud."))
        await run.flush()
        done = await cloud.follow_operation(operation.id)
        if done.error is not None and done.error.code is not Code.NOT_FOUND:
            raise done.error


class _Run:
    """One reconcile's working state: the status being built, and writes only when something changed."""

    def __init__(
        self, resource: Resource, write: StatusWriter, events: Events, now: Callable[[], datetime]
    ) -> None:
        self.resource = resource
        self.status: DesktopImageStatus = resource.status.model_copy(deep=True)
        self.events = events
        self.stage = "observe"
        self._write = write
        self._now = now
        self._written = _dump(resource.status)
        self._remember_ready()

    def _remember_ready(self) -> None:
        """Ready as last written: what the object says now, for telling transitions apart."""
        ready = c.find(self.status.conditions, CONDITION_READY)
        self.ready_reason = ready.reason if ready else None
        self.ready_status = ready.status if ready else None

    def ready(self, verdict: c.Verdict) -> None:
        self._set(CONDITION_READY, verdict)

    def synced(self, verdict: c.Verdict) -> None:
        self._set(CONDITION_SYNCED, verdict)

    def _set(self, condition_type: str, verdict: c.Verdict) -> None:
        self.status.conditions = c.apply(
            self.status.conditions, condition_type, verdict, self.resource.generation, self._now()
        )

    def mirror(self, image: CloudImage) -> None:
        self.status.image_id = image.id
        self.status.image_status = image.status.value
        self.status.storage_size = image.storage_size
        self.status.min_disk_size = image.min_disk_size
        self.status.folder_id = image.folder_id
        self.status.created_at = image.created_at

    async def fail(self, failure: Failure) -> Outcome:
        log.info("%s: %s", self.resource.ref, failure)
        self.status.observed_generation = self.resource.generation
        if failure.cloud_error:
            self.synced(c.not_ready(failure.reason, failure.message))
        else:
            self.synced(c.ready(c.RECONCILE_SUCCESS, "The last reconcile reached the cloud without error."))
        # A passing outage while an operation runs leaves Ready saying what the image is doing (the next run
        # resumes the operation); everything else is what Ready reports.
        if failure.terminal or self.ready_reason not in _IN_FLIGHT:
            if failure.reason != self.ready_reason:
                self.events.warning(failure.reason, failure.message)
            self.ready(c.not_ready(failure.reason, failure.message))
        await self.flush()
        result = Result.TERMINAL_ERROR if failure.terminal else Result.TRANSIENT_ERROR
        return Outcome(result, failure.reason)

    async def flush(self) -> None:
        """Write the status if it differs from what the object has (one merge patch)."""
        current = _dump(self.status)
        if current == self._written:
            return
        patch: dict[str, Any] = dict(current)
        for gone in self._written.keys() - current.keys():
            patch[gone] = None  # a merge patch removes a field by nulling it
        await self._write({"status": patch})
        self._written = current
        self._remember_ready()


def _dump(status: DesktopImageStatus) -> dict[str, Any]:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")
