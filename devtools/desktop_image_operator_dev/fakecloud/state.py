"""The one in-memory state behind both transports.

Everything runs on one event loop, so no locks: each call reads and changes the state without awaiting
in between.
"""

from __future__ import annotations

import heapq
from typing import TypeVar

from desktop_image_operator_dev.fakecloud import seeds
from desktop_image_operator_dev.fakecloud.clock import Clock
from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode
from desktop_image_operator_dev.fakecloud.config import FakeCloudConfig
from desktop_image_operator_dev.fakecloud.faults import FaultSet
from desktop_image_operator_dev.fakecloud.iam import Iam
from desktop_image_operator_dev.fakecloud.model import Cloud, ComputeImage, Desktop, Folder, Image, Operation
from desktop_image_operator_dev.fakecloud.requestlog import RequestLog

T = TypeVar("T")


class FakeState:
    def __init__(self, config: FakeCloudConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.iam = Iam(clock, lambda: self.config.token_ttl_seconds)
        self.requests = RequestLog(config.request_log_size)
        self.faults = FaultSet()
        self.clouds: dict[str, Cloud] = {}
        self.folders: dict[str, Folder] = {}
        self.desktops: dict[str, Desktop] = {}
        self.compute_images: dict[str, ComputeImage] = {}
        self.images: dict[str, Image] = {}
        self.operations: dict[str, Operation] = {}
        # (due time, sequence, operation id) of operations not done yet, soonest first.
        self.pending: list[tuple[float, int, str]] = []
        self.pending_sequence = 0
        # (principal, method, Idempotency-Key) -> operation id
        self.idempotency: dict[tuple[str, str, str], str] = {}
        self.load_seeds()

    def load_seeds(self) -> None:
        self.clouds = {cloud.id: cloud for cloud in seeds.clouds()}
        self.folders = {folder.id: folder for folder in seeds.folders()}
        self.desktops = {desktop.id: desktop for desktop in seeds.desktops()}
        self.compute_images = {image.id: image for image in seeds.compute_images()}

    def reset(self) -> None:
        """Back to the state at start; service accounts, keys, issued tokens and config stay."""
        self.images.clear()
        self.operations.clear()
        self.pending.clear()
        self.idempotency.clear()
        self.requests.clear()
        self.faults.clear()
        self.load_seeds()

    def schedule(self, operation: Operation) -> None:
        self.pending_sequence += 1
        heapq.heappush(self.pending, (operation.due_at, self.pending_sequence, operation.id))

    # Look-ups that fail the way the cloud does.

    def folder(self, folder_id: str) -> Folder:
        folder = self.folders.get(folder_id)
        if folder is None:
            # The cloud does not reveal whether a folder it will not show you exists.
            raise ApiError(StatusCode.PERMISSION_DENIED, f"Permission denied to folder {folder_id}")
        return folder

    def desktop(self, desktop_id: str) -> Desktop:
        return _existing(self.desktops, desktop_id, "Desktop")

    def compute_image(self, image_id: str) -> ComputeImage:
        return _existing(self.compute_images, image_id, "Image")

    def image(self, image_id: str) -> Image:
        return _existing(self.images, image_id, "Desktop image")

    def operation(self, operation_id: str) -> Operation:
        return _existing(self.operations, operation_id, "Operation")


def _existing(table: dict[str, T], key: str, kind: str) -> T:
    found = table.get(key)
    if found is None:
        raise ApiError(StatusCode.NOT_FOUND, f"{kind} {key} not found")
    return found
