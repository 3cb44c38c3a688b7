"""Capped exponential backoff with jitter, as a pure calculation (the caller sleeps): the one policy for
the cloud client's retries, the reconciler's retries of failed operations and the controller's schedule."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before retry `attempt` (1 = the first retry): at most min(cap, base * factor**(attempt-1)).

    Full jitter (uniform in [0, ceiling]) spreads retries of many clients best; polling uses equal jitter
    (uniform in [ceiling/2, ceiling]) so it never spins.
    """

    base: float = 0.5
    cap: float = 30.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base or self.factor < 1:
            raise ValueError("backoff needs 0 < base <= cap and factor >= 1")

    def ceiling(self, attempt: int) -> float:
        # Cap the exponent too, so a large attempt number cannot overflow the float.
        exponent = min(max(attempt, 1) - 1, 64)
        return min(self.cap, self.base * self.factor**exponent)

    def full_jitter(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.ceiling(attempt))

    def equal_jitter(self, attempt: int, rng: random.Random) -> float:
        ceiling = self.ceiling(attempt)
        return rng.uniform(ceiling / 2, ceiling)
