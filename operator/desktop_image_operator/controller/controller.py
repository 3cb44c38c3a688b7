"""Glue between kopf and the reconciler: one reconcile at a time per object, the freshest object, scheduling,
metrics and the credentials Secrets' finalizer.

kopf tells us *that* something happened; the reconciler works out *what* to do from the object and the
cloud. Handlers and the per-object resync loop both come through here, serialised by a per-object lock
that is never held across a sleep: a reconcile takes one step and says when to look again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from desktop_image_operator.api import CONDITION_READY
from desktop_image_operator.controller.credentials import Credentials
from desktop_image_operator.controller.kube import KubeApi
from desktop_image_operator.controller.schedule import next_delay
from desktop_image_operator.controller.secret_guard import SecretGuard
from desktop_image_operator.controller.settings import RunSettings
from desktop_image_operator.observability import metrics
from desktop_image_operator.observability.logs import reconcile_scope
from desktop_image_operator.reconciler import conditions as c
from desktop_image_operator.reconciler.annotations import PREFIX
from desktop_image_operator.reconciler.failures import Failure
from desktop_image_operator.reconciler.reconciler import Outcome, Reconciler, Result, StatusWriter
from desktop_image_operator.reconciler.resource import InvalidObject, Resource

log = logging.getLogger(__name__)

_EVENT_MESSAGE_LIMIT = 1024
_RELEASED = (Result.DELETED, Result.RETAINED)


@dataclass(eq=False)  # compared by identity: states are kept in a set of those polling
class ObjectState:
    """What the operator keeps in memory per object (in kopf's per-object memo)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    delay: float | None = None  # seconds until the next reconcile, set by the last one
    failures: int = 0
    # The newest version of the object we know: from a watch event, the loop or our own status patch.
    # A reconcile always starts from it, never from a body that predates a status we wrote.
    latest: Mapping[str, Any] | None = None
    # What the user last asked for, as far as the loop knows: a change of it wakes the loop at once.
    intent: tuple[int, str] | None = None
    # Set by a change the next reconcile has not seen yet; that reconcile runs at once.
    changed: bool = False

    def freshest(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        if self.latest is None or _version(body) >= _version(self.latest):
            self.latest = body
        return self.latest


def _version(body: Mapping[str, Any]) -> int:
    # resourceVersion is opaque by contract; the API server's is etcd's revision, an integer that only grows.
    # Comparing is only a tie-breaker between two bodies of the same object, and anything odd counts as old.
    try:
        return int(body.get("metadata", {}).get("resourceVersion", "0"))
    except ValueError:
        return 0


class KopfEvents:
    """Kubernetes events on the object, posted by kopf in the background."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self._body = body

    def normal(self, reason: str, message: str) -> None:
        kopf.event(self._body, type="Normal", reason=reason, message=message[:_EVENT_MESSAGE_LIMIT])  # type: ignore[arg-type]

    def warning(self, reason: str, message: str) -> None:
        kopf.event(self._body, type="Warning", reason=reason, message=message[:_EVENT_MESSAGE_LIMIT])  # type: ignore[arg-type]


class Controller:
    def __init__(
        self,
        *,
        settings: RunSettings,
        reconciler: Reconciler,
        credentials: Credentials,
        kube: KubeApi,
        guard: SecretGuard,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._reconciler = reconciler
        self._credentials = credentials
        self._kube = kube
        self._guard = guard
        self._rng = rng or random.Random()
        # Objects whose loop waits to poll a running operation, and the kinds of operation whose duration
        # is known: when the first duration of a kind is learned, the waiting loops poll again at once and
        # reschedule by it (their pauses were chosen blind, and would overshoot short operations).
        self._polling: weakref.WeakSet[ObjectState] = weakref.WeakSet()
        self._learned: frozenset[str] = frozenset()

    @staticmethod
    def state(memo: Any) -> ObjectState:
        existing = getattr(memo, "desktop_image", None)
        if existing is None:
            existing = ObjectState()
            memo.desktop_image = existing
        assert isinstance(existing, ObjectState)
        return existing

    # -- the live object ------------------------------------------------------------------------------

    async def reconcile(self, body: Mapping[str, Any], memo: Any, *, trigger: str) -> Outcome:
        state = self.state(memo)
        async with state.lock:
            started = time.monotonic()
            state.changed = False  # this reconcile reads the newest body: any change so far is seen
            current = state.freshest(body)
            with _scope(current):
                outcome = await self._reconcile(current, state)
            metrics.observe_reconcile(outcome.result.value, trigger, time.monotonic() - started)
            self.record(state, outcome)  # and choose when the object's loop looks again
            return outcome

    def record(self, state: ObjectState, outcome: Outcome) -> None:
        """After a reconcile: the metrics, the failure count, and when the object's loop looks again."""
        body = state.latest or {}
        metrics.OBJECTS.set_state(body["metadata"]["uid"], _ready_reason(body))
        if outcome.first_ready and (created := _created_at(body)) is not None:
            metrics.TIME_TO_READY.observe(max(0.0, (datetime.now(UTC) - created).total_seconds()))
        healthy = outcome.result in (Result.READY, Result.PAUSED, Result.PROGRESSING)
        state.failures = 0 if healthy else state.failures + 1
        state.delay = next_delay(
            outcome.result, state.failures, self.settings, self._rng, outcome.requeue_after
        )
        if outcome.result is Result.PROGRESSING:
            self._polling.add(state)
        else:
            self._polling.discard(state)
        self._wake_pollers_on_learning()

    def _wake_pollers_on_learning(self) -> None:
        learned = frozenset(self._reconciler.durations.known_kinds())
        if learned <= self._learned:
            return
        self._learned = learned
        for waiting in list(self._polling):
            waiting.delay = 0.0
            waiting.wake.set()

    async def _reconcile(self, body: Mapping[str, Any], state: ObjectState) -> Outcome:
        write, events = self._writer(body, state), KopfEvents(body)
        try:
            resource = Resource.from_body(body)
        except InvalidObject as error:
            # The API server's schema refuses such objects; only a schema older than the operator lets one in.
            events.warning(c.INVALID_SPEC, str(error))
            return Outcome(Result.TERMINAL_ERROR, c.INVALID_SPEC)
        try:
            cloud = await self._credentials.client_for(resource)
        except Failure as failure:
            return await self._reconciler.report(resource, failure, write, events)
        await self._hold_credentials(resource)
        outcome = await self._reconciler.reconcile(resource, cloud, write, events)
        if outcome.reason in (c.CREDENTIALS_INVALID, c.PERMISSION_DENIED):
            self._credentials.forget(resource)  # perhaps the Secret has a new key by now
        return outcome

    async def _hold_credentials(self, resource: Resource) -> None:
        """Keep the object's credentials Secret until the object is gone: its deletion still needs it."""
        if resource.spec.credentials_ref is None:
            return
        try:
            await self._guard.hold(resource.namespace, resource.spec.credentials_ref.name)
        except Exception as error:  # the reconcile itself can go on; only a later deletion may suffer
            log.warning("%s: cannot protect its credentials Secret: %s", resource.ref, error)

    # -- deletion -------------------------------------------------------------------------------------

    async def finalize(self, body: Mapping[str, Any], memo: Any) -> Outcome:
        state = self.state(memo)
        async with state.lock:
            started = time.monotonic()
            current = state.freshest(body)
            with _scope(current):
                outcome = await self._finalize(current, state)
            metrics.observe_reconcile(outcome.result.value, "delete", time.monotonic() - started)
            if outcome.result in _RELEASED:
                metrics.OBJECTS.forget(current["metadata"]["uid"])
                state.failures = 0
            else:
                metrics.OBJECTS.set_state(current["metadata"]["uid"], _ready_reason(state.latest or current))
                state.failures += 0 if outcome.result is Result.PROGRESSING else 1
            return outcome

    async def _finalize(self, body: Mapping[str, Any], state: ObjectState) -> Outcome:
        write, events = self._writer(body, state), KopfEvents(body)
        try:
            resource = Resource.from_body(body)
        except InvalidObject as error:
            return self._release_invalid(body, events, error)
        outcome = await self._finalize_resource(resource, write, events)
        if outcome.result in _RELEASED and resource.spec.credentials_ref is not None:
            await self._guard.release_if_unused(
                resource.namespace, resource.spec.credentials_ref.name, leaving_uid=resource.uid
            )
        return outcome

    async def _finalize_resource(
        self, resource: Resource, write: StatusWriter, events: KopfEvents
    ) -> Outcome:
        if resource.retains_image:
            return await self._reconciler.finalize(resource, None, write, events)
        try:
            cloud = await self._credentials.client_for(resource)
        except Failure as failure:
            return await self._reconciler.report(
                resource, _blocked_deletion(resource, failure), write, events
            )
        return await self._reconciler.finalize(resource, cloud, write, events)

    def _release_invalid(self, body: Mapping[str, Any], events: KopfEvents, error: InvalidObject) -> Outcome:
        """An object no schema of ours accepts cannot be acted on; holding it would block its namespace."""
        image = (body.get("status") or {}).get("imageId")
        left = f"cloud image {image} is left in the cloud" if image else "no cloud image is known"
        events.warning(c.INVALID_SPEC, f"Released without cloud calls ({left}): {error}")
        return Outcome(Result.RETAINED, c.INVALID_SPEC)

    @staticmethod
    def forget(body: Mapping[str, Any]) -> None:
        metrics.OBJECTS.forget(body["metadata"]["uid"])

    def deletion_retry_delay(self, memo: Any, outcome: Outcome) -> float:
        state = self.state(memo)
        return next_delay(
            outcome.result, max(1, state.failures), self.settings, self._rng, outcome.requeue_after
        )

    # -- the per-object loop --------------------------------------------------------------------------

    def notice(self, body: Mapping[str, Any], memo: Any) -> None:
        """A watch event: keep the newest body; wake the loop when the user changed what they ask for."""
        state = self.state(memo)
        current = state.freshest(body)
        intent = _intent(current)
        if state.intent is None:
            state.intent = intent
            if state.delay is None:
                state.delay = self._first_look(current)
                state.wake.set()
        elif intent != state.intent:
            state.intent = intent
            state.changed = True
            state.wake.set()

    def _first_look(self, body: Mapping[str, Any]) -> float:
        """When to look first at an object just seen (a new one, or every one after a restart).

        One that is settled (Ready at its generation, nothing running) is looked at some time within the
        resync period, chosen at random, so a restart with thousands of objects is no burst of reads.
        Anything else is looked at now.
        """
        if not _settled(body):
            return 0.0
        return self._rng.uniform(0.0, self.settings.resync_seconds)

    async def run_loop(self, body: Mapping[str, Any], memo: Any, stopped: Any) -> None:
        """Per-object loop: sleep until the delay the last reconcile (or a change) chose, then reconcile."""
        state = self.state(memo)
        if state.delay is None:
            state.delay = self._first_look(state.freshest(body))
        trigger = "start"
        while not stopped:  # until kopf stops the daemon: the object is deleted, or the operator stops
            state.wake.clear()
            if not state.changed:
                woken = await _wait_any(state.wake, stopped, timeout=state.delay or 0.0)
                if stopped:
                    return
                if woken and not state.changed:
                    continue  # a new delay was chosen meanwhile
            trigger = "change" if state.changed else trigger
            await self._reconcile_in_loop(body, memo, trigger)
            trigger = "scheduled"

    async def _reconcile_in_loop(self, body: Mapping[str, Any], memo: Any, trigger: str) -> None:
        try:
            await self.reconcile(body, memo, trigger=trigger)
        except Exception:  # the loop must outlive a failed status write or a slow API server
            state = self.state(memo)
            state.failures += 1
            state.delay = next_delay(Result.TRANSIENT_ERROR, state.failures, self.settings, self._rng)
            log.exception("reconcile failed; retrying in %.1fs", state.delay)

    def _writer(self, body: Mapping[str, Any], state: ObjectState) -> StatusWriter:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]

        async def write(patch: dict[str, Any]) -> None:
            written = await self._kube.patch_status(namespace, name, patch)
            metrics.STATUS_WRITES.inc()
            state.freshest(written)

        return write


def _blocked_deletion(resource: Resource, failure: Failure) -> Failure:
    """Say what blocks the deletion and what the user can do about it."""
    image = resource.status.image_id or "(none recorded)"
    advice = (
        f" The cloud image {image} cannot be deleted without credentials: restore them, or remove the "
        "finalizer to leave the image in the cloud."
    )
    return Failure(failure.reason, failure.message + advice, cloud_error=failure.cloud_error)


def _scope(body: Mapping[str, Any]) -> contextlib.AbstractContextManager[object]:
    metadata = body.get("metadata", {})
    return reconcile_scope(metadata.get("namespace", ""), metadata.get("name", ""), metadata.get("uid", ""))


def _intent(body: Mapping[str, Any]) -> tuple[int, str]:
    """What the user asks for: the spec (by its generation) and the object's labels and annotations.

    Any annotation counts, not only the pause: annotating an object is how people ask for a look now.
    The operator's own deletion bookkeeping does not count.
    """
    metadata = body.get("metadata", {})
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if not k.startswith(PREFIX)}
    marks = json.dumps([annotations, metadata.get("labels") or {}], sort_keys=True)
    return int(metadata.get("generation", 0)), marks


def _settled(body: Mapping[str, Any]) -> bool:
    """Ready at the current generation with no operation running: nothing to do until the next resync."""
    status = body.get("status") or {}
    generation = body.get("metadata", {}).get("generation")
    ready = _ready(body)
    return (
        ready is not None
        and ready.get("status") == "True"
        and ready.get("observedGeneration") == generation
        and status.get("observedGeneration") == generation
        and not status.get("operation")
    )


def _ready(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = (body.get("status") or {}).get("conditions") or []
    found: Mapping[str, Any] | None = next((x for x in conditions if x.get("type") == CONDITION_READY), None)
    return found


def _ready_reason(body: Mapping[str, Any]) -> str:
    conditions = (body.get("status") or {}).get("conditions") or []
    ready = next((x for x in conditions if x.get("type") == CONDITION_READY), None)
    return str(ready.get("reason", "Unknown")) if ready else "Unknown"


async def _wait_any(event: asyncio.Event, stopped: Any, *, timeout: float) -> bool:  # noqa: ASYNC109
    """Wait for `event`, kopf's stop flag or the timeout; True when the event fired."""
    waiter = asyncio.ensure_future(event.wait())
    stopper = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        stopper.cancel()
    return event.is_set()


def _created_at(body: Mapping[str, Any]) -> datetime | None:
    created = body.get("metadata", {}).get("creationTimestamp")
    return datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
