"""When to look at an object again: resync when healthy, backoff after failures. No hot loops."""

from __future__ import annotations

import random

from desktop_image_operator.base import Backoff
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.reconciler import Result


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
    if result is Result.TRANSIENT_ERROR:
        backoff = Backoff(
            base=settings.retry_base_seconds, cap=max(settings.retry_cap_seconds, settings.retry_base_seconds)
        )
    elif result is Result.TERMINAL_ERROR:
        # Terminal failures wait for a spec change; the slow schedule only catches fixes made elsewhere.
        backoff = Backoff(
            base=settings.terminal_retry_base_seconds, cap=max(resync, settings.terminal_retry_base_seconds)
        )
    else:
        return resync
    # Equal jitter: never sooner than half the ceiling, so a burst of failures spreads out.
    return min(resync, backoff.equal_jitter(failures, rng))
