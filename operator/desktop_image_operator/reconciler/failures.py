"""How a failure shows on the object: its condition reason, whether it is terminal, and its message.

Transient failures (the cloud busy, throttling, outages) are retried soon with backoff; terminal ones
(bad credentials, refused requests, a failed copy) wait for a spec change or the slow schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

from desktop_image_operator.cloud.errors import CloudError, Code
from desktop_image_operator.reconciler import conditions as c


@dataclass(frozen=True)
class Failure(Exception):
    """A reason to stop this reconcile with Ready=False."""

    reason: str
    message: str
    terminal: bool
    # A failure the cloud reported is a failed sync; one we decided on (a name conflict) is not.
    cloud_error: bool = True

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def describe(error: CloudError) -> str:
    """The cloud's message with its code and request id, as users need it for a support ticket."""
    text = f"{error.code.name}: {error.message}"
    if error.request_id:
        text += f" (request id {error.request_id})"
    return text


_TRANSIENT_REASONS = {
    Code.UNAVAILABLE: c.CLOUD_UNAVAILABLE,
    Code.INTERNAL: c.CLOUD_UNAVAILABLE,
    Code.DEADLINE_EXCEEDED: c.CLOUD_UNAVAILABLE,
    Code.UNKNOWN: c.CLOUD_UNAVAILABLE,
    Code.ABORTED: c.CLOUD_UNAVAILABLE,
    Code.CANCELLED: c.CLOUD_UNAVAILABLE,
}


def classify(error: CloudError, *, during: str) -> Failure:
    """Map a cloud error during `during` ("copy", "update", "delete" or "observe") to a Failure."""
    message = describe(error)
    code = error.code
    if code in _TRANSIENT_REASONS:
        return Failure(_TRANSIENT_REASONS[code], message, terminal=False)
    if code is Code.RESOURCE_EXHAUSTED:
        # The same code means "slow down" and "quota full"; the client tells them apart.
        if error.quota_exceeded:
            return Failure(c.QUOTA_EXCEEDED, message, terminal=True)
        return Failure(c.THROTTLED, message, terminal=False)
    if code is Code.UNAUTHENTICATED:
        return Failure(c.CREDENTIALS_INVALID, message, terminal=True)
    if code is Code.PERMISSION_DENIED:
        return Failure(c.PERMISSION_DENIED, message, terminal=True)
    if code is Code.FAILED_PRECONDITION:
        return Failure(c.SOURCE_NOT_READY if during == "copy" else c.RECONCILE_ERROR, message, terminal=True)
    if code is Code.NOT_FOUND and during == "copy":
        return Failure(c.SOURCE_NOT_FOUND, message, terminal=True)
    if code is Code.ALREADY_EXISTS:
        return Failure(c.NAME_CONFLICT, message, terminal=True)
    if code is Code.INVALID_ARGUMENT:
        return Failure(c.INVALID_REQUEST, message, terminal=True)
    return Failure(c.RECONCILE_ERROR, message, terminal=True)
