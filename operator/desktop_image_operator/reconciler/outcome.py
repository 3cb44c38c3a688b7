"""What a reconcile reports back: its result, its reason, and when to look again; and what it writes to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class StatusWriter(Protocol):
    async def __call__(self, patch: dict[str, Any]) -> None:
        """Merge-patch the object's status subresource."""


class Events(Protocol):
    def normal(self, reason: str, message: str) -> None: ...

    def warning(self, reason: str, message: str) -> None: ...


class Result(StrEnum):
    READY = "ready"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    TRANSIENT_ERROR = "transient_error"
    TERMINAL_ERROR = "terminal_error"
    DELETED = "deleted"
    RETAINED = "retained"


@dataclass(frozen=True)
class Outcome:
    result: Result
    reason: str
    # Seconds until the next look when the reconciler knows (a poll, a retry that is due); None lets the
    # controller choose (resync, or backoff by its count of consecutive failures).
    requeue_after: float | None = None
    # True the first time this object's image is seen Ready (for the time-to-ready metric).
    first_ready: bool = False
