"""Leader election on a coordination.k8s.io/v1 Lease, with the timing rules of client-go.

A candidate takes the Lease when it is free (no holder, or released) or when its holder has not renewed
it for the Lease's duration, as measured on the candidate's own monotonic clock from the moment the
candidate first saw that version of the Lease (no clock comparison between machines). Every write is
conditional on the resourceVersion read just before, so two candidates never both win.

The leader renews every retry period. Its fence (see `base.Fence`) stays open until the start of the
last successful renewal plus the renew deadline, which is shorter than the Lease duration: a leader that
cannot renew stops acting before any standby may take over, even when it was frozen and never noticed.
A renewal that finds the Lease naming someone else, or gone, ends the leadership at once: whoever wrote
it (a standby, a person, a restore from a backup) may let another instance act from now on.

The kubernetes client's own `leaderelection` module is synchronous, sleeps in threads, never releases
the Lease and has no fence, so this one is written for asyncio. It creates no asyncio tasks of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from desktop_image_operator.base import Fence
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.kube import LeaseConflict, LeaseRecord
from desktop_image_operator.observability import metrics

log = logging.getLogger(__name__)

POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
FALLBACK_NAMESPACE = "default"
# Acquire attempts are spread a little (as client-go's 1.2 jitter factor) so standbys do not move in step.
_JITTER = 0.2
# Wake this long after a holder's Lease would expire, so the expiry check surely sees it expired.
_EXPIRY_MARGIN = 0.05
_MIN_CALL_TIMEOUT = 0.1


class LeaseLost(Exception):
    """While leading, the Lease was found naming another holder, or gone; the message says which."""


class LeaseStore(Protocol):
    async def read_lease(self, namespace: str, name: str, *, within: float) -> LeaseRecord | None: ...

    async def create_lease(
        self, namespace: str, name: str, record: LeaseRecord, *, within: float
    ) -> LeaseRecord: ...

    async def replace_lease(
        self, namespace: str, name: str, record: LeaseRecord, *, within: float
    ) -> LeaseRecord: ...


@dataclass(frozen=True)
class ElectionConfig:
    name: str
    namespace: str
    identity: str
    lease_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_seconds: float = 2.0
    call_timeout_seconds: float = 10.0

    @classmethod
    def from_settings(
        cls, settings: RunSettings, namespace_file: Path = POD_NAMESPACE_FILE
    ) -> ElectionConfig:
        return cls(
            name=settings.lease_name,
            namespace=lease_namespace(settings, namespace_file),
            identity=instance_identity(settings),
            lease_seconds=settings.lease_duration_seconds,
            renew_deadline_seconds=settings.renew_deadline_seconds,
            retry_seconds=settings.retry_period_seconds,
            call_timeout_seconds=min(settings.kube_timeout_seconds, settings.renew_deadline_seconds),
        )

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"


def lease_namespace(settings: RunSettings, namespace_file: Path = POD_NAMESPACE_FILE) -> str:
    """The option, else the pod's own namespace, else the one namespace watched, else `default`."""
    if settings.lease_namespace:
        return settings.lease_namespace
    try:
        own = namespace_file.read_text().strip()
    except OSError:
        own = ""
    if own:
        return own
    return settings.namespaces[0] if len(settings.namespaces) == 1 else FALLBACK_NAMESPACE


def instance_identity(settings: RunSettings) -> str:
    """The option (the chart passes the pod name), else the host name with a random suffix: two
    processes on one host must never share an identity, or both would think they hold the Lease."""
    return settings.leader_identity or f"{socket.gethostname()}-{secrets.token_hex(4)}"


class LeaderElection:
    def __init__(
        self,
        store: LeaseStore,
        config: ElectionConfig,
        *,
        fence: Fence | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.fence = fence or Fence(monotonic)
        self._store = store
        self._monotonic = monotonic
        self._wall = wall
        self._rng = rng or random.Random()
        self._seen: LeaseRecord | None = None  # the Lease as last read
        self._seen_at = 0.0  # when we first saw that version of it (monotonic)
        self._written: LeaseRecord | None = None  # the Lease as our last successful write left it
        self._attempted_at = 0.0  # when the last renewal started (monotonic)
        self.leading = False

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Try every retry period until this instance holds the Lease (True) or `stop` is set (False)."""
        while not stop.is_set():
            started = self._monotonic()
            if await self._try(started + self.config.call_timeout_seconds):
                self._lead(started)
                return True
            if await wait_for_event(stop, self._pause()):
                break
        return False

    async def hold(self) -> None:
        """Renew every retry period (counted from the start of the last attempt); return at once when the
        Lease names someone else or is gone, or once renewals failed for the whole renew deadline (the
        fence has closed by then). Leadership ends when this returns or is cancelled."""
        try:
            while True:
                await asyncio.sleep(min(self._until_next_attempt(), self.fence.remaining()))
                if not self.fence.open:
                    log.error("%s could not renew Lease %s in time", self.config.identity, self.config.lease)
                    return
                started = self._attempted_at = self._monotonic()
                if await self._try(started + self.fence.remaining(), holding=True):
                    self.fence.grant(started + self.config.renew_deadline_seconds)
        except LeaseLost as lost:
            self._written = None  # nothing of ours to hand back any more
            log.warning("%s lost Lease %s: %s", self.config.identity, self.config.lease, lost)
        finally:
            self.step_down()

    def step_down(self) -> None:
        """Stop acting at once: the fence shuts (cancelling the calls in flight under it) whatever happens
        to the Lease, and the metrics show a standby."""
        self.fence.revoke()
        metrics.stand_by()
        if self.leading:
            self.leading = False
            log.warning("%s stopped leading", self.config.identity)

    async def release(self) -> None:
        """Step down and hand the Lease back, if it still names us, so a standby need not wait it out."""
        self.step_down()
        mine = self._written
        if mine is None or mine.holder != self.config.identity:
            return
        now = self._wall()
        freed = LeaseRecord(
            holder="",
            duration_seconds=1,
            acquired_at=now,
            renewed_at=now,
            transitions=mine.transitions,
            resource_version=mine.resource_version,
        )
        try:
            self._written = await self._store.replace_lease(
                self.config.namespace, self.config.name, freed, within=self.config.call_timeout_seconds
            )
        except Exception as error:  # someone took it meanwhile, or the API server is away: nothing to do
            log.warning("%s could not release Lease %s: %s", self.config.identity, self.config.lease, error)
            return
        log.info("%s released Lease %s", self.config.identity, self.config.lease)

    # -- one attempt --------------------------------------------------------------------------------------

    async def _try(self, deadline: float, *, holding: bool = False) -> bool:
        """One read and at most one write; True when the Lease now names us. Raises only LeaseLost, when
        `holding` (renewing as the leader) and the Lease names someone else or is gone."""
        try:
            return await self._try_once(deadline, holding=holding)
        except LeaseLost:
            raise
        except LeaseConflict:
            log.debug("%s lost a race for Lease %s", self.config.identity, self.config.lease)
        except Exception as error:  # the election must outlive a slow or absent API server
            log.warning(
                "%s could not reach Lease %s: %s: %s",
                self.config.identity,
                self.config.lease,
                type(error).__name__,
                error,
            )
        return False

    async def _try_once(self, deadline: float, *, holding: bool) -> bool:
        config = self.config
        current = await self._store.read_lease(config.namespace, config.name, within=self._left(deadline))
        if current is not None:
            self._observe(current)
        if holding:
            _check_held(current, config.identity)
        elif self._held_by_another(current):
            return False
        claim = self._claim(current)
        write = self._store.create_lease if current is None else self._store.replace_lease
        self._written = await write(config.namespace, config.name, claim, within=self._left(deadline))
        return True

    def _claim(self, current: LeaseRecord | None) -> LeaseRecord:
        now, me = self._wall(), self.config.identity
        renewing = current is not None and current.holder == me
        transitions = 0 if current is None else current.transitions + (0 if renewing else 1)
        return LeaseRecord(
            holder=me,
            duration_seconds=math.ceil(self.config.lease_seconds),
            acquired_at=current.acquired_at if renewing and current is not None else now,
            renewed_at=now,
            transitions=transitions,
            resource_version="" if current is None else current.resource_version,
        )

    def _held_by_another(self, current: LeaseRecord | None) -> bool:
        return (
            current is not None
            and current.holder not in ("", self.config.identity)
            and not self._expired(current)
        )

    def _observe(self, record: LeaseRecord) -> None:
        if self._seen is None or self._seen.resource_version != record.resource_version:
            self._seen_at = self._monotonic()
        self._seen = record

    def _expires_in(self) -> float:
        """Seconds until the Lease last read expires by our clock (counted from when we saw it change)."""
        if self._seen is None:
            return 0.0
        duration = self._seen.duration_seconds
        return self._seen_at + (duration if duration > 0 else self.config.lease_seconds) - self._monotonic()

    def _expired(self, record: LeaseRecord) -> bool:
        return self._seen is record and self._expires_in() <= 0

    def _until_next_attempt(self) -> float:
        """Seconds until the next renewal is due: a slow attempt does not push the next one further out."""
        return max(0.0, self._attempted_at + self.config.retry_seconds - self._monotonic())

    def _pause(self) -> float:
        """The retry period (jittered), cut short to just after the holder's Lease expires."""
        pause = self.config.retry_seconds * (1 + self._rng.uniform(0, _JITTER))
        if self._seen is not None and self._seen.holder:
            pause = min(pause, max(_EXPIRY_MARGIN, self._expires_in() + _EXPIRY_MARGIN))
        return pause

    def _left(self, deadline: float) -> float:
        return max(_MIN_CALL_TIMEOUT, deadline - self._monotonic())

    def _lead(self, started: float) -> None:
        self.fence.grant(started + self.config.renew_deadline_seconds)
        self._attempted_at = started
        self.leading = True
        metrics.lead()
        log.info("%s is the leader now (Lease %s)", self.config.identity, self.config.lease)


def _check_held(current: LeaseRecord | None, identity: str) -> None:
    """LeaseLost unless the Lease read names `identity`. Written by someone else, it may let a standby
    act already: a free or missing Lease is taken at its next attempt, without waiting for an expiry."""
    if current is None:
        raise LeaseLost("the Lease is gone")
    if current.holder != identity:
        raise LeaseLost(f"it names {current.holder or 'no holder'} now")


async def wait_for_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` at most `seconds`; True when it is set. Creates no task (kopf, when it stops,
    cancels every task that appeared while it ran)."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
