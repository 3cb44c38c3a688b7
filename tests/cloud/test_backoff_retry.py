"""Backoff bounds, jitter ranges and which errors are retried."""

from __future__ import annotations

import random

import pytest

from desktop_image_operator.base import Backoff
from desktop_image_operator.cloud.errors import (
    RETRYABLE_CODES,
    CloudError,
    Code,
    QuotaViolation,
    parse_retry_after,
)
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


def test_policy_delay_honours_a_retry_hint_beyond_the_backoff_cap_up_to_its_own_ceiling() -> None:
    policy = RetryPolicy(backoff=Backoff(base=0.1, cap=5.0), retry_after_cap=300.0)
    rng = random.Random(1)
    hinted = CloudError(Code.RESOURCE_EXHAUSTED, "slow down", retry_after=2.0)
    assert all(2.0 <= policy.delay(hinted, 1, rng) <= 5.0 for _ in range(100))
    long = CloudError(Code.RESOURCE_EXHAUSTED, "slow down", retry_after=120.0)
    assert policy.delay(long, 1, rng) == 120.0
    absurd = CloudError(Code.RESOURCE_EXHAUSTED, "slow down", retry_after=86_400.0)
    assert policy.delay(absurd, 1, rng) == 300.0
    plain = CloudError(Code.UNAVAILABLE, "down")
    assert all(0.0 <= policy.delay(plain, 1, rng) <= 0.1 for _ in range(100))


def test_the_default_retry_hint_ceiling_is_ten_minutes() -> None:
    absurd = CloudError(Code.UNAVAILABLE, "down", retry_after=7200.0)
    assert RetryPolicy().delay(absurd, 1, random.Random(1)) == 600.0
    with pytest.raises(ValueError, match="retry_after_cap"):
        RetryPolicy(retry_after_cap=0.0)


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


COUNT_VIOLATION = QuotaViolation("b1gcloud", "8 of 8 images", "vdi.desktopImages.count")


def test_an_exhausted_quota_is_told_by_its_quota_failure_detail_even_with_a_bland_message() -> None:
    quota = CloudError(Code.RESOURCE_EXHAUSTED, "Request refused", quota_violations=(COUNT_VIOLATION,))
    assert quota.quota_exceeded
    assert not quota.retryable


def test_resource_exhausted_without_the_detail_is_throttling_even_when_the_message_says_quota() -> None:
    rate = CloudError(Code.RESOURCE_EXHAUSTED, "Quota limit vdi.desktopImages.count exceeded in cloud b1g")
    assert not rate.quota_exceeded
    assert rate.retryable


def test_a_quota_detail_on_another_code_is_no_used_up_quota() -> None:
    assert not CloudError(Code.INTERNAL, "x", quota_violations=(COUNT_VIOLATION,)).quota_exceeded


def test_with_message_keeps_everything_but_the_message() -> None:
    error = CloudError(
        Code.RESOURCE_EXHAUSTED,
        "secret",
        request_id="r",
        retry_after=3.0,
        quota_violations=(COUNT_VIOLATION,),
    )
    scrubbed = error.with_message("<redacted>")
    assert (scrubbed.code, scrubbed.message, scrubbed.request_id) == (
        Code.RESOURCE_EXHAUSTED,
        "<redacted>",
        "r",
    )
    assert (scrubbed.retry_after, scrubbed.quota_violations) == (3.0, (COUNT_VIOLATION,))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (" 2.5 ", 2.5), ("-3", 0.0), ("", None), (None, None), ("nan", None), ("soon", None)],
)
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds
