"""Credentials Secrets kept current by a watch each, so using one costs no call while it is unchanged.

The first use of a Secret reads it (one GET) and starts a watch of that Secret alone (a field selector
on its name) from the version read. The watch's events replace the kept copy; a deletion drops it. A
copy is trusted only while its watch runs: when the watch breaks (no answer within its read timeout,
the connection lost, a 5xx) the copy is not trusted until the watch is opened again from the last
version it saw, and when that fails a few times, or the version expired (410 Gone), the copy is dropped
and the next use reads the Secret again. A Secret no object used for a while is no longer watched.

One watch per Secret, not one per namespace: with 12 Secrets in use in a namespace of 30 other Secrets
changing 3 times each, per-Secret watches held 12 connections, made 12 GETs and received the 12 events
that mattered (6 KB). One namespace watch held 1 connection but received all 132 events: with their
data (541 KB, the key material of Secrets the operator has no business holding) or metadata only (60
KB, then a GET per change of a Secret in use: 24 GETs). A label selector would need labels on the
users' Secrets, and a field selector cannot name a set. A watch costs one task and one TLS connection,
from a pool without a bound, so the watches grow with the Secrets in use: about 65 KB each (400 watches,
25.2 MB; `make bench-watches`), where a thread each took about 113 KB.

Each watch is a task on the event loop making one long request at a time: the server ends each after
`WATCH_SECONDS`, and the task asks again from the last version it saw. Stopping a watch cancels its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import httpx

from desktop_image_operator.kube._api import KubeApi, SecretMeta, SecretSnapshot, secret_snapshot
from desktop_image_operator.kube._errors import KubeApiError
from desktop_image_operator.kube._transport import WatchStream

log = logging.getLogger(__name__)

# How long one watch request lasts on the server, and how much longer the socket's read timeout waits.
# The server sends nothing while the Secret is unchanged, so the read timeout must outlast a request,
# and it bounds how long a connection that went silent can go unnoticed (30 s): a copy is trusted that
# long at most after its watch went deaf. Reopening costs one request and no read (it resumes from the
# last version), so a short request is cheap.
WATCH_SECONDS = 25
READ_SLACK_SECONDS = 5.0
# Pauses before opening a broken watch again; after as many breaks in a row the watch ends (after two
# when both were timeouts: a server that stays silent is given up about 60 s after it fell silent).
REOPEN_PAUSES = (0.5, 2.0, 5.0)
# Answers after which a watch is opened again: the API server is busy or restarting, not refusing.
_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# Without permission to watch (RBAC from before watches), a copy is kept this long and then read again.
UNWATCHED_SECONDS = 60.0

_Key = tuple[str, str]  # namespace, Secret name


class WatchEnd(enum.Enum):
    IDLE = "no longer used"
    STOPPED = "stopped"
    EXPIRED = "expired"  # 410 Gone: the version it resumed from is too old
    FORBIDDEN = "not allowed"
    FAILED = "failed"


class WatchListener(Protocol):
    """What a watch reports to; called from the watch's own task."""

    def changed(self, snapshot: SecretSnapshot | None) -> None:
        """The Secret as it is now; None when it was deleted."""

    def following(self, connected: bool) -> None:
        """False: the watch broke and is being opened again; True: it is back, from the last version."""

    def ended(self, why: WatchEnd) -> None:
        """The watch is over and reports nothing more."""

    def wanted(self) -> bool:
        """Asked before each request: False ends the watch (IDLE)."""


class Watching(Protocol):
    def stop(self) -> None:
        """End the watch soon; it then reports STOPPED (or nothing, when already over)."""


class WatchSource(Protocol):
    def watch(self, namespace: str, name: str, since: str, listener: WatchListener) -> Watching:
        """Watch one Secret for changes after version `since`."""

    def close(self) -> None:
        """Stop every watch."""


class SecretReader(Protocol):
    async def read_secret(self, namespace: str, name: str) -> SecretSnapshot: ...

    def saw_secret(self, namespace: str, name: str, meta: SecretMeta | None) -> None: ...


class SecretCache:
    """The credentials Secrets in use, each read once and then kept current by its watch."""

    def __init__(
        self,
        reader: SecretReader,
        watches: WatchSource,
        *,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        on_read: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_read` is told of each read of a Secret (the metrics count them: the client imports none)."""
        self._reader = reader
        self._on_read = on_read
        self._watches = watches
        self._idle = idle_seconds
        self._clock = clock
        self._entries: dict[_Key, _Entry] = {}
        self._locks: dict[_Key, asyncio.Lock] = {}
        self._warned: set[_Key] = set()
        self._closed = False

    async def get(self, namespace: str, name: str) -> SecretSnapshot:
        """The Secret as it is now; SecretUnavailable when it does not exist or may not be read."""
        key = (namespace, name)
        entry = self._trusted(key)
        if entry is None:
            # One read for all the objects that need the Secret at once.
            async with self._locks.setdefault(key, asyncio.Lock()):
                entry = self._trusted(key) or await self._load(key)
        entry.last_used = self._clock()
        return entry.snapshot

    def forget(self, namespace: str, name: str) -> None:
        """Read the Secret again at its next use."""
        self._drop((namespace, name))

    def clear(self) -> None:
        """Forget every Secret (and stop watching it)."""
        for key in list(self._entries):
            self._drop(key)

    def close(self) -> None:
        """Stop all watches; later uses read the Secret every time."""
        self._closed = True
        self.clear()
        self._watches.close()

    @property
    def watched(self) -> int:
        return sum(1 for entry in self._entries.values() if entry.live)

    def _trusted(self, key: _Key) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None or entry.live or self._clock() < entry.unwatched_until:
            return entry
        return None

    async def _load(self, key: _Key) -> _Entry:
        self._drop(key)
        self._on_read()
        snapshot = await self._reader.read_secret(*key)
        entry = _Entry(self, key, snapshot)
        if self._closed:
            return entry
        self._entries[key] = entry
        entry.watching = self._watches.watch(*key, snapshot.meta.resource_version, entry)
        return entry

    def _drop(self, key: _Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            entry.retire()

    def _changed(self, entry: _Entry, snapshot: SecretSnapshot | None) -> None:
        if self._entries.get(entry.key) is not entry:
            return  # from a watch replaced meanwhile
        self._reader.saw_secret(*entry.key, snapshot.meta if snapshot else None)
        if snapshot is None:
            self._drop(entry.key)
        else:
            entry.snapshot = snapshot

    def _ended(self, entry: _Entry, why: WatchEnd) -> None:
        if self._entries.get(entry.key) is not entry:
            return
        if why is not WatchEnd.FORBIDDEN:
            log.debug("watch of Secret %s/%s ended (%s)", *entry.key, why.value)
            self._drop(entry.key)
            return
        if entry.key not in self._warned:
            self._warned.add(entry.key)
            log.warning(
                "may not watch Secret %s/%s (RBAC lacks list and watch on secrets): reading it every %g s",
                *entry.key,
                UNWATCHED_SECONDS,
            )
        entry.unwatched_until = entry.read_at + UNWATCHED_SECONDS


class _Entry:
    """One kept Secret and the listener of its watch."""

    def __init__(self, cache: SecretCache, key: _Key, snapshot: SecretSnapshot) -> None:
        self.key = key
        self.snapshot = snapshot
        self.read_at = self.last_used = cache._clock()
        self.unwatched_until = float("-inf")
        self.watching: Watching | None = None
        # Set the moment the watch breaks or ends: from then on the copy is not trusted.
        self.connected = True
        self.retired = False
        self._cache = cache

    @property
    def live(self) -> bool:
        return self.connected and not self.retired

    def retire(self) -> None:
        self.retired = True
        if self.watching is not None:
            self.watching.stop()

    def changed(self, snapshot: SecretSnapshot | None) -> None:
        self._cache._changed(self, snapshot)

    def following(self, connected: bool) -> None:
        self.connected = connected

    def ended(self, why: WatchEnd) -> None:
        self.connected = False
        self._cache._ended(self, why)

    def wanted(self) -> bool:
        return not self.retired and self._cache._clock() - self.last_used < self._cache._idle


class SecretWatches:
    """The real WatchSource: one task per watch, over the KubeApi's watch requests."""

    def __init__(
        self,
        kube: KubeApi,
        *,
        seconds: int = WATCH_SECONDS,
        read_slack: float = READ_SLACK_SECONDS,
        reopen_pauses: Sequence[float] = REOPEN_PAUSES,
    ) -> None:
        self._kube = kube
        self._seconds = seconds
        self._read_slack = read_slack
        self.reopen_pauses = tuple(reopen_pauses)
        self._running: set[_SecretWatch] = set()

    def watch(self, namespace: str, name: str, since: str, listener: WatchListener) -> Watching:
        watch = _SecretWatch(self, (namespace, name), since, listener)
        self._running.add(watch)
        watch.task.add_done_callback(lambda _: self._running.discard(watch))
        return watch

    def close(self) -> None:
        for watch in list(self._running):
            watch.stop()

    @property
    def running(self) -> int:
        return len(self._running)

    async def open(self, key: _Key, since: str) -> WatchStream:
        return await self._kube.open_secret_watch(*key, since, self._seconds, read_slack=self._read_slack)


class _SecretWatch:
    """Watch one Secret until it is no longer wanted, stopped, or the watch breaks for good."""

    def __init__(self, source: SecretWatches, key: _Key, since: str, listener: WatchListener) -> None:
        self._source = source
        self._key = key
        self._version = since
        self._listener = listener
        self._stopped = False
        self._started = False
        self._connected = True  # as the listener was last told
        self._breaks = 0  # in a row, since a request last delivered an event or ended as the server ends it
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"secret-watch {key[0]}/{key[1]}"
        )

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            if self._started:  # a task cancelled before its first step would never report its end
                self.task.cancel()

    async def _run(self) -> None:
        self._started = True
        if self._stopped:
            self._listener.ended(WatchEnd.STOPPED)
            return
        try:
            why = await self._follow_while_wanted()
        except asyncio.CancelledError:
            if not self._stopped:
                raise  # the loop is shutting down: nobody is listening any more
            self.task.uncancel()
            why = WatchEnd.STOPPED
        self._listener.ended(why)

    async def _follow_while_wanted(self) -> WatchEnd:
        while self._listener.wanted():
            try:
                await self._follow_once()
            except Exception as error:  # whatever broke the stream, the copy can no longer be trusted
                why = await self._after_break(error)
                if why is not None:
                    return why
        return WatchEnd.IDLE

    async def _after_break(self, error: Exception) -> WatchEnd | None:
        """How the watch ends after this error; None once it may be opened again (after a pause)."""
        # The type only: a message could quote what the stream carried.
        log.debug("watch of Secret %s/%s broke: %s", *self._key, type(error).__name__)
        why = _ending_after(error)
        pauses = self._source.reopen_pauses
        # A server silent again after a reopen is given up at once: each wait for it is a read timeout.
        silent_again = self._breaks > 0 and isinstance(error, httpx.TimeoutException)
        if why is not None or silent_again or self._breaks >= len(pauses):
            return why or WatchEnd.FAILED
        self._tell_connected(False)
        await asyncio.sleep(pauses[self._breaks])
        self._breaks += 1
        return None

    async def _follow_once(self) -> None:
        stream = await self._source.open(self._key, self._version)
        try:
            # Resumed from the last version seen: the events missed meanwhile come first.
            self._tell_connected(True)
            async for line in stream.lines():
                self._breaks = 0
                self._handle(json.loads(line))
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()
        self._breaks = 0

    def _tell_connected(self, connected: bool) -> None:
        if connected != self._connected:
            self._connected = connected
            self._listener.following(connected)

    def _handle(self, event: dict[str, Any]) -> None:
        kind, body = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            code = body.get("code")
            raise KubeApiError(f"watch of Secret {self._key[0]}/{self._key[1]}", code or 0, "in the stream")
        self._version = (body.get("metadata") or {}).get("resourceVersion") or self._version
        if kind == "DELETED":
            self._listener.changed(None)
        elif kind in ("ADDED", "MODIFIED"):
            self._listener.changed(secret_snapshot(body))


def _ending_after(error: Exception) -> WatchEnd | None:
    """How an error ends a watch; None when the watch may be opened again (the server may be back)."""
    if isinstance(error, KubeApiError):
        return None if error.status in _TRANSIENT_STATUSES else _ending_of(error.status)
    if isinstance(error, httpx.TransportError):  # no answer in time, the connection lost or refused
        return None
    return WatchEnd.FAILED


def _ending_of(status: int | None) -> WatchEnd:
    if status == 410:
        return WatchEnd.EXPIRED
    if status == 403:
        return WatchEnd.FORBIDDEN
    return WatchEnd.FAILED
