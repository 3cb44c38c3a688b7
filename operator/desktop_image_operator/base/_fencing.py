"""Fencing: writes (cloud calls, Kubernetes writes) go out only while this leadership is known valid.

The leader election grants the fence up to an instant on the monotonic clock (the start of its last
successful Lease renewal plus the renew deadline) and revokes it when it steps down. Every call checks
the fence right before it goes out, against the clock rather than against a flag the election loop sets,
so a process that was frozen (SIGSTOP, a long GC or VM pause) and wakes up after the deadline refuses its
next call even before the election loop has run again.

A check only covers the instant it is made, so two more rules close the gaps around it: a request that
goes out carries a deadline no later than the fence's instant (`remaining()`), and the calls in flight
under `guard()` are cancelled when the fence is revoked. What the fence refuses or cancels surfaces as
`Fenced`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol


class Fenced(Exception):
    """This instance may not write now, to the cloud or to Kubernetes: it is not (or no longer provably)
    the leader. Raised for a call the fence refused or cancelled, whose outcome is then unknown."""

    def __init__(self, method: str) -> None:
        super().__init__(f"{method} not sent: this instance is not the leader")
        self.method = method


class CallGate(Protocol):
    def check(self, method: str) -> None:
        """Return when a call of `method` may go out now; raise `Fenced` otherwise."""
        ...

    def remaining(self) -> float:
        """Seconds a call going out now may take at most (0 when none may go out)."""
        ...

    def guard(self, method: str) -> AbstractAsyncContextManager[None]:
        """Run a call of `method` in the current task: refused at once when the gate is shut, cancelled
        (raising `Fenced`) when it shuts meanwhile."""
        ...


class Fence:
    """A CallGate open until a monotonic instant; closed from the start."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._until = float("-inf")
        self._guards: set[_Guard] = set()

    def grant(self, until: float) -> None:
        """Open the fence until `until` (monotonic seconds); an earlier instant than now keeps it shut."""
        self._until = until

    def revoke(self) -> None:
        """Shut the fence and cancel every call in flight under it."""
        self._until = float("-inf")
        for guard in list(self._guards):
            guard.cancel()

    @property
    def open(self) -> bool:
        return self._monotonic() < self._until

    @property
    def in_flight(self) -> int:
        """Calls running under `guard()` now."""
        return len(self._guards)

    def remaining(self) -> float:
        """Seconds until the fence closes (0 when closed)."""
        return max(0.0, self._until - self._monotonic())

    def check(self, method: str) -> None:
        if not self.open:
            raise Fenced(method)

    def guard(self, method: str) -> AbstractAsyncContextManager[None]:
        return _Guard(self, method)

    def _enter(self, guard: _Guard) -> None:
        self.check(guard.method)
        self._guards.add(guard)

    def _leave(self, guard: _Guard) -> None:
        self._guards.discard(guard)


class _Guard:
    """One call under the fence, in one task. A revocation cancels that task; the cancellation is turned
    into `Fenced` here, as `asyncio.timeout` turns its own into TimeoutError: only when no other
    cancellation of the task is pending, so shutting the task down from outside still works."""

    def __init__(self, fence: Fence, method: str) -> None:
        self.method = method
        self._fence = fence
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._cancelled = False

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a fenced call must run in a task")
        self._task, self._cancelling = task, task.cancelling()
        self._fence._enter(self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._fence._leave(self)
        if not self._cancelled or self._task is None:
            return
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise Fenced(self.method) from None

    def cancel(self) -> None:
        if self._task is not None and not self._cancelled:
            self._cancelled = True
            self._task.cancel()
