"""The records the fake keeps: clouds, folders, source desktops and Compute images, images, operations."""

from __future__ import annotations

import dataclasses
from typing import TypeAlias

from google.protobuf.message import Message
from yandex.cloud.clouddesktop.v1 import desktop_image_pb2, desktop_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2

from desktop_image_operator_dev.fakecloud import methods
from desktop_image_operator_dev.fakecloud.clock import rfc3339, to_timestamp
from desktop_image_operator_dev.fakecloud.codes import StatusCode

# DesktopImage.Status values, as in the official enum.
ProtoImageStatus: TypeAlias = desktop_image_pb2.DesktopImage.Status.ValueType
IMAGE_CREATING: ProtoImageStatus = desktop_image_pb2.DesktopImage.CREATING
IMAGE_ACTIVE: ProtoImageStatus = desktop_image_pb2.DesktopImage.ACTIVE
IMAGE_DELETING: ProtoImageStatus = desktop_image_pb2.DesktopImage.DELETING


@dataclasses.dataclass
class Cloud:
    id: str
    name: str

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name}


@dataclasses.dataclass
class Folder:
    id: str
    cloud_id: str
    name: str

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "cloudId": self.cloud_id, "name": self.name}


@dataclasses.dataclass
class Desktop:
    """A Cloud Desktop that images can be copied from; `status` is a Desktop.Status name."""

    id: str
    folder_id: str
    name: str
    status: str
    storage_size: int
    min_disk_size: int
    created_at: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "folderId": self.folder_id,
            "name": self.name,
            "status": self.status,
            "storageSize": self.storage_size,
            "minDiskSize": self.min_disk_size,
            "createdAt": rfc3339(self.created_at),
        }

    def to_proto(self) -> desktop_pb2.Desktop:
        """The desktop as DesktopService.Get answers it (the fake keeps no resources, users or network)."""
        return desktop_pb2.Desktop(
            id=self.id,
            folder_id=self.folder_id,
            created_at=to_timestamp(self.created_at),
            status=desktop_pb2.Desktop.Status.Value(self.status),
            name=self.name,
        )


@dataclasses.dataclass
class ComputeImage:
    id: str
    folder_id: str
    name: str
    storage_size: int
    min_disk_size: int

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "folderId": self.folder_id,
            "name": self.name,
            "storageSize": self.storage_size,
            "minDiskSize": self.min_disk_size,
        }


@dataclasses.dataclass
class Image:
    """A desktop image; `busy_operation_id` names the operation currently working on it."""

    id: str
    folder_id: str
    cloud_id: str
    name: str
    description: str
    labels: dict[str, str]
    status: ProtoImageStatus
    storage_size: int
    min_disk_size: int
    created_at: float
    busy_operation_id: str | None = None

    def to_proto(self) -> desktop_image_pb2.DesktopImage:
        return desktop_image_pb2.DesktopImage(
            id=self.id,
            folder_id=self.folder_id,
            created_at=to_timestamp(self.created_at),
            status=self.status,
            name=self.name,
            labels=self.labels,
            description=self.description,
            storage_size=self.storage_size,
            min_disk_size=self.min_disk_size,
        )


@dataclasses.dataclass(frozen=True)
class OperationKind:
    method: str
    description: str
    metadata_type: type[Message]


COPY = OperationKind(methods.COPY, "Copy desktop image", service_pb2.CopyDesktopImageMetadata)
COPY_FROM_DESKTOP = OperationKind(
    methods.COPY_FROM_DESKTOP, "Copy desktop image from desktop", service_pb2.CopyFromDesktopMetadata
)
UPDATE = OperationKind(methods.UPDATE, "Update desktop image", service_pb2.UpdateDesktopImageMetadata)
DELETE = OperationKind(methods.DELETE, "Delete desktop image", service_pb2.DeleteDesktopImageMetadata)


@dataclasses.dataclass
class Operation:
    """A long-running operation; it is settled (done) once the clock passes `due_at`."""

    id: str
    kind: OperationKind
    image_id: str
    created_by: str
    created_at: float
    due_at: float
    modified_at: float
    done: bool = False
    error: tuple[StatusCode, str] | None = None
    response: Message | None = None
    # An error the operation is bound to end with (a fault rule or a cancellation decided it).
    planned_error: tuple[StatusCode, str] | None = None
    # For Update: the field values to apply when the operation ends.
    changes: dict[str, object] = dataclasses.field(default_factory=dict)
