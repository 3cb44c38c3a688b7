"""Errors of the cloud client: one exception type carrying the gRPC status code, message and request id.

Both transports and the token sources raise `CloudError`, so the reconciler has one thing to catch and one
`retryable` property to consult.
"""

from __future__ import annotations

import enum


class Code(enum.Enum):
    """gRPC status codes by name (the value is the numeric code in `google.rpc.Status`)."""

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

    @classmethod
    def from_number(cls, number: int) -> Code:
        try:
            return cls(number)
        except ValueError:
            return cls.UNKNOWN

    @classmethod
    def from_name(cls, name: str) -> Code:
        return cls.__members__.get(name.upper(), cls.UNKNOWN)

    @classmethod
    def from_http_status(cls, status: int) -> Code:
        """The code for an HTTP status when the body carries no `google.rpc.Status`."""
        if 200 <= status < 300:
            return cls.OK
        return _HTTP_TO_CODE.get(status, cls.INTERNAL if status >= 500 else cls.UNKNOWN)


# The standard gRPC <-> HTTP mapping, as the Yandex Cloud API gateway applies it. 400 is ambiguous
# (INVALID_ARGUMENT or FAILED_PRECONDITION); the body's code wins whenever there is one.
_HTTP_TO_CODE: dict[int, Code] = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    409: Code.ABORTED,
    429: Code.RESOURCE_EXHAUSTED,
    499: Code.CANCELLED,
    500: Code.INTERNAL,
    501: Code.UNIMPLEMENTED,
    502: Code.UNAVAILABLE,
    503: Code.UNAVAILABLE,
    504: Code.DEADLINE_EXCEEDED,
}

# Transient failures: the same call may well succeed a little later.
RETRYABLE_CODES: frozenset[Code] = frozenset(
    {Code.UNAVAILABLE, Code.RESOURCE_EXHAUSTED, Code.INTERNAL, Code.DEADLINE_EXCEEDED}
)


class CloudError(Exception):
    """A failed cloud call (or a failed operation) as the cloud reported it.

    `message` is the cloud's own text (never a token or key: callers scrub what they send), `request_id`
    the id to quote to support, `retry_after` the server's hint in seconds when it gave one.
    """

    def __init__(
        self,
        code: Code,
        message: str,
        *,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, message, request_id)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def quota_exceeded(self) -> bool:
        """RESOURCE_EXHAUSTED because a quota is used up (not a rate limit): waiting does not help."""
        return self.code is Code.RESOURCE_EXHAUSTED and "quota" in self.message.lower()

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES and not self.quota_exceeded

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}" if self.message else self.code.name
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, message={self.message!r}, "
            f"request_id={self.request_id!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CloudError):
            return NotImplemented
        return (type(self), self.code, self.message, self.request_id) == (
            type(other),
            other.code,
            other.message,
            other.request_id,
        )

    def __hash__(self) -> int:
        return hash((type(self), self.code, self.message, self.request_id))


class CredentialsError(CloudError):
    """The credentials themselves are unusable: a malformed key, or IAM refusing to issue a token for it.

    A `CloudError`, so generic handling works, but distinct so the reconciler can say "credentials invalid".
    """

    def __init__(
        self,
        message: str,
        *,
        code: Code = Code.UNAUTHENTICATED,
        request_id: str | None = None,
    ) -> None:
        super().__init__(code, message, request_id=request_id)
