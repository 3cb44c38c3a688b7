"""Every reason the operator writes into a condition, with its kind: the one table everything follows.

The reconciler schedules by kind, the metrics count by reason, and the Argo CD health check maps kinds
to health (its tests compare its tables with this one). A new reason goes here first.
"""

from __future__ import annotations

import enum
from typing import Final


class Kind(enum.Enum):
    """What a reason means for whoever watches the object, and when the operator looks again."""

    OK = "ok"  # the image is there and matches the spec (or the last reconcile reached the cloud)
    PROGRESSING = "progressing"  # an operation runs and will end by itself: polled soon
    SUSPENDED = "suspended"  # the user paused the object: no cloud call until they resume it
    TRANSIENT = "transient"  # a failure the operator retries on its own, with capped backoff
    TERMINAL = "terminal"  # a failure a person must fix: retried only on a change or the slow schedule


AVAILABLE: Final = "Available"
RECONCILE_SUCCESS: Final = "ReconcileSuccess"
COPYING: Final = "Copying"
UPDATING: Final = "Updating"
DELETING: Final = "Deleting"
RECONCILE_PAUSED: Final = "ReconcilePaused"
THROTTLED: Final = "Throttled"
CLOUD_UNAVAILABLE: Final = "CloudUnavailable"
UPDATE_FAILED: Final = "UpdateFailed"
DELETE_FAILED: Final = "DeleteFailed"
COPY_FAILED: Final = "CopyFailed"
NAME_CONFLICT: Final = "NameConflict"
ADOPTION_CONFLICT: Final = "AdoptionConflict"
IMAGE_NOT_FOUND: Final = "ImageNotFound"
SOURCE_NOT_FOUND: Final = "SourceNotFound"
SOURCE_NOT_READY: Final = "SourceNotReady"
INVALID_REQUEST: Final = "InvalidRequest"
QUOTA_EXCEEDED: Final = "QuotaExceeded"
CREDENTIALS_INVALID: Final = "CredentialsInvalid"
PERMISSION_DENIED: Final = "PermissionDenied"
INVALID_SPEC: Final = "InvalidSpec"
IMAGE_STATUS_UNKNOWN: Final = "ImageStatusUnknown"
NAME_PENDING: Final = "NamePending"
NOT_GRANTED: Final = "NotGranted"
FOLDER_NOT_GRANTED: Final = "FolderNotGranted"
RECONCILE_ERROR: Final = "ReconcileError"

KINDS: Final[dict[str, Kind]] = {
    AVAILABLE: Kind.OK,
    RECONCILE_SUCCESS: Kind.OK,
    COPYING: Kind.PROGRESSING,
    UPDATING: Kind.PROGRESSING,
    DELETING: Kind.PROGRESSING,
    RECONCILE_PAUSED: Kind.SUSPENDED,
    THROTTLED: Kind.TRANSIENT,
    CLOUD_UNAVAILABLE: Kind.TRANSIENT,
    # A failed update or delete is tried again on the backoff schedule with a new idempotency key: the
    # cloud failing one operation says nothing about the next.
    UPDATE_FAILED: Kind.TRANSIENT,
    DELETE_FAILED: Kind.TRANSIENT,
    # The cloud reports an image without a status (STATUS_UNSPECIFIED): neither copying nor ready.
    IMAGE_STATUS_UNKNOWN: Kind.TRANSIENT,
    # The name is held by an image the cloud does not list yet, or by an earlier object's image that is
    # being deleted: it frees up (or shows up) by itself.
    NAME_PENDING: Kind.TRANSIENT,
    # A failed copy costs a whole copy to retry: the slow schedule, or at once on a spec change.
    COPY_FAILED: Kind.TERMINAL,
    NAME_CONFLICT: Kind.TERMINAL,
    ADOPTION_CONFLICT: Kind.TERMINAL,
    IMAGE_NOT_FOUND: Kind.TERMINAL,
    SOURCE_NOT_FOUND: Kind.TERMINAL,
    SOURCE_NOT_READY: Kind.TERMINAL,
    INVALID_REQUEST: Kind.TERMINAL,
    QUOTA_EXCEEDED: Kind.TERMINAL,
    CREDENTIALS_INVALID: Kind.TERMINAL,
    PERMISSION_DENIED: Kind.TERMINAL,
    INVALID_SPEC: Kind.TERMINAL,
    RECONCILE_ERROR: Kind.TERMINAL,
    # Outside every grant: a cluster administrator (or a credentialsRef of its own) must change something.
    NOT_GRANTED: Kind.TERMINAL,
    FOLDER_NOT_GRANTED: Kind.TERMINAL,
}


def kind_of(reason: str) -> Kind:
    """The kind of a reason; one this operator never writes (an older version's) counts as terminal."""
    return KINDS.get(reason, Kind.TERMINAL)


def reasons_of(kind: Kind) -> frozenset[str]:
    return frozenset(reason for reason, of in KINDS.items() if of is kind)
