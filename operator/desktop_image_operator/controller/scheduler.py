"""One timer for every object: when each is reconciled next, and how many reconciles run at once.

An object costs the scheduler one due time and one heap entry while it waits, whatever the number of
objects: no task, event or timer of its own. Reconciles mostly wait on cloud and Kubernetes calls, which
have their own bounds; the worker limit keeps the ones that could not proceed anyway from piling up as
coroutines (each holding its object's state) and keeps the order of due times.

Rules:
- a key has at most one due time: scheduling it again replaces it;
- a key never runs twice at once. Asked for while it runs, it runs again at the sooner of that time and
  the time its run chooses when it ends (a change seen mid-run is never lost);
- a run returns the delay to its next run, or None to stop scheduling the key (the object is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Job = Callable[[str], Awaitable[float | None]]
# A run that fails unexpectedly (the job is meant to handle its own errors) is tried again after this.
_AFTER_CRASH_SECONDS = 5.0
_STOP_SECONDS = 5.0


class Scheduler:
    def __init__(self, job: Job, *, workers: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._job = job
        self._clock = clock
        self._slots = asyncio.Semaphore(workers)
        self._due: dict[str, float] = {}  # keys waiting to run, and when they fall due
        self._heap: list[tuple[float, str]] = []  # the same; entries replaced since are skipped when met
        self._running: dict[str, float | None] = {}  # keys running, and a due time asked for meanwhile
        self._cancelled: set[str] = set()  # keys running whose schedule was cancelled meanwhile
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, key: str, delay: float) -> None:
        """Run `key` after `delay` seconds (replacing any earlier choice)."""
        self._schedule_at(key, self._clock() + max(0.0, delay))

    def cancel(self, key: str) -> None:
        """Stop scheduling `key`; a run in progress finishes, and is not followed by another."""
        self._due.pop(key, None)
        if key in self._running:
            self._running[key] = None
            self._cancelled.add(key)

    def due_in(self, key: str) -> float | None:
        """Seconds until `key` runs (0 when overdue), None when it is not waiting."""
        due = self._due.get(key)
        return None if due is None else max(0.0, due - self._clock())

    def running(self, key: str) -> bool:
        return key in self._running

    def __len__(self) -> int:
        return len(self._due) + len(self._running)

    async def serve(self) -> None:
        """Start runs as they fall due, at most `workers` at once; until cancelled."""
        try:
            while True:
                await self._slots.acquire()
                try:
                    key = await self._next_due()
                except BaseException:
                    self._slots.release()
                    raise
                self._start(key)
        finally:
            await self._stop_runs()

    # -- internals ------------------------------------------------------------------------------------

    def _schedule_at(self, key: str, due: float) -> None:
        if key in self._running:
            asked = self._running[key]
            self._running[key] = due if asked is None else min(asked, due)
            self._cancelled.discard(key)
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))
        if self._heap[0] == (due, key):
            self._wakeup.set()  # sooner than whatever the timer waits for

    async def _next_due(self) -> str:
        while True:
            self._wakeup.clear()
            wait = self._seconds_to_first()
            if wait is not None and wait <= 0:
                return heapq.heappop(self._heap)[1]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()

    def _seconds_to_first(self) -> float | None:
        """Seconds until the first waiting key falls due; None when none waits. Drops replaced entries."""
        while self._heap:
            due, key = self._heap[0]
            if self._due.get(key) == due:
                return due - self._clock()
            heapq.heappop(self._heap)
        return None

    def _start(self, key: str) -> None:
        del self._due[key]
        self._running[key] = None
        task = asyncio.create_task(self._run(key), name=f"reconcile {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: str) -> None:
        delay: float | None = None
        try:
            delay = await self._job(key)
        except Exception:  # the job handles its own failures; this is a bug, and must not stop the object
            log.exception("reconcile of %s crashed; trying again in %.0fs", key, _AFTER_CRASH_SECONDS)
            delay = _AFTER_CRASH_SECONDS
        finally:
            asked = self._running.pop(key, None)
            self._slots.release()
        if key in self._cancelled:
            self._cancelled.discard(key)
        elif delay is not None:
            due = self._clock() + max(0.0, delay)
            self._schedule_at(key, due if asked is None else min(due, asked))

    async def _stop_runs(self) -> None:
        """Runs in progress get a moment to finish their step, then are cancelled."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=_STOP_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_STOP_SECONDS)
