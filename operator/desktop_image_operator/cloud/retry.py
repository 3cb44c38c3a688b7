"""When and how long to wait before repeating a failed cloud call."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from desktop_image_operator.cloud.backoff import Backoff
from desktop_image_operator.cloud.errors import CloudError


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of transient errors only (`CloudError.retryable`), with capped full-jitter backoff.

    A server's retry hint (Retry-After / RetryInfo) raises the delay, never beyond `backoff.cap`.
    """

    max_attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def should_retry(self, error: CloudError, attempt: int) -> bool:
        """Whether to try again after `attempt` (1-based) failed with `error`."""
        return error.retryable and attempt < self.max_attempts

    def delay(self, error: CloudError, attempt: int, rng: random.Random) -> float:
        delay = self.backoff.full_jitter(attempt, rng)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.backoff.cap))
        return delay
