"""Ctrl-C and termination requests in the long-running development commands (`controlplane`, `dev`)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType


class Interrupted(BaseException):
    """SIGINT or SIGTERM. A BaseException, so no `except Exception` on the way swallows it."""


class Interrupts:
    """Turns the first SIGINT or SIGTERM into `Interrupted`; once disarmed (cleanup), signals are ignored."""

    def __init__(self) -> None:
        self.armed = True

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.armed:
            self.armed = False  # a second Ctrl-C must not cut the cleanup short
            raise Interrupted(signal.Signals(signum).name)

    def disarm(self) -> None:
        self.armed = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def wait_for_interrupt() -> None:
    """Block until SIGINT or SIGTERM arrives. Handlers are restored afterwards."""
    with Interrupts().installed(), contextlib.suppress(Interrupted):
        while True:
            signal.pause()
