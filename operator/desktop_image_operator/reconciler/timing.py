"""When the reconciler looks at an object again: one policy object, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from desktop_image_operator.api import OperationRecord
from desktop_image_operator.base.backoff import Backoff
from desktop_image_operator.reconciler import reasons as r


@dataclass(frozen=True)
class Timing:
    """Every delay the reconciler chooses. The controller adds jitter; the reconciler stays deterministic."""

    # A running operation is polled after as long as it has run so far, within these bounds: short copies
    # are seen soon after they end, long ones cost a poll per doubling of their age.
    poll_base_seconds: float = 1.0
    poll_cap_seconds: float = 15.0
    # After a failed update or delete (a transient kind): doubling from the base up to the cap.
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 300.0
    # After a failed copy (terminal: each retry is a whole copy): doubling from the base up to the resync.
    terminal_retry_base_seconds: float = 60.0
    resync_seconds: float = 600.0
    # How long a just-started operation may answer NOT_FOUND (the cloud lags) before it counts as lost.
    operation_visible_within_seconds: float = 60.0
    # How long one listing of a folder serves the look-ups of objects without a recorded image.
    folder_listing_max_age_seconds: float = 30.0
    # How far the cloud's List may lag behind a copy it accepted: a copy whose answer was lost may show
    # up in a listing only this long after it was sent, so no earlier listing proves it made nothing.
    list_lag_seconds: float = 30.0

    def poll_after(self, record: OperationRecord, now: datetime, expected: float | None = None) -> float:
        """When to poll a running operation: when it is `expected` to end (learned from earlier ones),
        else, or once it is late, after as long as it has run (or been late) so far, within the bounds."""
        age = (now - record.started_at).total_seconds()
        if expected is not None and age < expected:
            return min(self.poll_cap_seconds, expected - age)
        late = age - expected if expected is not None else age
        return min(self.poll_cap_seconds, max(self.poll_base_seconds, late))

    def backoff(self, transient: bool, resync_seconds: float | None = None) -> Backoff:
        """The retry policy after failures: transient ones double from the retry base up to its cap;
        terminal ones (each retry is a whole copy) from their own base up to the resync period (the
        object's own, when it sets one)."""
        if transient:
            return Backoff(self.retry_base_seconds, max(self.retry_cap_seconds, self.retry_base_seconds))
        resync = self.resync_seconds if resync_seconds is None else resync_seconds
        return Backoff(self.terminal_retry_base_seconds, max(resync, self.terminal_retry_base_seconds))

    def retry_after(self, reason: str, attempts: int) -> float:
        """The pause before attempt `attempts + 1` after `attempts` failures for `reason`."""
        return self.backoff(r.kind_of(reason) is r.Kind.TRANSIENT).ceiling(attempts)

    def retry_due_in(self, record: OperationRecord, reason: str, now: datetime) -> float:
        """Seconds until a failed operation may be tried again (zero or less: now)."""
        failed_at = record.finished_at or record.started_at
        waited = (now - failed_at).total_seconds()
        return self.retry_after(reason, record.attempts) - waited
