"""What the reconciler sees of the cloud: plain frozen values, its errors, and one small client interface.

The cloud's second face, beside the package's own: it imports no transport, so the pure decision can
use these values without pulling in an HTTP or gRPC stack.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from desktop_image_operator.cloud.errors import CloudError, Code, CredentialsError

__all__ = [
    "UPDATABLE_FIELDS",
    "CloudError",
    "CloudImage",
    "CloudOperation",
    "Code",
    "CopyRequest",
    "CredentialsError",
    "DesktopImageClient",
    "ImageStatus",
]


class ImageStatus(enum.StrEnum):
    """`DesktopImage.status` as the cloud names it (unknown future values read as STATUS_UNSPECIFIED)."""

    STATUS_UNSPECIFIED = "STATUS_UNSPECIFIED"
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    DELETING = "DELETING"

    @classmethod
    def parse(cls, value: str | int | None) -> ImageStatus:
        if isinstance(value, int):
            names = list(cls)
            return names[value] if 0 <= value < len(names) else cls.STATUS_UNSPECIFIED
        return cls.__members__.get(value or "", cls.STATUS_UNSPECIFIED)


# Fields an Update may change; the mask names them (identical in proto and JSON spelling).
UPDATABLE_FIELDS: frozenset[str] = frozenset({"name", "description", "labels"})


@dataclass(frozen=True)
class CloudImage:
    id: str
    folder_id: str
    name: str
    description: str
    labels: Mapping[str, str]
    status: ImageStatus
    storage_size: int
    min_disk_size: int
    created_at: datetime | None


@dataclass(frozen=True)
class CloudOperation:
    id: str
    done: bool
    # metadata.imageId: names the image from the start of a copy, update or delete.
    image_id: str | None
    # Set when the operation failed; may appear while done is still False (the cloud is rolling back).
    error: CloudError | None
    # The response image of a finished copy or update; None for a delete or while running.
    image: CloudImage | None
    created_at: datetime | None
    # When the cloud last changed it: for a finished operation, when it finished.
    modified_at: datetime | None = None
    description: str = ""

    @property
    def succeeded(self) -> bool:
        return self.done and self.error is None

    @property
    def duration(self) -> float | None:
        """Seconds the cloud took, for a finished operation whose times the cloud gave."""
        if not self.done or self.created_at is None or self.modified_at is None:
            return None
        return max(0.0, (self.modified_at - self.created_at).total_seconds())


@dataclass(frozen=True)
class CopyRequest:
    """One copy: from a (stopped) desktop, or from a Compute image (which then needs a folder)."""

    name: str
    desktop_id: str | None = None
    compute_image_id: str | None = None
    folder_id: str | None = None
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.desktop_id is None) == (self.compute_image_id is None):
            raise ValueError("exactly one of desktop_id and compute_image_id must be set")
        if self.compute_image_id is not None and not self.folder_id:
            raise ValueError("folder_id is required when copying from a compute image")
        if not self.name:
            raise ValueError("name is required")

    @property
    def from_desktop(self) -> bool:
        return self.desktop_id is not None


class DesktopImageClient(Protocol):
    """The cloud as the reconciler uses it. Every method raises `CloudError` on failure.

    Retries of transient errors, rate limits and token refresh happen inside; what comes out is final
    for this attempt. `copy`, `update` and `delete` always carry an idempotency key, so repeating one with
    the same key returns the same operation instead of doing the work twice.
    """

    @property
    def copies_carry_labels(self) -> bool:
        """Whether `copy` sends the request's labels and description. False when the settings say so or
        once the cloud refused them: a new image then has no ownership labels until an Update stamps
        them, and crash safety rests on the operation record, the name and the creation time."""
        ...

    async def get_image(self, image_id: str) -> CloudImage: ...

    async def find_images(self, folder_id: str, name: str | None = None) -> list[CloudImage]:
        """All images in the folder (every page of List), or only those with exactly this name."""
        ...

    async def copy(self, request: CopyRequest, *, idempotency_key: str) -> CloudOperation: ...

    async def update(
        self,
        image_id: str,
        *,
        mask: Collection[str],
        name: str | None = None,
        description: str | None = None,
        labels: Mapping[str, str] | None = None,
        idempotency_key: str,
    ) -> CloudOperation:
        """Change only the fields named in `mask` (a subset of name, description, labels)."""
        ...

    async def delete(self, image_id: str, *, idempotency_key: str) -> CloudOperation: ...

    async def get_desktop_folder(self, desktop_id: str) -> str:
        """The folder of the desktop; raises CloudError NOT_FOUND if it does not exist.

        An image copied from a desktop without a folder lands in the desktop's folder."""
        ...

    async def get_operation(self, operation_id: str) -> CloudOperation: ...

    async def cancel_operation(self, operation_id: str) -> CloudOperation: ...

    async def follow_operation(self, operation_id: str, *, max_wait: float | None = None) -> CloudOperation:
        """Poll until the operation is done and return it (a failed one carries `error`; nothing is raised
        for it). Raises DEADLINE_EXCEEDED when `max_wait` seconds (default: the session's operation
        timeout) pass first."""
        ...
