"""Client-side limits shared by every cloud call of a session: a concurrency cap, a request rate (token
bucket) and a cool-down that a 429 / RESOURCE_EXHAUSTED imposes on all calls, not just the one refused."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from desktop_image_operator.base import SYSTEM_CLOCK, Clock
from desktop_image_operator.cloud.retry import DEFAULT_RETRY_AFTER_CAP

log = logging.getLogger(__name__)

# How often one call re-checks a cool-down that keeps being extended before going ahead anyway.
_MAX_COOLDOWN_ROUNDS = 20


class TokenBucket:
    """At most `rate` starts per second on average, `burst` at once.

    Implemented as a virtual schedule (GCRA): each caller reserves the next free start time without
    awaiting, so waiters are served in arrival order and the rate holds exactly under concurrency.
    """

    def __init__(self, rate: float, burst: int = 1, *, clock: Clock = SYSTEM_CLOCK) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._clock = clock
        self._interval = 1.0 / rate
        self._tolerance = (burst - 1) * self._interval
        self._next_start = clock.monotonic() - self._tolerance

    def reserve(self) -> float:
        """Reserve a start slot; returns how long to wait before starting."""
        now = self._clock.monotonic()
        theoretical = max(self._next_start, now)
        start = max(now, theoretical - self._tolerance)
        self._next_start = theoretical + self._interval
        return start - now

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await self._clock.sleep(wait)


class Cooldown:
    """A shared pause after the cloud says "too many requests".

    Each 429 extends the pause to base * 2**(n-1) for the n-th 429 in a row (at most `cap`), or to the
    server's Retry-After when that is longer (at most `retry_after_cap`). The streak ends with the first
    success of a call that started after the pause was over.
    """

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = 60.0,
        retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.base = base
        self.cap = cap
        self.retry_after_cap = retry_after_cap
        self._clock = clock
        self._until = clock.monotonic()
        self._streak = 0

    @property
    def streak(self) -> int:
        return self._streak

    def remaining(self) -> float:
        return max(0.0, self._until - self._clock.monotonic())

    def throttled(self, retry_after: float | None = None) -> float:
        """Record a 429; returns the pause (seconds from now) every call now waits out."""
        self._streak += 1
        pause = min(self.cap, self.base * 2.0 ** min(self._streak - 1, 32))
        if retry_after is not None and retry_after > 0:
            pause = max(pause, min(retry_after, self.retry_after_cap))
        self._until = max(self._until, self._clock.monotonic() + pause)
        return self.remaining()

    def succeeded(self, started_at: float) -> None:
        if self._streak and started_at >= self._until:
            self._streak = 0


class CallLimiter:
    """Admission for cloud calls: concurrency cap, then any cool-down, then the rate limit."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        requests_per_second: float,
        burst: int | None = None,
        cooldown_base: float = 1.0,
        cooldown_cap: float = 60.0,
        retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self._clock = clock
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self.bucket = TokenBucket(
            requests_per_second, burst if burst is not None else max(1, int(requests_per_second)), clock=clock
        )
        self.cooldown = Cooldown(
            base=cooldown_base, cap=cooldown_cap, retry_after_cap=retry_after_cap, clock=clock
        )
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold one admitted call; yields the monotonic time it started."""
        async with self._semaphore:
            for _ in range(_MAX_COOLDOWN_ROUNDS):
                pause = self.cooldown.remaining()
                if pause > 0:
                    await self._clock.sleep(pause)
                await self.bucket.acquire()
                # Another call may have been throttled while this one waited for the bucket.
                if self.cooldown.remaining() <= 0:
                    break
            self._in_flight += 1
            try:
                yield self._clock.monotonic()
            finally:
                self._in_flight -= 1

    def throttled(self, retry_after: float | None = None) -> float:
        pause = self.cooldown.throttled(retry_after)
        log.warning(
            "cloud throttled the operator; pausing all cloud calls",
            extra={"pause_seconds": round(pause, 3), "streak": self.cooldown.streak},
        )
        return pause

    def succeeded(self, started_at: float) -> None:
        self.cooldown.succeeded(started_at)
