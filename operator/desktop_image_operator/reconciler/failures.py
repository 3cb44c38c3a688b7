"""How a failure shows on the object: its condition reason (whose kind says when to retry) and message.

Errors are told apart by the cloud's codes and details, never by the wording of a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from desktop_image_operator.cloud.types import CloudError, Code, CredentialsError
from desktop_image_operator.reconciler import reasons as r

# What the reconciler was doing when the cloud answered: the same code means different things.
Stage = Literal["observe", "copy", "update", "delete"]


@dataclass(frozen=True)
class Failure(Exception):
    """A reason to stop this reconcile with Ready=False."""

    reason: str
    message: str
    # A failure the cloud reported is a failed sync; one we decided on (a name conflict) is not.
    cloud_error: bool = True
    # The leader's fence refused or cancelled a call: this instance may not act, so the run records
    # nothing (its successor's status is not ours to write) and the call's outcome stays unknown.
    fenced: bool = False

    @property
    def kind(self) -> r.Kind:
        return r.kind_of(self.reason)

    @property
    def terminal(self) -> bool:
        return self.kind is r.Kind.TERMINAL

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def describe(error: CloudError) -> str:
    """The cloud's message with its code and request id, as users need it for a support ticket."""
    text = f"{error.code.name}: {error.message}"
    if error.request_id:
        text += f" (request id {error.request_id})"
    return text


_BY_CODE: dict[Code, str] = {
    Code.UNAVAILABLE: r.CLOUD_UNAVAILABLE,
    Code.INTERNAL: r.CLOUD_UNAVAILABLE,
    Code.DEADLINE_EXCEEDED: r.CLOUD_UNAVAILABLE,
    Code.UNKNOWN: r.CLOUD_UNAVAILABLE,
    Code.ABORTED: r.CLOUD_UNAVAILABLE,
    Code.CANCELLED: r.CLOUD_UNAVAILABLE,
    Code.UNAUTHENTICATED: r.CREDENTIALS_INVALID,
    Code.PERMISSION_DENIED: r.PERMISSION_DENIED,
    Code.ALREADY_EXISTS: r.NAME_CONFLICT,
    Code.INVALID_ARGUMENT: r.INVALID_REQUEST,
}

# Codes whose meaning depends on the call: a missing or busy source only matters when copying it.
_DURING_COPY: dict[Code, str] = {
    Code.NOT_FOUND: r.SOURCE_NOT_FOUND,
    Code.FAILED_PRECONDITION: r.SOURCE_NOT_READY,
}


def classify(error: CloudError, *, during: Stage) -> Failure:
    """The Failure a cloud error means while the reconciler was at `during`."""
    return Failure(_reason(error, during), describe(error))


def _reason(error: CloudError, during: Stage) -> str:
    if isinstance(error, CredentialsError):
        return r.CREDENTIALS_INVALID  # IAM refused the key, whatever code it answered with
    if error.code is Code.RESOURCE_EXHAUSTED:
        # The same code means "slow down" and "quota used up"; only the QuotaFailure detail tells them apart.
        return r.QUOTA_EXCEEDED if error.quota_exceeded else r.THROTTLED
    if during == "copy" and error.code in _DURING_COPY:
        return _DURING_COPY[error.code]
    return _BY_CODE.get(error.code, r.RECONCILE_ERROR)


def operation_failed(kind: str, error: CloudError) -> Failure:
    """A cloud operation of ours that ended in error."""
    reason = {"Copy": r.COPY_FAILED, "Update": r.UPDATE_FAILED, "Delete": r.DELETE_FAILED}[kind]
    return Failure(reason, describe(error))
