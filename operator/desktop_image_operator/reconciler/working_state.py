"""One reconcile's working state: the status it builds, the events it sends, and the outcome it ends with.

Writes happen only when the status differs from what the object has, as one merge patch. What a later
run must remember (the operation in flight, the first Ready, the last event sent) is kept in status
fields of its own; the conditions are only ever written, never read back to decide anything.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from desktop_image_operator.api import (
    CONDITION_READY,
    CONDITION_SYNCED,
    DesktopImageStatus,
    OperationKind,
    OperationRecord,
)
from desktop_image_operator.cloud.types import CloudImage
from desktop_image_operator.reconciler import conditions as c
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.durations import OperationDurations
from desktop_image_operator.reconciler.failures import Failure, operation_failed
from desktop_image_operator.reconciler.observation import OperationView
from desktop_image_operator.reconciler.outcome import Events, Outcome, Result, StatusWriter
from desktop_image_operator.reconciler.ownership import Owner
from desktop_image_operator.reconciler.resource import Resource
from desktop_image_operator.reconciler.timing import Timing

log = logging.getLogger(__name__)

REASON_OF_RUNNING: dict[OperationKind, str] = {"Copy": r.COPYING, "Update": r.UPDATING, "Delete": r.DELETING}
_SYNC_OK = "The last reconcile reached the cloud without error."


class Run:
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
    ) -> None:
        self.resource = resource
        self.me = me
        self.durations = durations
        self.status: DesktopImageStatus = resource.status.model_copy(deep=True)
        self.events = events
        self.now = now
        self.timing = timing
        self._write = write
        self._written = _dump(resource.status)

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

    def _shown_reason(self) -> str | None:
        """The reason Ready shows now: only to keep its message when nothing new is to be said."""
        shown = c.find(self.status.conditions, CONDITION_READY)
        return shown.reason if shown is not None else None

    def mirror(self, image: CloudImage) -> None:
        """Record an image a fresh read confirmed, as the cloud has it now."""
        self.status.image_id = image.id
        self.status.image_status = image.status.value
        self.status.storage_size = image.storage_size
        self.status.min_disk_size = image.min_disk_size
        self.status.folder_id = image.folder_id
        self.status.created_at = image.created_at
        self.status.image_name = image.name
        self.status.image_description = image.description
        self.status.image_labels = dict(image.labels)

    def _notify(self, state: str, message: str, *, event: str | None = None, warning: bool = False) -> None:
        """Send an event once per state in a row (a failure retried ten times is one event, not ten); the
        state is recorded in status.lastEvent, the event's reason is `event` or the state itself."""
        if self.status.last_event == state:
            return
        self.status.last_event = state
        (self.events.warning if warning else self.events.normal)(event or state, message)

    # -- outcomes -------------------------------------------------------------------------------------

    async def ready(self, image: CloudImage, *, observed_only: bool = False, matches: bool = True) -> Outcome:
        first = self.status.first_ready_at is None
        self.mirror(image)
        self.status.matches_spec = matches
        if not observed_only:  # the image matches: only the spec's labels (and ours) are ours from now on
            self.status.applied_labels = sorted(
                set(self.resource.spec.labels or ()) | self.me.labels().keys()
            )
        self.status.operation = None
        self.status.observed_generation = self.resource.generation
        if observed_only:
            how = "matches the spec" if matches else "differs from the spec (see status.matchesSpec)"
            self._set(
                CONDITION_READY,
                c.ready(message=f"The cloud image is ACTIVE and {how} (observed, not managed)."),
            )
        else:
            self._set(CONDITION_READY, c.ready())
        self._set(CONDITION_SYNCED, c.ready(r.RECONCILE_SUCCESS, _SYNC_OK))
        if first:
            self.status.first_ready_at = self.now
        updated = (before := self.resource.status.operation) is not None and before.kind == "Update"
        event = "ImageUpdated" if updated and not first else "ImageReady"
        fits = "matches the spec" if matches else "differs from the spec (observed, not changed)"
        self._notify(r.AVAILABLE, f"Cloud image {image.id} is ACTIVE and {fits}.", event=event)
        await self.flush()
        return Outcome(Result.READY, r.AVAILABLE, first_ready=first)

    async def sent(self, kind: OperationKind) -> None:
        """Record a request about to go out: if its answer is lost, the next run knows it may have landed."""
        self.status.operation = OperationRecord(
            kind=kind, phase="Sent", started_at=self.now, attempts=self._attempts(kind)
        )
        self.status.observed_generation = self.resource.generation
        self._set(
            CONDITION_READY, c.not_ready(REASON_OF_RUNNING[kind], f"Sending the {kind.lower()} request.")
        )
        await self.flush()

    def _attempts(self, kind: OperationKind) -> int:
        """Operations of this kind in a row for the same change, counting the one about to start."""
        previous = self.resource.status.operation
        if previous is None or previous.kind != kind:
            return 1
        if self.resource.status.observed_generation != self.resource.generation:
            return 1  # a new change starts a new count
        return previous.attempts + (1 if previous.phase == "Failed" else 0)

    async def started(self, kind: OperationKind, operation_id: str, message: str) -> Outcome:
        """Record an operation the cloud just accepted: a restart follows it instead of starting another."""
        record = OperationRecord(
            kind=kind, id=operation_id, phase="Running", started_at=self.now, attempts=self._attempts(kind)
        )
        self.status.operation = record
        self.status.operation_id = operation_id
        self.status.observed_generation = self.resource.generation
        self.status.last_event = None  # a new operation: its outcome is news again
        self._set(CONDITION_READY, c.not_ready(REASON_OF_RUNNING[kind], message))
        self._set(CONDITION_SYNCED, c.ready(r.RECONCILE_SUCCESS, _SYNC_OK))
        await self.flush()
        return Outcome(Result.PROGRESSING, REASON_OF_RUNNING[kind], self.poll_after(record))

    async def progressing(self, record: OperationRecord, message: str, reason: str | None = None) -> Outcome:
        """Our operation still runs: say so (once: polls write nothing new), look again soon."""
        reason = reason or REASON_OF_RUNNING[record.kind]
        self.status.observed_generation = self.resource.generation
        if self._shown_reason() != reason:  # the message written when it started says more
            self._set(CONDITION_READY, c.not_ready(reason, message))
        self._set(CONDITION_SYNCED, c.ready(r.RECONCILE_SUCCESS, _SYNC_OK))
        await self.flush()
        return Outcome(Result.PROGRESSING, reason, self.poll_after(record))

    async def waiting(self, reason: str, message: str, after: float | None = None) -> Outcome:
        """Waiting on the cloud without an operation of ours (an image still being created, say)."""
        self.status.observed_generation = self.resource.generation
        self._set(CONDITION_READY, c.not_ready(reason, message))
        self._set(CONDITION_SYNCED, c.ready(r.RECONCILE_SUCCESS, _SYNC_OK))
        await self.flush()
        return Outcome(
            Result.PROGRESSING, reason, after if after is not None else self.timing.poll_base_seconds
        )

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
        failure = operation_failed(record.kind, operation.error)
        outcome = await self.fail(failure)
        return Outcome(
            outcome.result, outcome.reason, self.timing.retry_after(failure.reason, record.attempts)
        )

    async def fail(self, failure: Failure) -> Outcome:
        log.info("%s", failure)  # the line carries the object and the reconcile id already
        if failure.fenced:
            return Outcome(Result.TRANSIENT_ERROR, failure.reason)
        self.status.observed_generation = self.resource.generation
        if failure.cloud_error:
            self._set(CONDITION_SYNCED, c.not_ready(failure.reason, failure.message))
        else:
            self._set(CONDITION_SYNCED, c.ready(r.RECONCILE_SUCCESS, _SYNC_OK))
        # A passing outage while our operation runs leaves Ready saying what the image is doing: the
        # operation goes on, and the next run polls it again.
        running = self.status.operation is not None and self.status.operation.phase == "Running"
        if not (running and failure.kind is r.Kind.TRANSIENT):
            self._notify(failure.reason, failure.message, warning=True)
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
