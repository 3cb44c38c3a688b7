"""Clocks that tests move by hand."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class ManualClock:
    """Wall-clock seconds that move only when the test says; starts at the real time so that JWTs and the
    fake cloud's tokens made now are valid."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)
