"""When to look at an object again: resync when healthy, backoff after failures. No hot loops."""

from __future__ import annotations

import random

from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.reconciler import Result, Timing


def timing_of(settings: RunSettings) -> Timing:
    """The reconciler's delays, from the operator's settings: the one retry policy both follow."""
    return Timing(
        poll_base_seconds=settings.cloud.operation_poll_initial_seconds,
        poll_cap_seconds=settings.cloud.operation_poll_cap_seconds,
        retry_base_seconds=settings.retry_base_seconds,
        retry_cap_seconds=settings.retry_cap_seconds,
        terminal_retry_base_seconds=settings.terminal_retry_base_seconds,
        resync_seconds=settings.resync_seconds,
    )


def next_delay(
    result: Result,
    failures: int,
    settings: RunSettings,
    rng: random.Random,
    requeue_after: float | None = None,
    resync_seconds: float | None = None,
) -> float:
    """Seconds until the next reconcile; `failures` counts consecutive failed runs including this one.

    `requeue_after` is the reconciler's own choice (a poll of a running operation, a retry that falls due);
    it gets a little jitter so that objects started together do not poll together. `resync_seconds` is the
    object's own period (its annotation), else the operator's.
    """
    if requeue_after is not None:
        return max(0.05, requeue_after) * (1 + rng.uniform(0, settings.resync_jitter))
    # Jitter only lengthens the period: objects first looked at anywhere in a period (after a restart,
    # or created together) are never read twice within one, however early their first look fell.
    period = settings.resync_seconds if resync_seconds is None else resync_seconds
    resync = period * (1 + rng.uniform(0, settings.resync_jitter))
    if result not in (Result.TRANSIENT_ERROR, Result.TERMINAL_ERROR):
        return resync
    # The reconciler's own policy (Timing.backoff), so an object's retries follow one rule wherever they
    # are scheduled. Equal jitter: never sooner than half the ceiling, so a burst of failures spreads out.
    backoff = timing_of(settings).backoff(result is Result.TRANSIENT_ERROR, resync)
    return min(resync, backoff.equal_jitter(failures, rng))
