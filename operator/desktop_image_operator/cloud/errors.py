"""Errors of the cloud client: one exception type carrying the gRPC status code, message, request id and
what the status details say (a retry hint, quota violations).

Both transports and the token sources raise `CloudError`, so the reconciler has one thing to catch and one
`retryable` property to consult. Errors are told apart by codes and details, never by message text.
"""

from __future__ import annotations

import email.utils
import enum
import math
import time
from dataclasses import dataclass


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


@dataclass(frozen=True)
class QuotaViolation:
    """One violation of a `google.rpc.QuotaFailure` detail: whose quota (`subject`, e.g. a cloud id) ran out,
    and which (`quota_metric`, e.g. `vdi.desktopImages.count`; "" when the server did not name it)."""

    subject: str
    description: str
    quota_metric: str = ""


@dataclass(frozen=True)
class StatusDetails:
    """What the details of a `google.rpc.Status` say, whichever transport carried them."""

    request_id: str | None = None
    retry_after: float | None = None
    quota_violations: tuple[QuotaViolation, ...] = ()


class CloudError(Exception):
    """A failed cloud call (or a failed operation) as the cloud reported it.

    `message` is the cloud's own text (never a token or key: callers scrub what they send), `request_id`
    the id to quote to support, `retry_after` the server's hint in seconds when it gave one,
    `quota_violations` the QuotaFailure detail's violations when the status carried one.
    """

    def __init__(
        self,
        code: Code,
        message: str,
        *,
        request_id: str | None = None,
        retry_after: float | None = None,
        quota_violations: tuple[QuotaViolation, ...] = (),
    ) -> None:
        super().__init__(code, message, request_id)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.quota_violations = quota_violations

    def with_message(self, message: str) -> CloudError:
        """The same error (code, ids, hints, details) with another message."""
        return CloudError(
            self.code,
            message,
            request_id=self.request_id,
            retry_after=self.retry_after,
            quota_violations=self.quota_violations,
        )

    @property
    def quota_exceeded(self) -> bool:
        """RESOURCE_EXHAUSTED with a QuotaFailure detail: a quota is used up and waiting does not help.

        Without the detail the same code is throttling, whatever the message says.
        """
        return self.code is Code.RESOURCE_EXHAUSTED and bool(self.quota_violations)

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


def parse_retry_after(value: str | None) -> float | None:
    """A `Retry-After` value (REST header or gRPC metadata) as seconds from now: delta-seconds or an HTTP
    date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
