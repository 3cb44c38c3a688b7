"""Waiting for Ctrl-C or a termination request in the long-running development commands."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def wait_for_interrupt() -> signal.Signals:
    """Block until SIGINT or SIGTERM arrives; return which one. Handlers are restored afterwards."""
    received: list[signal.Signals] = []
    event = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum))
        event.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not event.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0]
