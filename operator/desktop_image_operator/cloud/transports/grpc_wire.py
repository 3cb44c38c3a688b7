"""The protobuf side of the gRPC transport: building request messages and reading answers into the
client's types. protobuf and grpc ship no type information, so every untyped value stays in here."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf import empty_pb2, field_mask_pb2
from google.rpc import error_details_pb2, status_pb2

from desktop_image_operator.cloud.errors import (
    CloudError,
    Code,
    QuotaViolation,
    StatusDetails,
    parse_retry_after,
)
from desktop_image_operator.cloud.generated.yandex.cloud.clouddesktop.v1 import (
    desktop_image_pb2,
    desktop_image_service_pb2,
    desktop_service_pb2,
)
from desktop_image_operator.cloud.generated.yandex.cloud.operation import operation_service_pb2
from desktop_image_operator.cloud.transport import ImagePage
from desktop_image_operator.cloud.types import CloudImage, CloudOperation, CopyRequest, ImageStatus

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_IMAGE_TYPE = desktop_image_pb2.DesktopImage.DESCRIPTOR.full_name
_EMPTY_TYPE = empty_pb2.Empty.DESCRIPTOR.full_name
_REQUEST_INFO_TYPE = error_details_pb2.RequestInfo.DESCRIPTOR.full_name
_RETRY_INFO_TYPE = error_details_pb2.RetryInfo.DESCRIPTOR.full_name
_QUOTA_FAILURE_TYPE = error_details_pb2.QuotaFailure.DESCRIPTOR.full_name


# --- requests --------------------------------------------------------------------------------------------


def get_image_request(image_id: str) -> Any:
    return desktop_image_service_pb2.GetDesktopImageRequest(image_id=image_id)


def list_images_request(*, folder_id: str, filter: str, page_size: int, page_token: str) -> Any:
    return desktop_image_service_pb2.ListDesktopImagesRequest(
        folder_id=folder_id, filter=filter, page_size=page_size, page_token=page_token
    )


def copy_request(request: CopyRequest) -> Any:
    if request.desktop_id is not None:
        return desktop_image_service_pb2.CopyFromDesktopRequest(
            desktop_id=request.desktop_id,
            folder_id=request.folder_id or "",
            name=request.name,
            description=request.description,
            labels=dict(request.labels),
        )
    return desktop_image_service_pb2.CopyDesktopImageRequest(
        image_id=request.compute_image_id or "",
        folder_id=request.folder_id or "",
        name=request.name,
        description=request.description,
        labels=dict(request.labels),
    )


def update_request(
    image_id: str,
    *,
    mask: Collection[str],
    name: str | None,
    description: str | None,
    labels: Mapping[str, str] | None,
) -> Any:
    return desktop_image_service_pb2.UpdateDesktopImageRequest(
        image_id=image_id,
        update_mask=field_mask_pb2.FieldMask(paths=sorted(mask)),
        name=name or "",
        description=description or "",
        labels=dict(labels or {}),
    )


def delete_request(image_id: str) -> Any:
    return desktop_image_service_pb2.DeleteDesktopImageRequest(image_id=image_id)


def get_desktop_request(desktop_id: str) -> Any:
    return desktop_service_pb2.GetDesktopRequest(desktop_id=desktop_id)


def get_operation_request(operation_id: str) -> Any:
    return operation_service_pb2.GetOperationRequest(operation_id=operation_id)


def cancel_operation_request(operation_id: str) -> Any:
    return operation_service_pb2.CancelOperationRequest(operation_id=operation_id)


# --- answers ---------------------------------------------------------------------------------------------


def _timestamp(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value


def image_from_proto(message: Any) -> CloudImage:
    return CloudImage(
        id=str(message.id),
        folder_id=str(message.folder_id),
        name=str(message.name),
        description=str(message.description),
        labels={str(k): str(v) for k, v in message.labels.items()},
        status=ImageStatus.parse(int(message.status)),
        storage_size=int(message.storage_size),
        min_disk_size=int(message.min_disk_size),
        created_at=_timestamp(message, "created_at"),
    )


def desktop_folder_from_proto(message: Any) -> str:
    """The folder_id of a `Desktop`; "" when missing (the transport refuses that)."""
    return str(message.folder_id)


def image_page_from_proto(message: Any) -> ImagePage:
    """A `ListDesktopImagesResponse`."""
    images = [image_from_proto(item) for item in message.desktop_images]
    return ImagePage(images=images, next_page_token=str(message.next_page_token))


def _type_name(any_message: Any) -> str:
    return str(any_message.type_url).rsplit("/", 1)[-1]


def _details(details: Iterable[Any]) -> StatusDetails:
    """RequestInfo, RetryInfo and QuotaFailure from `google.rpc.Status.details`; others are ignored."""
    request_id: str | None = None
    retry_after: float | None = None
    violations: list[QuotaViolation] = []
    for detail in details:
        kind = _type_name(detail)
        if kind == _REQUEST_INFO_TYPE:
            info = error_details_pb2.RequestInfo()
            detail.Unpack(info)
            request_id = str(info.request_id) or None
        elif kind == _RETRY_INFO_TYPE:
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToTimedelta().total_seconds()
        elif kind == _QUOTA_FAILURE_TYPE:
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            violations.extend(_quota_violations(quota))
    return StatusDetails(request_id, retry_after, tuple(violations))


def _quota_violations(quota: Any) -> list[QuotaViolation]:
    """The violations of a QuotaFailure; one naming nothing still says that a quota ran out."""
    found = [
        QuotaViolation(str(item.subject), str(item.description), str(item.quota_metric))
        for item in quota.violations
    ]
    return found or [QuotaViolation("", "")]


def error_from_status_proto(status: Any, *, request_id: str | None = None) -> CloudError:
    details = _details(status.details)
    return CloudError(
        Code.from_number(int(status.code)),
        str(status.message),
        request_id=details.request_id or request_id,
        retry_after=details.retry_after,
        quota_violations=details.quota_violations,
    )


def operation_from_proto(message: Any) -> CloudOperation:
    image_id: str | None = None
    if message.HasField("metadata"):
        # Every metadata type of this service (Copy/CopyFromDesktop/Update/Delete) is {string image_id = 1}.
        metadata = desktop_image_service_pb2.CopyDesktopImageMetadata.FromString(message.metadata.value)
        image_id = str(metadata.image_id) or None
    result = message.WhichOneof("result")
    error = error_from_status_proto(message.error) if result == "error" else None
    image: CloudImage | None = None
    if result == "response" and _type_name(message.response) == _IMAGE_TYPE:
        image = image_from_proto(desktop_image_pb2.DesktopImage.FromString(message.response.value))
    return CloudOperation(
        id=str(message.id),
        done=bool(message.done),
        image_id=image_id,
        error=error,
        image=image,
        created_at=_timestamp(message, "created_at"),
        modified_at=_timestamp(message, "modified_at"),
        description=str(message.description),
    )


def error_from_rpc_error(exc: Any, sent_request_id: str | None) -> CloudError:
    """A failed RPC (`grpc.aio.AioRpcError`) as a CloudError: the code and message of the call, and what
    `grpc-status-details-bin`, `retry-after` and `x-request-id` in its metadata say.

    A RetryInfo detail wins over `retry-after`, and RequestInfo over `x-request-id`."""
    code = Code.from_name(exc.code().name) if exc.code() is not None else Code.UNKNOWN
    message = str(exc.details() or "")
    details = StatusDetails()
    header_request_id: str | None = None
    header_retry_after: float | None = None
    for key, value in tuple(exc.trailing_metadata() or ()) + tuple(exc.initial_metadata() or ()):
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = _status_from_bytes(value)
            if status is not None:
                details = _details(status.details)
                message = message or str(status.message)
        elif key == "retry-after" and header_retry_after is None and isinstance(value, str):
            header_retry_after = parse_retry_after(value)
        elif key == "x-request-id" and header_request_id is None and isinstance(value, str):
            header_request_id = value
    return CloudError(
        code,
        message,
        request_id=details.request_id or header_request_id or sent_request_id,
        retry_after=details.retry_after if details.retry_after is not None else header_retry_after,
        quota_violations=details.quota_violations,
    )


def _status_from_bytes(value: bytes) -> Any:
    """The `google.rpc.Status` in `grpc-status-details-bin`; None when the blob is corrupt (it must not hide
    the real error)."""
    try:
        return status_pb2.Status.FromString(value)
    except Exception:
        return None
