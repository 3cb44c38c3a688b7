"""Glue between kopf and the reconciler: one reconcile at a time per object, the freshest object, scheduling,
metrics and the credentials Secrets' finalizer.

kopf tells us *that* something happened; the reconciler works out *what* to do from the object and the
cloud. Watch events only update what the controller knows of an object and, when the user changed what
they ask for, ask the scheduler for a reconcile now. The scheduler (one timer for all objects) runs the
reconciles; kopf's deletion handler runs the finalizer. Both are serialised by a per-object lock that is
never held across a sleep: a reconcile takes one step and says when to look again.

Per object the controller keeps only an ObjectState holding a trimmed copy of the newest body: with
thousands of objects, what is kept per object is what the operator's memory is made of.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import kopf

from desktop_image_operator.api import CONDITION_READY, CONDITION_SYNCED
from desktop_image_operator.base import Fenced
from desktop_image_operator.controller.credentials import Credentials
from desktop_image_operator.controller.grant_book import GrantBook
from desktop_image_operator.controller.resync import resync_of
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.controller.schedule import next_delay
from desktop_image_operator.controller.scheduler import Scheduler
from desktop_image_operator.controller.secret_guard import SecretGuard, SecretGuardError
from desktop_image_operator.kube import KubeApi, StatusConflict
from desktop_image_operator.observability import metrics
from desktop_image_operator.observability.logs import reconcile_scope
from desktop_image_operator.reconciler import (
    FINALIZER,
    PREFIX,
    Access,
    Failure,
    InvalidObject,
    Outcome,
    Policies,
    Reconciler,
    Resource,
    Result,
    StatusWriter,
)
from desktop_image_operator.reconciler import reasons as r

log = logging.getLogger(__name__)

_EVENT_MESSAGE_LIMIT = 1024
_RELEASED = (Result.DELETED, Result.RETAINED)


# What a reconcile, an event or the intent check reads of an object's metadata; the rest (managedFields,
# kubectl's copy of the last applied object, owner references) is dropped from what is kept.
_KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "finalizers",
)
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(eq=False, slots=True)
class ObjectState:
    """What the operator keeps in memory per object."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    delay: float | None = None  # seconds until the next reconcile, set by the last one
    failures: int = 0
    # What the user last asked for, as far as the loop knows: a change of it asks for a reconcile now.
    intent: tuple[int, bytes] | None = None
    # Set by a change the next reconcile has not seen yet (that reconcile is then labelled a change).
    changed: bool = False
    looked: bool = False  # reconciled at least once by this process
    # The newest version of the object we know, trimmed and kept as compact JSON (a quarter of the
    # memory of the decoded dictionaries; it is decoded once per reconcile, which is rare by comparison).
    packed: bytes | None = None
    version: int = -1
    # The credentials Secrets this object named in this term and that no check has cleared since: the
    # current one, and any it named before whose release check failed (tried again on the next look).
    credentials: tuple[str, ...] = ()

    @property
    def latest(self) -> dict[str, Any] | None:
        """The newest body known: from a watch event or our own status patch. A reconcile always starts
        from it, never from a body that predates a status we wrote."""
        return None if self.packed is None else cast(dict[str, Any], json.loads(self.packed))

    def freshest(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """Keep `body` if it is at least as new as what is kept; return the newest."""
        version = _version(body)
        if self.packed is not None and version < self.version:
            return cast(dict[str, Any], json.loads(self.packed))
        slim = trimmed(body)
        self.packed, self.version = json.dumps(slim, separators=(",", ":")).encode(), version
        return slim


def trimmed(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object the operator reads; the spec and status are shared with `body`, not copied."""
    metadata = body.get("metadata", {})
    kept = {key: metadata[key] for key in _KEPT_METADATA if key in metadata}
    if _LAST_APPLIED in (annotations := kept.get("annotations") or {}):
        kept["annotations"] = {k: v for k, v in annotations.items() if k != _LAST_APPLIED}
    slim = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "metadata": kept}
    slim.update({part: body[part] for part in ("spec", "status") if part in body})
    return slim


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
        grants: GrantBook | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        # Without a grant book (the controller's own tests) every namespace may use every folder.
        self._grants = grants
        self._grants_refresh: asyncio.Task[None] | None = None
        self._policies = Policies(settings.default_deletion_policy, settings.default_management_policy)
        self._reconciler = reconciler
        self._credentials = credentials
        self._kube = kube
        self._guard = guard
        self._rng = rng or random.Random()
        # Reconciles wait on cloud and Kubernetes calls, both bounded; more at once would only queue there.
        self._workers = settings.cloud.max_concurrency + settings.kube_workers
        # Deletion steps at once. A step makes a cloud call or two (at most max_concurrency run at once)
        # and a status write, one of kube_workers Kubernetes calls in flight, where a call waiting its turn
        # spends its own timeout waiting. More steps than the fewer of the two would only queue there: a
        # namespace deleted with hundreds of objects would time hundreds of calls out.
        self._finalizing = asyncio.Semaphore(
            max(1, min(settings.cloud.max_concurrency, settings.kube_workers))
        )
        self._sweep: asyncio.Task[None] | None = None
        self._states: dict[str, ObjectState] = {}  # by UID: a re-created object is another object
        self._scheduler: Scheduler | None = None
        self._serve: asyncio.Task[None] | None = None
        # Objects waiting to poll a running operation, and the kinds of operation whose duration is known:
        # when the first duration of a kind is learned, the waiting objects poll again at once and
        # reschedule by it (their pauses were chosen blind, and would overshoot short operations).
        self._polling: set[str] = set()
        self._learned: frozenset[str] = frozenset()

    def state(self, uid: str) -> ObjectState:
        state = self._states.get(uid)
        if state is None:
            state = self._states[uid] = ObjectState()
        return state

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """One term of service (a run of kopf), with objects learned afresh and a scheduler of its own.

        Nothing is carried over from an earlier term: after a leadership change, kopf lists every object
        again and each gets its first look as after a restart, and each credentials Secret is read again
        (a watch kept through a pause may have gone deaf without noticing).
        """
        self._states, self._polling = {}, set()
        self._credentials.clear()
        metrics.OBJECTS.start_term()
        self._scheduler = Scheduler(self._run_scheduled, workers=self._workers)
        # Credentials Secrets let go while no term ran (see secret_guard). Started before kopf, which
        # cancels the tasks born while it runs.
        self._sweep = asyncio.create_task(
            self._guard.sweep(self.settings.namespaces), name="credentials Secrets sweep"
        )
        await self._refresh_grants()  # the first reconciles see the grants in force, not none
        self._grants_refresh = asyncio.create_task(self._keep_grants_fresh(), name="grants refresh")
        try:
            yield
        finally:
            self._grants_refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._grants_refresh
            self._sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweep
            if self._serve is not None:
                self._serve.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._serve
            self._scheduler, self._serve, self._states, self._polling = None, None, {}, set()
            self._credentials.clear()  # a standby watches no Secret
            metrics.OBJECTS.end_term()

    async def _keep_grants_fresh(self) -> None:
        while True:
            await asyncio.sleep(self.settings.grants_refresh_seconds)
            await self._refresh_grants()

    async def _refresh_grants(self) -> None:
        """Read the grants again; the objects of a namespace whose access changed are looked at now, so a
        grant taken back stops the next cloud call and a grant given ends the refusal."""
        if self._grants is None:
            return
        namespaces = {
            state.latest["metadata"]["namespace"] for state in self._states.values() if state.latest
        }
        for namespace in self.settings.namespaces:
            namespaces.add(namespace)
        changed = await self._grants.refresh(namespaces)
        for uid, state in list(self._states.items()):
            if state.latest and state.latest["metadata"]["namespace"] in changed:
                state.changed = True
                self._schedule(uid, 0.0)

    def _granted(self, resource: Resource) -> tuple[Resource, Failure | None]:
        """The object with what the grants allow its namespace, and why it may make no cloud call, if so."""
        access = Access() if self._grants is None else self._grants.access_for(resource.namespace)
        refusal = access.refusal(has_own_credentials=resource.spec.credentials_ref is not None)
        return replace(resource, access=access), refusal

    def start_scheduling(self) -> None:
        """Start running reconciles as they fall due (once per term; later calls do nothing).

        Called from kopf's watch handler: kopf.event finds kopf's event queue in context variables that
        kopf sets only for its object handlers, and the scheduler's tasks inherit the context they are
        started from.
        """
        if self._serve is None and self._scheduler is not None:
            self._serve = asyncio.create_task(self._scheduler.serve(), name="reconcile scheduler")

    def due_in(self, uid: str) -> float | None:
        """Seconds until the object's next reconcile; None when none is scheduled (or not serving)."""
        return None if self._scheduler is None else self._scheduler.due_in(uid)

    # -- the live object ------------------------------------------------------------------------------

    async def reconcile(self, state: ObjectState, *, trigger: str) -> Outcome:
        async with state.lock:
            started = time.monotonic()
            state.changed = False  # this reconcile reads the newest body: any change so far is seen
            current = state.latest
            assert current is not None, "an object is scheduled only once a body of it was seen"
            with _scope(current):
                outcome = await self._reconcile(current, state)
            metrics.observe_reconcile(outcome.result.value, trigger, time.monotonic() - started)
            self.record(state, outcome)  # and choose when the object's loop looks again
            return outcome

    def record(self, state: ObjectState, outcome: Outcome) -> None:
        """After a reconcile: the metrics, the failure count, and when the object's loop looks again."""
        body = state.latest or {}
        uid = body["metadata"]["uid"]
        metrics.OBJECTS.set_state(uid, outcome.reason)
        metrics.OBJECTS_SYNCED.set_state(uid, _synced(body))
        if outcome.first_ready and (created := _created_at(body)) is not None:
            metrics.TIME_TO_READY.observe(max(0.0, (datetime.now(UTC) - created).total_seconds()))
        healthy = outcome.result in (Result.READY, Result.PAUSED, Result.PROGRESSING)
        state.failures = 0 if healthy else state.failures + 1
        state.delay = next_delay(
            outcome.result,
            state.failures,
            self.settings,
            self._rng,
            outcome.requeue_after,
            resync_of(body, self.settings).seconds,
        )
        if outcome.result is Result.PROGRESSING:
            self._polling.add(uid)
        else:
            self._polling.discard(uid)
        self._wake_pollers_on_learning()

    def _wake_pollers_on_learning(self) -> None:
        learned = frozenset(self._reconciler.durations.known_kinds())
        if learned <= self._learned:
            return
        self._learned = learned
        for uid in self._polling:
            if (waiting := self._states.get(uid)) is not None:
                waiting.delay = 0.0
                self._schedule(uid, 0.0)

    async def _reconcile(self, body: Mapping[str, Any], state: ObjectState) -> Outcome:
        write, events = self._writer(body, state), KopfEvents(body)
        if (problem := resync_of(body, self.settings).problem) is not None:
            events.warning("InvalidAnnotation", problem)
        try:
            resource = Resource.from_body(body, self._policies)
        except InvalidObject as error:
            # The API server's schema refuses such objects; only a schema older than the operator lets one in.
            events.warning(r.INVALID_SPEC, str(error))
            return Outcome(Result.TERMINAL_ERROR, r.INVALID_SPEC)
        await self._release_replaced(resource, state)
        resource, refusal = self._granted(resource)
        if refusal is not None:  # outside every grant: not a single cloud call
            return await self._reconciler.report(resource, refusal, write, events)
        try:
            cloud = await self._credentials.client_for(resource, resource.access.borrowed())
        except Failure as failure:
            return await self._reconciler.report(resource, failure, write, events)
        await self._hold_credentials(resource)
        outcome = await self._reconciler.reconcile(resource, cloud, write, events)
        if outcome.reason in (r.CREDENTIALS_INVALID, r.PERMISSION_DENIED):
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

    async def _release_replaced(self, resource: Resource, state: ObjectState) -> None:
        """Release the Secrets this object named before its credentialsRef changed, unless others need
        them. Checked on every look while a check has not succeeded; no call when nothing changed."""
        ref = resource.spec.credentials_ref
        current = () if ref is None else (ref.name,)
        replaced = [name for name in state.credentials if name not in current]
        failed = tuple([name for name in replaced if not await self._released(resource, name)])
        state.credentials = current + failed

    async def _released(self, resource: Resource, secret_name: str) -> bool:
        try:
            await self._guard.release_if_unused(resource.namespace, secret_name)
        except SecretGuardError as error:
            log.warning("%s: cannot release the Secret it used before: %s", resource.ref, error)
            return False
        return True

    # -- deletion -------------------------------------------------------------------------------------

    async def finalize(self, body: Mapping[str, Any]) -> Outcome:
        state = self.state(body["metadata"]["uid"])
        async with state.lock:
            started = time.monotonic()
            current = state.freshest(body)
            with _scope(current):
                async with self._finalizing:
                    outcome = await self._finalize(current, state)
                if outcome.result in _RELEASED:
                    outcome = await self._release_credentials(current, state, outcome)
            metrics.observe_reconcile(outcome.result.value, "delete", time.monotonic() - started)
            if outcome.result in _RELEASED:
                metrics.OBJECTS.forget(current["metadata"]["uid"])
                state.failures = 0
            else:
                metrics.OBJECTS.set_state(current["metadata"]["uid"], outcome.reason)
                metrics.OBJECTS_SYNCED.set_state(current["metadata"]["uid"], _synced(state.latest or current))
                state.failures += 0 if outcome.result is Result.PROGRESSING else 1
            return outcome

    async def _finalize(self, body: Mapping[str, Any], state: ObjectState) -> Outcome:
        write, events = self._writer(body, state), KopfEvents(body)
        try:
            resource = Resource.from_body(body, self._policies)
        except InvalidObject as error:
            return self._release_invalid(body, events, error)
        resource, refusal = self._granted(resource)
        if refusal is not None and not resource.retains_image:
            # The grant was taken back: the finalizer still lets go, and says what it leaves behind.
            image = resource.status.image_id or "(none recorded)"
            events.warning(refusal.reason, f"{refusal.message} Cloud image {image} is left in the cloud.")
            return Outcome(Result.RETAINED, refusal.reason)
        return await self._finalize_resource(resource, write, events)

    async def _release_credentials(
        self, body: Mapping[str, Any], state: ObjectState, outcome: Outcome
    ) -> Outcome:
        """The object's cleanup is done: release the Secrets it named unless others still need them.

        Outside the bound on deletion steps: checks of one Secret are shared, so waiting for one makes no
        call. A failure keeps the object (and its finalizer) for another try: gone, it would leave no one
        to release its Secret.
        """
        metadata = body["metadata"]
        names = sorted({*state.credentials, *_credentials_names(body)})
        try:
            for name in names:
                await self._guard.release_if_unused(metadata["namespace"], name, leaving_uid=metadata["uid"])
        except SecretGuardError as error:
            log.warning("deleted, but its credentials Secret is not released yet: %s", error)
            return Outcome(Result.TRANSIENT_ERROR, r.RECONCILE_ERROR)
        return outcome

    async def _finalize_resource(
        self, resource: Resource, write: StatusWriter, events: KopfEvents
    ) -> Outcome:
        if resource.retains_image:
            return await self._reconciler.finalize(resource, None, write, events)
        try:
            # The credentials its reconciles used: a deletion with other ones would act as someone else.
            cloud = await self._credentials.client_for(resource, resource.access.borrowed())
        except Failure as failure:
            return await self._reconciler.report(
                resource, _blocked_deletion(resource, failure), write, events
            )
        return await self._reconciler.finalize(resource, cloud, write, events)

    def _release_invalid(self, body: Mapping[str, Any], events: KopfEvents, error: InvalidObject) -> Outcome:
        """An object no schema of ours accepts cannot be acted on; holding it would block its namespace."""
        image = (body.get("status") or {}).get("imageId")
        left = f"cloud image {image} is left in the cloud" if image else "no cloud image is known"
        events.warning(r.INVALID_SPEC, f"Released without cloud calls ({left}): {error}")
        return Outcome(Result.RETAINED, r.INVALID_SPEC)

    def forget(self, body: Mapping[str, Any]) -> None:
        """The object is gone from the API server: nothing of it is kept or scheduled."""
        uid = body["metadata"]["uid"]
        metrics.OBJECTS.forget(uid)
        self._states.pop(uid, None)
        self._guard.forget(uid)
        self._unschedule(uid)

    def deletion_retry_delay(self, body: Mapping[str, Any], outcome: Outcome) -> float:
        state = self.state(body["metadata"]["uid"])
        return next_delay(
            outcome.result, max(1, state.failures), self.settings, self._rng, outcome.requeue_after
        )

    # -- the schedule --------------------------------------------------------------------------------

    def notice(self, body: Mapping[str, Any]) -> None:
        """A watch event: keep the newest body; a change of what the user asks for is reconciled now."""
        uid = body["metadata"]["uid"]
        state = self.state(uid)
        current = state.freshest(body)
        if _deleting(current):
            self._unschedule(uid)  # kopf's deletion handler takes over
            return
        if not _finalized(current):
            # kopf adds the finalizer first, and its event brings the object back here. No copy starts
            # before a deletion is sure to wait for its cleanup, and no status write races kopf's patch
            # (which is conditional on the version it read, so a race would cost it a refused write).
            return
        intent = _intent(current)
        if state.intent is None:
            state.intent = intent
            if state.delay is None:
                state.delay = self._first_look(current)
                self._schedule(uid, state.delay)
        elif intent != state.intent:
            state.intent = intent
            state.changed = True
            self._schedule(uid, 0.0)

    def _first_look(self, body: Mapping[str, Any]) -> float:
        """When to look first at an object just seen (a new one, or every one after a restart).

        One that is settled (Ready at its generation, nothing running) is looked at some time within the
        resync period, chosen at random, so a restart with thousands of objects is no burst of reads.
        Anything else is looked at now.
        """
        if not _settled(body):
            return 0.0
        return self._rng.uniform(0.0, resync_of(body, self.settings).seconds)

    def _schedule(self, uid: str, delay: float) -> None:
        if self._scheduler is not None:
            self._scheduler.schedule(uid, delay)

    def _unschedule(self, uid: str) -> None:
        self._polling.discard(uid)
        if self._scheduler is not None:
            self._scheduler.cancel(uid)

    async def _run_scheduled(self, uid: str) -> float | None:
        """A reconcile that fell due; returns when the next one is due (None: the object is gone)."""
        state = self._states.get(uid)
        if state is None or (body := state.latest) is None or _deleting(body):
            return None
        trigger = "change" if state.changed else "scheduled" if state.looked else "start"
        state.looked = True
        await self._reconcile_in_loop(state, trigger)
        if self._states.get(uid) is not state or _deleting(state.latest or {}):
            return None
        return state.delay

    async def _reconcile_in_loop(self, state: ObjectState, trigger: str) -> None:
        try:
            await self.reconcile(state, trigger=trigger)
        except (StatusConflict, Fenced) as error:
            # No fault: the object changed since this reconcile read it (the next one starts from the
            # newest version a watch event brought), or this instance is not the leader any more.
            state.failures += 1
            state.delay = next_delay(Result.TRANSIENT_ERROR, state.failures, self.settings, self._rng)
            log.info("reconcile stopped: %s; looking again in %.1fs", error, state.delay)
        except Exception:  # the object must outlive a failed status write or a slow API server
            state.failures += 1
            state.delay = next_delay(Result.TRANSIENT_ERROR, state.failures, self.settings, self._rng)
            log.exception("reconcile failed; retrying in %.1fs", state.delay)

    def _writer(self, body: Mapping[str, Any], state: ObjectState) -> StatusWriter:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        # Each write is conditional on the version this reconcile worked from: the body it read, then what
        # its own last write returned. Anyone else's write in between (a successor leader's above all)
        # makes it a StatusConflict instead of an overwrite.
        version = str(body["metadata"].get("resourceVersion") or "")

        async def write(patch: dict[str, Any]) -> None:
            nonlocal version
            written = await self._kube.patch_status(namespace, name, patch, resource_version=version)
            metrics.STATUS_WRITES.inc()
            version = str(written["metadata"]["resourceVersion"])
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


def _credentials_names(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The Secret the body's spec.credentialsRef names, read from the raw body (a body no schema of
    ours accepts may still name one)."""
    name = ((body.get("spec") or {}).get("credentialsRef") or {}).get("name")
    return (name,) if isinstance(name, str) and name else ()


def _scope(body: Mapping[str, Any]) -> contextlib.AbstractContextManager[object]:
    metadata = body.get("metadata", {})
    return reconcile_scope(metadata.get("namespace", ""), metadata.get("name", ""), metadata.get("uid", ""))


def _deleting(body: Mapping[str, Any]) -> bool:
    return bool(body.get("metadata", {}).get("deletionTimestamp"))


def _finalized(body: Mapping[str, Any]) -> bool:
    return FINALIZER in (body.get("metadata", {}).get("finalizers") or ())


def _intent(body: Mapping[str, Any]) -> tuple[int, bytes]:
    """What the user asks for: the spec (by its generation) and the object's labels and annotations.

    Any annotation counts, not only the pause: annotating an object is how people ask for a look now.
    The operator's own deletion bookkeeping does not count.
    """
    metadata = body.get("metadata", {})
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if not k.startswith(PREFIX)}
    marks = json.dumps([annotations, metadata.get("labels") or {}], sort_keys=True)
    # A digest, not the text: it is kept per object, and only ever compared.
    return int(metadata.get("generation", 0)), hashlib.blake2b(marks.encode(), digest_size=16).digest()


def _settled(body: Mapping[str, Any]) -> bool:
    """Ready at the current generation with no operation running: nothing to do until the next resync.

    Read from the reconciler's own record (the last event it sent was Available), not from the conditions;
    only an object last written by an operator older than that record is judged by its Ready condition.
    """
    status = body.get("status") or {}
    generation = body.get("metadata", {}).get("generation")
    ready = status["lastEvent"] == r.AVAILABLE if "lastEvent" in status else _ready_before_records(body)
    return ready and status.get("observedGeneration") == generation and not status.get("operation")


def _ready_before_records(body: Mapping[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    ready = next((x for x in conditions if x.get("type") == CONDITION_READY), None) or {}
    return bool(
        ready.get("status") == "True"
        and ready.get("observedGeneration") == body["metadata"].get("generation")
    )


def _synced(body: Mapping[str, Any]) -> str:
    """The status of the object's Synced condition as the newest body shows it, our own write included: the
    condition itself, rather than a guess from the outcome (a retry that writes nothing leaves it as it was).
    """
    conditions = (body.get("status") or {}).get("conditions") or []
    synced = next((x for x in conditions if x.get("type") == CONDITION_SYNCED), None) or {}
    return str(synced.get("status", "Unknown"))


def _created_at(body: Mapping[str, Any]) -> datetime | None:
    created = body.get("metadata", {}).get("creationTimestamp")
    return datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
