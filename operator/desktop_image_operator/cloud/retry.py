"""When and how long to wait before repeating a failed cloud call."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from desktop_image_operator.base import Backoff
from desktop_image_operator.cloud.errors import CloudError

# Longest server-requested wait honoured by default: minutes, not the seconds of our own backoff.
DEFAULT_RETRY_AFTER_CAP = 600.0


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of transient errors only (`CloudError.retryable`), with capped full-jitter backoff.

    A server's retry hint (Retry-After / RetryInfo) is honoured even above `backoff.cap`, up to
    `retry_after_cap`: the server knows how long it needs, and only an absurd hint is cut short.
    """

    max_attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.retry_after_cap <= 0:
            raise ValueError("retry_after_cap must be > 0")

    def should_retry(self, error: CloudError, attempt: int) -> bool:
        """Whether to try again after `attempt` (1-based) failed with `error`."""
        return error.retryable and attempt < self.max_attempts

    def delay(self, error: CloudError, attempt: int, rng: random.Random) -> float:
        delay = self.backoff.full_jitter(attempt, rng)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.retry_after_cap))
        return delay
