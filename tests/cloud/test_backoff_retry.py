"""Backoff bounds, jitter ranges and which errors are retried."""

from __future__ import annotations

import random

import pytest

from desktop_image_operator.cloud.backoff import Backoff
from desktop_image_operator.cloud.errors import RETRYABLE_CODES, CloudError, Code
from desktop_image_operator.cloud.retry import RetryPolicy


def test_ceiling_grows_exponentially_and_is_capped() -> None:
    backoff = Backoff(base=0.5, cap=30.0)
    assert [backoff.ceiling(n) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.ceiling(10_000) == 30.0  # no overflow for absurd attempt numbers
    assert backoff.ceiling(0) == 0.5


def test_full_jitter_stays_within_zero_and_ceiling_and_spreads() -> None:
    backoff = Backoff(base=1.0, cap=8.0)
    rng = random.Random(7)
    for attempt in range(1, 8):
        delays = [backoff.full_jitter(attempt, rng) for _ in range(500)]
        ceiling = backoff.ceiling(attempt)
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter uses the whole range, not just its top.
        assert min(delays) < ceiling * 0.1
        assert max(delays) > ceiling * 0.9


def test_equal_jitter_never_drops_below_half_the_ceiling() -> None:
    backoff = Backoff(base=1.0, cap=15.0)
    rng = random.Random(3)
    for attempt in range(1, 8):
        ceiling = backoff.ceiling(attempt)
        delays = [backoff.equal_jitter(attempt, rng) for _ in range(500)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)


@pytest.mark.parametrize(("base", "cap", "factor"), [(0.0, 1.0, 2.0), (2.0, 1.0, 2.0), (1.0, 2.0, 0.5)])
def test_backoff_refuses_nonsense(base: float, cap: float, factor: float) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(base=base, cap=cap, factor=factor)


def test_retryable_codes_are_exactly_the_transient_ones() -> None:
    assert {
        Code.UNAVAILABLE,
        Code.RESOURCE_EXHAUSTED,
        Code.INTERNAL,
        Code.DEADLINE_EXCEEDED,
    } == RETRYABLE_CODES
    for code in Code:
        assert CloudError(code, "x").retryable is (code in RETRYABLE_CODES)


@pytest.mark.parametrize(
    "code",
    [
        Code.INVALID_ARGUMENT,
        Code.FAILED_PRECONDITION,
        Code.PERMISSION_DENIED,
        Code.NOT_FOUND,
        Code.ALREADY_EXISTS,
        Code.UNAUTHENTICATED,
    ],
)
def test_policy_never_retries_terminal_codes(code: Code) -> None:
    assert not RetryPolicy(max_attempts=10).should_retry(CloudError(code, "no"), 1)


def test_policy_bounds_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    error = CloudError(Code.UNAVAILABLE, "down")
    assert [policy.should_retry(error, n) for n in (1, 2, 3, 4)] == [True, True, False, False]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_policy_delay_honours_retry_hint_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff=Backoff(base=0.1, cap=5.0))
    rng = random.Random(1)
    hinted = CloudError(Code.RESOURCE_EXHAUSTED, "slow down", retry_after=2.0)
    assert all(2.0 <= policy.delay(hinted, 1, rng) <= 5.0 for _ in range(100))
    huge = CloudError(Code.RESOURCE_EXHAUSTED, "slow down", retry_after=600.0)
    assert policy.delay(huge, 1, rng) == 5.0
    plain = CloudError(Code.UNAVAILABLE, "down")
    assert all(0.0 <= policy.delay(plain, 1, rng) <= 0.1 for _ in range(100))


def test_http_status_mapping() -> None:
    assert Code.from_http_status(400) is Code.INVALID_ARGUMENT
    assert Code.from_http_status(401) is Code.UNAUTHENTICATED
    assert Code.from_http_status(403) is Code.PERMISSION_DENIED
    assert Code.from_http_status(404) is Code.NOT_FOUND
    assert Code.from_http_status(429) is Code.RESOURCE_EXHAUSTED
    assert Code.from_http_status(503) is Code.UNAVAILABLE
    assert Code.from_http_status(504) is Code.DEADLINE_EXCEEDED
    assert Code.from_http_status(599) is Code.INTERNAL
    assert Code.from_http_status(418) is Code.UNKNOWN
    assert Code.from_number(99) is Code.UNKNOWN
    assert Code.from_name("not_found") is Code.NOT_FOUND


def test_error_text_carries_code_message_and_request_id() -> None:
    error = CloudError(Code.NOT_FOUND, "Image img-1 not found", request_id="req-9")
    assert str(error) == "NOT_FOUND: Image img-1 not found (request id req-9)"
    assert "NOT_FOUND" in repr(error)
    assert "req-9" in repr(error)
    assert error == CloudError(Code.NOT_FOUND, "Image img-1 not found", request_id="req-9")
    assert error != CloudError(Code.NOT_FOUND, "Image img-1 not found", request_id="other")


def test_an_exhausted_quota_is_not_a_rate_limit() -> None:
    quota = CloudError(Code.RESOURCE_EXHAUSTED, "Quota limit vdi.desktopImages.count exceeded in cloud b1g")
    assert quota.quota_exceeded
    assert not quota.retryable
    rate = CloudError(Code.RESOURCE_EXHAUSTED, "Too many requests")
    assert not rate.quota_exceeded
    assert rate.retryable
