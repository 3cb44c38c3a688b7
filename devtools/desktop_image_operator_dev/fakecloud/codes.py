"""google.rpc status codes, their HTTP mapping, and the error every fake handler raises."""

from __future__ import annotations

import enum

from google.protobuf.message import Message


class StatusCode(enum.IntEnum):
    """The canonical google.rpc.Code values, shared by gRPC and the REST error bodies."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self]

    @classmethod
    def parse(cls, value: object) -> StatusCode:
        """A code from its number or its name (any case); ValueError otherwise."""
        if isinstance(value, bool):
            raise ValueError(f"not a status code: {value!r}")
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                raise ValueError(f"unknown status code number {value}") from None
        if isinstance(value, str):
            text = value.strip()
            if text.isdigit():
                return cls.parse(int(text))
            try:
                return cls[text.upper()]
            except KeyError:
                raise ValueError(f"unknown status code name {value!r}") from None
        raise ValueError(f"not a status code: {value!r}")


# The mapping Yandex Cloud (like grpc-gateway) uses between status codes and HTTP statuses.
_HTTP_STATUS: dict[StatusCode, int] = {
    StatusCode.OK: 200,
    StatusCode.CANCELLED: 499,
    StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.FAILED_PRECONDITION: 400,
    StatusCode.ABORTED: 409,
    StatusCode.OUT_OF_RANGE: 400,
    StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DATA_LOSS: 500,
    StatusCode.UNAUTHENTICATED: 401,
}


class ApiError(Exception):
    """A call failed with a google.rpc status; both transports render it.

    `details` go into the status after its RequestInfo (e.g. a QuotaFailure); `retry_after` (seconds) becomes
    a `Retry-After` header on REST and `retry-after` trailing metadata on gRPC.
    """

    def __init__(
        self,
        code: StatusCode,
        message: str,
        *,
        details: tuple[Message, ...] = (),
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after
