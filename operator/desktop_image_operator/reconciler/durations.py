"""How long the cloud's operations take here: learned from the ones that finished, to poll at the right time.

A copy of the same kind of image takes about as long as the last ones did. Polling when an operation is
expected to end (then, if it is late, after growing pauses) sees short copies finish without overshoot
and costs a handful of polls for long ones. Before anything is learned, the pauses grow with the age of
the operation. The cloud's own timestamps are used, so poll overshoot does not inflate the estimate.
"""

from __future__ import annotations

import statistics
from collections import deque

from desktop_image_operator.api import OperationKind

_WINDOW = 16  # recent operations per kind: enough for a stable median, quick to follow a change


class OperationDurations:
    def __init__(self) -> None:
        self._seen: dict[OperationKind, deque[float]] = {}

    def observe(self, kind: OperationKind, seconds: float) -> None:
        self._seen.setdefault(kind, deque(maxlen=_WINDOW)).append(seconds)

    def known_kinds(self) -> frozenset[OperationKind]:
        """The kinds whose duration has been learned."""
        return frozenset(self._seen)

    def expected(self, kind: OperationKind) -> float | None:
        """The median of the recent durations of this kind, or None before the first one finished."""
        seen = self._seen.get(kind)
        return statistics.median(seen) if seen else None
