"""The canonical proto3 JSON mapping of the REST API, read into the client's types.

int64 fields arrive as strings, timestamps as RFC 3339, `Any` values with `@type`. Parsing is lenient
about what the proto3 mapping allows (numbers as strings or numbers, missing defaults) and strict about
nothing else: an unexpected shape surfaces as a `CloudError(INTERNAL)` from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from desktop_image_operator.cloud.errors import CloudError, Code, QuotaViolation, StatusDetails
from desktop_image_operator.cloud.types import CloudImage, CloudOperation, ImageStatus

REQUEST_INFO_TYPE = "type.googleapis.com/google.rpc.RequestInfo"
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE_TYPE = "type.googleapis.com/google.rpc.QuotaFailure"
_EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"


def parse_int64(value: object) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError("boolean is not an int64")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"not an int64: {type(value).__name__}")


def parse_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        # 3.11's fromisoformat reads "Z" and truncates nanoseconds to microseconds.
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def parse_duration(value: object) -> float | None:
    """A proto3 JSON Duration ("1.5s") in seconds."""
    if isinstance(value, str) and value.endswith("s"):
        try:
            return float(value[:-1])
        except ValueError:
            return None
    return None


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _labels(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def image_from_json(data: Mapping[str, Any]) -> CloudImage:
    return CloudImage(
        id=_str(data, "id"),
        folder_id=_str(data, "folderId"),
        name=_str(data, "name"),
        description=_str(data, "description"),
        labels=_labels(data.get("labels")),
        status=ImageStatus.parse(data.get("status")),
        storage_size=parse_int64(data.get("storageSize")),
        min_disk_size=parse_int64(data.get("minDiskSize")),
        created_at=parse_timestamp(data.get("createdAt")),
    )


def desktop_folder_from_json(data: Mapping[str, Any]) -> str:
    """The folderId of a `Desktop`; ValueError when it is missing (no folder must ever be guessed)."""
    folder_id = _str(data, "folderId")
    if not folder_id:
        raise ValueError("the desktop has no folderId")
    return folder_id


def error_details(details: object) -> StatusDetails:
    """RequestInfo, RetryInfo and QuotaFailure from a `google.rpc.Status.details` list; others are ignored."""
    request_id: str | None = None
    retry_after: float | None = None
    violations: list[QuotaViolation] = []
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, Mapping):
            continue
        kind = detail.get("@type")
        if kind == REQUEST_INFO_TYPE and isinstance(detail.get("requestId"), str):
            request_id = detail["requestId"] or None
        elif kind == RETRY_INFO_TYPE:
            retry_after = parse_duration(detail.get("retryDelay"))
        elif kind == QUOTA_FAILURE_TYPE:
            violations.extend(_quota_violations(detail.get("violations")))
    return StatusDetails(request_id, retry_after, tuple(violations))


def _quota_violations(raw: object) -> list[QuotaViolation]:
    """The violations of a QuotaFailure; one naming nothing still says that a quota ran out."""
    items = raw if isinstance(raw, list) else []
    found = [
        QuotaViolation(_str(item, "subject"), _str(item, "description"), _str(item, "quotaMetric"))
        for item in items
        if isinstance(item, Mapping)
    ]
    return found or [QuotaViolation("", "")]


def error_from_status(
    data: Mapping[str, Any],
    *,
    fallback_code: Code = Code.UNKNOWN,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> CloudError:
    """A `google.rpc.Status` JSON object as a CloudError (header values fill what the body lacks)."""
    raw_code = data.get("code")
    code = fallback_code
    if isinstance(raw_code, int) and not isinstance(raw_code, bool) and raw_code != 0:
        code = Code.from_number(raw_code)
    elif isinstance(raw_code, str) and raw_code:
        # Some gateways spell the code by name.
        code = Code.from_number(int(raw_code)) if raw_code.isdigit() else Code.from_name(raw_code)
    details = error_details(data.get("details"))
    return CloudError(
        code,
        _str(data, "message"),
        request_id=details.request_id or request_id,
        retry_after=retry_after if retry_after is not None else details.retry_after,
        quota_violations=details.quota_violations,
    )


def _response_image(response: object) -> CloudImage | None:
    if not isinstance(response, Mapping) or not response:
        return None
    kind = response.get("@type")
    if kind == _EMPTY_TYPE:
        return None
    if (isinstance(kind, str) and kind.endswith(".DesktopImage")) or (
        kind is None and "id" in response and "folderId" in response
    ):
        return image_from_json(response)
    return None


def operation_from_json(data: Mapping[str, Any]) -> CloudOperation:
    metadata = data.get("metadata")
    image_id = _str(metadata, "imageId") if isinstance(metadata, Mapping) else ""
    error_data = data.get("error")
    error = error_from_status(error_data) if isinstance(error_data, Mapping) and error_data else None
    return CloudOperation(
        id=_str(data, "id"),
        done=bool(data.get("done", False)),
        image_id=image_id or None,
        error=error,
        image=_response_image(data.get("response")),
        created_at=parse_timestamp(data.get("createdAt")),
        modified_at=parse_timestamp(data.get("modifiedAt")),
        description=_str(data, "description"),
    )
