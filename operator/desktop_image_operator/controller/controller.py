"""Glue between kopf and the reconciler: one reconcile at a time per object, scheduling, metrics.

kopf tells us *that* something happened; the reconciler works out *what* to do from the object and the
cloud. Handlers and the per-object resync loop both come through here, serialised by a per-object lock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from desktop_image_operator.controller.credentials import Credentials
from desktop_image_operator.controller.kube import KubeApi
from desktop_image_operator.controller.schedule import next_delay
from desktop_image_operator.controller.settings import OperatorSettings
from desktop_image_operator.observability import metrics
from desktop_image_operator.reconciler import conditions as c
from desktop_image_operator.reconciler.failures import Failure
from desktop_image_operator.reconciler.reconciler import Outcome, Reconciler, Result, StatusWriter
from desktop_image_operator.reconciler.resource import InvalidObject, Resource

log = logging.getLogger(__name__)

_EVENT_MESSAGE_LIMIT = 1024


@dataclass
class ObjectState:
    """What the operator keeps in memory per object (in kopf's per-object memo)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    delay: float | None = None  # seconds until the next reconcile, set by the last one
    failures: int = 0


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
        settings: OperatorSettings,
        reconciler: Reconciler,
        credentials: Credentials,
        kube: KubeApi,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._reconciler = reconciler
        self._credentials = credentials
        self._kube = kube
        self._rng = rng or random.Random()

    @staticmethod
    def state(memo: Any) -> ObjectState:
        existing = getattr(memo, "desktop_image", None)
        if existing is None:
            existing = ObjectState()
            memo.desktop_image = existing
        assert isinstance(existing, ObjectState)
        return existing

    async def reconcile(self, body: Mapping[str, Any], memo: Any, *, trigger: str) -> Outcome:
        state = self.state(memo)
        async with state.lock:
            started = time.monotonic()
            outcome = await self._reconcile(body)
            metrics.observe_reconcile(outcome.result.value, trigger, time.monotonic() - started)
            metrics.OBJECTS.set_state(body["metadata"]["uid"], outcome.reason)
            if outcome.became_ready:
                created = _created_at(body)
                if created is not None:
                    metrics.TIME_TO_READY.observe(max(0.0, (datetime.now(UTC) - created).total_seconds()))
            state.failures = 0 if outcome.result in (Result.READY, Result.PAUSED) else state.failures + 1
            state.delay = next_delay(outcome.result, state.failures, self.settings, self._rng)
            state.wake.set()  # the resync loop picks up the new delay
            return outcome

    async def _reconcile(self, body: Mapping[str, Any]) -> Outcome:
        write, events = self._writer(body), KopfEvents(body)
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
        return await self._reconciler.reconcile(resource, cloud, write, events)

    async def finalize(self, body: Mapping[str, Any], memo: Any) -> Outcome:
        state = self.state(memo)
        async with state.lock:
            started = time.monotonic()
            write, events = self._writer(body), KopfEvents(body)
            resource = Resource.from_body(body)
            if resource.spec.deletion_policy == "Retain":
                outcome = await self._reconciler.finalize(resource, None, write, events)
            else:
                try:
                    cloud = await self._credentials.client_for(resource)
                except Failure as failure:
                    outcome = await self._reconciler.report(resource, failure, write, events)
                else:
                    outcome = await self._reconciler.finalize(resource, cloud, write, events)
            metrics.observe_reconcile(outcome.result.value, "delete", time.monotonic() - started)
            if outcome.result in (Result.DELETED, Result.RETAINED):
                metrics.OBJECTS.forget(body["metadata"]["uid"])
            else:
                state.failures += 1
            return outcome

    def deletion_retry_delay(self, memo: Any, outcome: Outcome) -> float:
        return next_delay(outcome.result, self.state(memo).failures, self.settings, self._rng)

    async def resync_loop(self, body: Mapping[str, Any], memo: Any, stopped: Any) -> None:
        """Per-object loop: sleep until the delay the last reconcile chose, then reconcile again."""
        state = self.state(memo)
        while not stopped:
            delay = state.delay if state.delay is not None else self._initial_delay()
            state.wake.clear()
            woken = await _wait_any(state.wake, stopped, timeout=delay)
            if stopped:
                return
            if woken:
                continue  # a handler reconciled meanwhile and set a new delay
            await self.reconcile(body, memo, trigger="resync")

    def _initial_delay(self) -> float:
        jitter = self.settings.resync_jitter
        return self.settings.resync_seconds * (1 + self._rng.uniform(-jitter, jitter))

    def _writer(self, body: Mapping[str, Any]) -> StatusWriter:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]

        async def write(patch: dict[str, Any]) -> None:
            await self._kube.patch_status(namespace, name, patch)
            metrics.STATUS_WRITES.inc()

        return write


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
