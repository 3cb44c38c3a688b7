"""Concurrency cap, request rate and the shared 429 cool-down, measured on virtual time."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from desktop_image_operator.cloud.limits import CallLimiter, Cooldown, TokenBucket

from .support import VirtualClock


def test_bucket_spaces_starts_at_the_rate() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(5.0, burst=1, clock=clock)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])


def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(10.0, burst=3, clock=clock)
    waits = [bucket.reserve() for _ in range(6)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])


def test_bucket_refills_after_idle_time_but_not_beyond_the_burst() -> None:
    clock = VirtualClock()
    bucket = TokenBucket(10.0, burst=2, clock=clock)
    for _ in range(4):
        bucket.reserve()
    clock.advance(60.0)
    waits = [bucket.reserve() for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2])


async def test_limiter_holds_the_request_rate() -> None:
    clock = VirtualClock()
    limiter = CallLimiter(max_concurrency=100, requests_per_second=10.0, burst=1, clock=clock)
    starts: list[float] = []

    async def call() -> None:
        async with limiter.slot() as started:
            starts.append(started)

    await clock.run(asyncio.gather(*(call() for _ in range(30))))
    starts.sort()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) == pytest.approx(0.1)
    # No one-second window holds more than rate + burst starts.
    for first in starts:
        assert sum(1 for s in starts if first <= s < first + 1.0) <= 10
    assert starts[-1] - starts[0] == pytest.approx(2.9)


async def test_limiter_holds_the_concurrency_cap() -> None:
    clock = VirtualClock()
    limiter = CallLimiter(max_concurrency=3, requests_per_second=1000.0, burst=1000, clock=clock)
    in_flight = 0
    peak = 0

    async def call() -> None:
        nonlocal in_flight, peak
        async with limiter.slot():
            in_flight += 1
            peak = max(peak, in_flight)
            assert limiter.in_flight == in_flight
            await clock.sleep(1.0)
            in_flight -= 1

    began = clock.monotonic()
    await clock.run(asyncio.gather(*(call() for _ in range(20))))
    assert peak == 3
    # 20 one-second calls, three at a time: seven rounds.
    assert clock.monotonic() - began == pytest.approx(7.0)
    assert limiter.in_flight == 0


def test_cooldown_grows_on_repeated_throttling_and_is_capped() -> None:
    clock = VirtualClock()
    cooldown = Cooldown(base=1.0, cap=10.0, clock=clock)
    pauses = []
    for _ in range(6):
        pauses.append(cooldown.throttled())
        clock.advance(cooldown.remaining())
    assert pauses == pytest.approx([1.0, 2.0, 4.0, 8.0, 10.0, 10.0])


def test_cooldown_honours_retry_after_beyond_its_own_cap_up_to_the_hint_ceiling() -> None:
    clock = VirtualClock()
    cooldown = Cooldown(base=1.0, cap=30.0, retry_after_cap=600.0, clock=clock)
    assert cooldown.throttled(retry_after=7.0) == pytest.approx(7.0)
    clock.advance(7.0)
    assert cooldown.throttled(retry_after=120.0) == pytest.approx(120.0)
    clock.advance(120.0)
    assert cooldown.throttled(retry_after=3600.0) == pytest.approx(600.0)
    clock.advance(600.0)
    # Without a hint the pause is the client's own guess, bounded by the cool-down cap.
    assert cooldown.throttled() == pytest.approx(8.0)


def test_cooldown_streak_ends_with_a_success_started_after_the_pause() -> None:
    clock = VirtualClock()
    cooldown = Cooldown(base=1.0, cap=60.0, clock=clock)
    cooldown.throttled()
    cooldown.throttled()
    assert cooldown.streak == 2
    cooldown.succeeded(started_at=clock.monotonic())  # started during the pause: proves nothing
    assert cooldown.streak == 2
    clock.advance(cooldown.remaining())
    cooldown.succeeded(started_at=clock.monotonic())
    assert cooldown.streak == 0
    assert cooldown.throttled() == pytest.approx(1.0)


async def test_throttling_pauses_calls_that_were_not_throttled_themselves() -> None:
    clock = VirtualClock()
    limiter = CallLimiter(max_concurrency=10, requests_per_second=1000.0, burst=1000, clock=clock)
    throttled_at = clock.monotonic()
    limiter.throttled(retry_after=5.0)
    starts: list[float] = []

    async def call() -> None:
        async with limiter.slot() as started:
            starts.append(started)

    await clock.run(asyncio.gather(*(call() for _ in range(5))))
    assert len(starts) == 5
    assert min(starts) >= throttled_at + 5.0


def test_limiter_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        CallLimiter(max_concurrency=0, requests_per_second=1.0)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0.0)
