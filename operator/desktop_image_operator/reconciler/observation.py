"""The observation: every fact a decision needs, as a plain value gathered before any action.

`observe` (in `observe.py`) fills it from the cloud and the API server; `decide` reads nothing else. A test
builds one by hand.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from desktop_image_operator.api import OperationRecord
from desktop_image_operator.cloud.types import CloudError, CloudImage
from desktop_image_operator.reconciler.ownership import Claim, Owner, claim


@dataclass(frozen=True)
class OperationView:
    """Our Running operation as the cloud reports it now."""

    record: OperationRecord
    done: bool
    error: CloudError | None = None
    # NOT_FOUND for longer than a just-started operation may be invisible: its outcome is unknown.
    lost: bool = False
    # How long the cloud took, once it is done (from the cloud's own timestamps).
    duration: float | None = None
    # metadata.imageId: the image the operation works on, named from its start.
    image_id: str | None = None

    @property
    def running(self) -> bool:
        return not self.done and not self.lost

    @property
    def failed(self) -> bool:
        return self.done and self.error is not None


class Found(enum.Enum):
    """How the image in an observation was found; each way says something about whose it is."""

    SPEC = "spec.source.imageId"  # named by the user: someone else's until taken over
    STATUS = "status.imageId"  # confirmed earlier as this object's image
    OPERATION = "the copy operation"  # metadata.imageId of this object's own copy
    LABELS = "its ownership labels"  # listed with this object's labels (or its predecessor's)
    NAME = "its name and creation time"  # a copy of this object's that the cloud stored without labels


@dataclass(frozen=True)
class Observation:
    """What the cloud (and, for a claimed owner, the API server) says now, as seen by one object."""

    me: Owner
    operation: OperationView | None = None
    # The image this object is about, freshly read by its ID; None when there is none (or while an
    # operation runs: nothing else is looked at then).
    image: CloudImage | None = None
    found: Found | None = None
    # spec.source.imageId or a confirmed status.imageId names an image the cloud does not have.
    image_gone: bool = False
    folder_id: str | None = None
    # The desktop to copy from does not exist (so its folder is unknown).
    source_missing: bool = False
    # An image with our name that is not this object's (blocks a copy).
    name_holder: CloudImage | None = None
    # When the image's labels name another object of this cluster: whether the API server has it now.
    # None when that was not asked (or could not be: a shortened name); it then counts as existing.
    owner_exists: bool | None = None
    # A copy of unknown outcome may still appear in List until then (the cloud's index lags): until this
    # instant an empty look-up proves nothing.
    unsure_until: datetime | None = None
    # The cloud may store copies without their labels (it refused them, or the settings say it does).
    copies_without_labels: bool = False

    @property
    def claim(self) -> tuple[Claim, Owner | None]:
        """What the image's ownership labels say about it, seen from this object."""
        if self.image is None:
            return Claim.UNOWNED, None
        return self.claim_of(self.image)

    def claim_of(self, image: CloudImage) -> tuple[Claim, Owner | None]:
        return claim(image.labels, self.me)
