"""REST JSON through the official messages, so it is exactly the canonical proto3 JSON mapping.

camelCase names, int64 as strings, Timestamps as RFC 3339, `Any` with `@type`; fields holding their
default value are left out, as the mapping allows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode

M = TypeVar("M", bound=Message)


def to_json(message: Message) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message)
    return result


def from_json(data: object, message_type: type[M]) -> M:
    """Parse a request body; anything the mapping rejects (unknown field, wrong type) is INVALID_ARGUMENT."""
    if not isinstance(data, Mapping):
        raise ApiError(StatusCode.INVALID_ARGUMENT, "request body must be a JSON object")
    message: M = message_type()
    try:
        json_format.ParseDict(data, message)
    except json_format.ParseError as exc:
        raise ApiError(StatusCode.INVALID_ARGUMENT, f"invalid request body: {exc}") from None
    return message


def decode_body(raw: bytes) -> object:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(StatusCode.INVALID_ARGUMENT, f"request body is not valid JSON: {exc}") from None


def dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status(
    code: StatusCode, message: str, request_id: str | None = None, details: tuple[Message, ...] = ()
) -> status_pb2.Status:
    """A google.rpc.Status; with a request id it carries a RequestInfo detail, as the cloud's errors do,
    then any further `details`."""
    result = status_pb2.Status(code=int(code), message=message)
    if request_id is not None:
        result.details.append(pack(error_details_pb2.RequestInfo(request_id=request_id)))
    result.details.extend(pack(detail) for detail in details)
    return result


def error_status(error: ApiError, request_id: str) -> status_pb2.Status:
    """The google.rpc.Status a failed call answers with."""
    return status(error.code, error.message, request_id, error.details)
