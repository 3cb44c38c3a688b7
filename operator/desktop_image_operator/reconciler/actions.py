"""The actions a decision names: plain values, at most one cloud write each, performed by `act`."""

from __future__ import annotations

from dataclasses import dataclass

from desktop_image_operator.api import OperationKind, OperationRecord
from desktop_image_operator.cloud.types import CloudImage
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.failures import Failure
from desktop_image_operator.reconciler.observation import OperationView
from desktop_image_operator.reconciler.outcome import Result
from desktop_image_operator.reconciler.ownership import Owner


@dataclass(frozen=True)
class Poll:
    """Our operation still runs: say so, look again when it may have ended."""

    record: OperationRecord
    reason: str
    message: str


@dataclass(frozen=True)
class RecordFailure:
    """Our operation ended in error: record it; it is retried on its schedule with a new key."""

    operation: OperationView


@dataclass(frozen=True)
class Report:
    """Stop here with Ready=False for this reason (nothing to do in the cloud)."""

    failure: Failure


@dataclass(frozen=True)
class RetryLater:
    """A failed operation of this kind waits for its retry: the conditions already say why."""

    reason: str
    due_in: float


@dataclass(frozen=True)
class Wait:
    """Waiting on the cloud without an operation of ours; look again after `after` (None: soon)."""

    reason: str
    message: str
    after: float | None = None


@dataclass(frozen=True)
class Copy:
    """Copy the source into a new image in this folder."""

    folder_id: str


@dataclass(frozen=True)
class Update:
    """Change these fields of the image. `owner` is who its labels name now: the write goes out only if a
    fresh read right before it still shows that owner (so nothing taken in between is overwritten)."""

    image: CloudImage
    mask: tuple[str, ...]
    owner: Owner | None


@dataclass(frozen=True)
class Delete:
    """Delete this object's image, after a fresh read shows it is still this object's."""

    image: CloudImage
    owner: Owner | None


@dataclass(frozen=True)
class MarkReady:
    """The image is ACTIVE: Ready. Under Observe, `matches` says whether it is what the spec describes."""

    image: CloudImage
    observed_only: bool = False
    matches: bool = True


@dataclass(frozen=True)
class Release:
    """The finalizer may go: the image is deleted (or was never there), or it is left in the cloud."""

    result: Result
    note: str | None = None  # a Normal event: what became of the image


Action = Poll | RecordFailure | Report | RetryLater | Wait | Copy | Update | Delete | MarkReady | Release


@dataclass(frozen=True)
class Decision:
    """One action, with what the run learned on the way."""

    action: Action
    # A confirmed image of this object's: mirrored into status before the action (its ID enters status
    # only once such a read confirms it).
    keep: CloudImage | None = None
    # A Normal event about how the image was found or taken over.
    adopted: str | None = None


RUNNING_REASON: dict[OperationKind, str] = {"Copy": r.COPYING, "Update": r.UPDATING, "Delete": r.DELETING}
