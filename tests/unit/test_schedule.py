"""When the operator looks at an object again: never a hot loop; a Ready object once per resync period, a
little later at random, never sooner."""

from __future__ import annotations

import random

import pytest

from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.controller.schedule import next_delay
from desktop_image_operator.reconciler.reconciler import Result

SETTINGS = RunSettings(resync_seconds=600, retry_base_seconds=5, retry_cap_seconds=300)


@pytest.mark.parametrize("seed", range(20))
def test_ready_objects_resync_with_jitter(seed: int) -> None:
    delay = next_delay(Result.READY, 0, SETTINGS, random.Random(seed))
    assert 600 <= delay <= 660


def test_objects_first_looked_at_anywhere_in_a_period_are_not_read_again_within_it() -> None:
    # After a restart each Ready object's first look falls at random within the first period.
    rng = random.Random(7)
    for _ in range(10_000):
        first = rng.uniform(0, SETTINGS.resync_seconds)
        second = first + next_delay(Result.READY, 0, SETTINGS, rng)
        assert second >= SETTINGS.resync_seconds


def test_transient_failures_back_off_exponentially_up_to_the_cap() -> None:
    rng = random.Random(1)
    ceilings = [5, 10, 20, 40, 80, 160, 300, 300]
    for failures, ceiling in enumerate(ceilings, start=1):
        delays = [next_delay(Result.TRANSIENT_ERROR, failures, SETTINGS, rng) for _ in range(50)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling


def test_terminal_failures_wait_long_but_not_past_resync() -> None:
    rng = random.Random(2)
    first = [next_delay(Result.TERMINAL_ERROR, 1, SETTINGS, rng) for _ in range(50)]
    assert min(first) >= 30
    late = [next_delay(Result.TERMINAL_ERROR, 30, SETTINGS, rng) for _ in range(50)]
    assert max(late) <= 660
    assert min(late) >= 270
