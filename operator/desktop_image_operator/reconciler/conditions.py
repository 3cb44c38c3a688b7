"""The Ready and Synced conditions, in the metav1.Condition shape, with stable transition times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from desktop_image_operator.api import CONDITION_READY, CONDITION_SYNCED, Condition, ConditionStatus

# Reasons, CamelCase as Kubernetes conventions ask, with their kinds in one table (reasons.py).
from desktop_image_operator.reconciler.reasons import (
    ADOPTION_CONFLICT,
    AVAILABLE,
    CLOUD_UNAVAILABLE,
    COPY_FAILED,
    COPYING,
    CREDENTIALS_INVALID,
    DELETE_FAILED,
    DELETING,
    FOLDER_NOT_GRANTED,
    IMAGE_NOT_FOUND,
    IMAGE_STATUS_UNKNOWN,
    INVALID_REQUEST,
    INVALID_SPEC,
    NAME_CONFLICT,
    NAME_PENDING,
    NOT_GRANTED,
    PERMISSION_DENIED,
    QUOTA_EXCEEDED,
    RECONCILE_ERROR,
    RECONCILE_PAUSED,
    RECONCILE_SUCCESS,
    SOURCE_NOT_FOUND,
    SOURCE_NOT_READY,
    THROTTLED,
    UPDATE_FAILED,
    UPDATING,
)

__all__ = [
    "ADOPTION_CONFLICT",
    "AVAILABLE",
    "CLOUD_UNAVAILABLE",
    "COPYING",
    "COPY_FAILED",
    "CREDENTIALS_INVALID",
    "DELETE_FAILED",
    "DELETING",
    "FOLDER_NOT_GRANTED",
    "IMAGE_NOT_FOUND",
    "IMAGE_STATUS_UNKNOWN",
    "INVALID_REQUEST",
    "INVALID_SPEC",
    "NAME_CONFLICT",
    "NAME_PENDING",
    "NOT_GRANTED",
    "PERMISSION_DENIED",
    "QUOTA_EXCEEDED",
    "RECONCILE_ERROR",
    "RECONCILE_PAUSED",
    "RECONCILE_SUCCESS",
    "SOURCE_NOT_FOUND",
    "SOURCE_NOT_READY",
    "THROTTLED",
    "UPDATE_FAILED",
    "UPDATING",
    "Verdict",
    "apply",
    "find",
    "not_ready",
    "ready",
]


@dataclass(frozen=True)
class Verdict:
    """What one condition should say now."""

    status: ConditionStatus
    reason: str
    message: str


def ready(
    reason: str = AVAILABLE, message: str = "The cloud image is ACTIVE and matches the spec."
) -> Verdict:
    return Verdict("True", reason, message)


def not_ready(reason: str, message: str) -> Verdict:
    return Verdict("False", reason, message)


def apply(
    conditions: list[Condition] | None,
    condition_type: str,
    verdict: Verdict,
    generation: int,
    now: datetime | None = None,
) -> list[Condition]:
    """Set one condition, keeping lastTransitionTime unless the status flips (as metav1 conditions do)."""
    current = {c.type: c for c in conditions or []}
    previous = current.get(condition_type)
    transition = (
        previous.last_transition_time
        if previous is not None and previous.status == verdict.status
        else (now or datetime.now(UTC)).replace(microsecond=0)
    )
    current[condition_type] = Condition(
        type=condition_type,
        status=verdict.status,
        reason=verdict.reason,
        message=verdict.message[:32768],
        observed_generation=generation,
        last_transition_time=transition,
    )
    # Ready first, then Synced: a stable order keeps status patches small and diffs readable.
    order = {CONDITION_READY: 0, CONDITION_SYNCED: 1}
    return sorted(current.values(), key=lambda c: (order.get(c.type, 2), c.type))


def find(conditions: list[Condition] | None, condition_type: str) -> Condition | None:
    return next((c for c in conditions or [] if c.type == condition_type), None)
