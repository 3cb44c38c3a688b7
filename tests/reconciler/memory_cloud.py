"""An in-memory DesktopImageClient for the reconciler's logic tests: cloud semantics without a network.

Operations finish when the test says so (`finish_all`), or at once with `instant=True`. Every call is
recorded, so tests can count them.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from desktop_image_operator.cloud.errors import CloudError, Code
from desktop_image_operator.cloud.types import CloudImage, CloudOperation, CopyRequest, ImageStatus

FOLDER = "b1gfolder"
DESKTOP = "e3vdesktop"
COMPUTE_IMAGE = "fd8image"
SIZE = 21474836480


@dataclass
class _Pending:
    operation: CloudOperation
    on_done: str  # "activate", "remove" or "none"
    image_id: str
    fail: CloudError | None = None


@dataclass
class MemoryCloud:
    instant: bool = True
    images: dict[str, CloudImage] = field(default_factory=dict)
    operations: dict[str, _Pending] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> operation id
    errors: dict[str, list[CloudError]] = field(default_factory=dict)  # method -> errors to raise first
    fail_next_copy: CloudError | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def _record(self, method: str, **args: object) -> None:
        self.calls.append((method, args))
        queued = self.errors.get(method)
        if queued:
            raise queued.pop(0)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}"

    def add_image(
        self, name: str, labels: Mapping[str, str], status: ImageStatus = ImageStatus.ACTIVE
    ) -> CloudImage:
        image = CloudImage(
            id=self._new_id("img"),
            folder_id=FOLDER,
            name=name,
            description="",
            labels=dict(labels),
            status=status,
            storage_size=SIZE,
            min_disk_size=SIZE,
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        self.images[image.id] = image
        return image

    def finish_all(self) -> None:
        for pending in list(self.operations.values()):
            self._finish(pending)

    def _finish(self, pending: _Pending) -> None:
        if pending.operation.done:
            return
        image = self.images.get(pending.image_id)
        if pending.fail is not None:
            self.images.pop(pending.image_id, None)
            pending.operation = replace(pending.operation, done=True, error=pending.fail)
            return
        if pending.on_done == "activate" and image is not None:
            image = replace(image, status=ImageStatus.ACTIVE)
            self.images[image.id] = image
        if pending.on_done == "remove":
            self.images.pop(pending.image_id, None)
            image = None
        pending.operation = replace(pending.operation, done=True, image=image)

    def _start(self, image_id: str, on_done: str, fail: CloudError | None = None) -> CloudOperation:
        operation = CloudOperation(
            id=self._new_id("op"), done=False, image_id=image_id, error=None, image=None, created_at=None
        )
        pending = _Pending(operation, on_done, image_id, fail)
        self.operations[operation.id] = pending
        if self.instant:
            self._finish(pending)
        return operation

    # --- the DesktopImageClient interface ---------------------------------------------------------------

    async def get_desktop_folder(self, desktop_id: str) -> str:
        self._record("get_desktop_folder", desktop_id=desktop_id)
        if desktop_id != DESKTOP:
            raise CloudError(Code.NOT_FOUND, f"desktop {desktop_id} not found")
        return FOLDER

    async def get_image(self, image_id: str) -> CloudImage:
        self._record("get_image", image_id=image_id)
        if image_id not in self.images:
            raise CloudError(Code.NOT_FOUND, f"image {image_id} not found", request_id="req-1")
        return self.images[image_id]

    async def find_images(self, folder_id: str, name: str) -> list[CloudImage]:
        self._record("find_images", folder_id=folder_id, name=name)
        return [i for i in self.images.values() if i.folder_id == folder_id and i.name == name]

    async def copy(self, request: CopyRequest, *, idempotency_key: str) -> CloudOperation:
        self._record("copy", request=request, key=idempotency_key)
        if idempotency_key in self.keys:
            return self.operations[self.keys[idempotency_key]].operation
        if any(i.name == request.name for i in self.images.values()):
            raise CloudError(Code.ALREADY_EXISTS, f"image {request.name} exists")
        image = self.add_image(request.name, request.labels, status=ImageStatus.CREATING)
        self.images[image.id] = replace(image, description=request.description)
        fail, self.fail_next_copy = self.fail_next_copy, None
        operation = self._start(image.id, "activate", fail)
        self.keys[idempotency_key] = operation.id
        return operation

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
        self._record("update", image_id=image_id, mask=list(mask), key=idempotency_key)
        image = self.images[image_id]
        changes: dict[str, object] = {}
        if "name" in mask:
            changes["name"] = name
        if "description" in mask:
            changes["description"] = description
        if "labels" in mask:
            changes["labels"] = dict(labels or {})
        self.images[image_id] = replace(image, **changes)  # type: ignore[arg-type]
        return self._start(image_id, "none")

    async def delete(self, image_id: str, *, idempotency_key: str) -> CloudOperation:
        self._record("delete", image_id=image_id, key=idempotency_key)
        if image_id not in self.images:
            raise CloudError(Code.NOT_FOUND, f"image {image_id} not found")
        self.images[image_id] = replace(self.images[image_id], status=ImageStatus.DELETING)
        return self._start(image_id, "remove")

    async def get_operation(self, operation_id: str) -> CloudOperation:
        self._record("get_operation", operation_id=operation_id)
        return self.operations[operation_id].operation

    async def cancel_operation(self, operation_id: str) -> CloudOperation:
        self._record("cancel_operation", operation_id=operation_id)
        return self.operations[operation_id].operation

    async def follow_operation(self, operation_id: str, *, max_wait: float | None = None) -> CloudOperation:
        self._record("follow_operation", operation_id=operation_id)
        pending = self.operations[operation_id]
        self._finish(pending)  # following waits until done: here, done at once
        return pending.operation
