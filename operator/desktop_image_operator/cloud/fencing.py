"""Fencing: cloud calls are allowed only while this instance's leadership is known to be valid.

The leader election grants the fence up to an instant on the monotonic clock (the start of its last
successful Lease renewal plus the renew deadline) and revokes it when it steps down. Every call checks
the fence right before it goes out, against the clock rather than against a flag the election loop sets,
so a process that was frozen (SIGSTOP, a long GC or VM pause) and wakes up after the deadline refuses its
next call even before the election loop has run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from desktop_image_operator.cloud.errors import CloudError, Code


class Fenced(CloudError):
    """This instance may not call the cloud now: it is not (or no longer provably) the leader."""

    def __init__(self, method: str) -> None:
        super().__init__(Code.CANCELLED, f"{method} not sent: this instance is not the leader")


class CallGate(Protocol):
    def check(self, method: str) -> None:
        """Return when a call of `method` may go out now; raise `Fenced` otherwise."""
        ...


class Fence:
    """A CallGate open until a monotonic instant; closed from the start."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._until = float("-inf")

    def grant(self, until: float) -> None:
        """Open the fence until `until` (monotonic seconds); an earlier instant than now keeps it shut."""
        self._until = until

    def revoke(self) -> None:
        self._until = float("-inf")

    @property
    def open(self) -> bool:
        return self._monotonic() < self._until

    def remaining(self) -> float:
        """Seconds until the fence closes (0 when closed)."""
        return max(0.0, self._until - self._monotonic())

    def check(self, method: str) -> None:
        if not self.open:
            raise Fenced(method)
