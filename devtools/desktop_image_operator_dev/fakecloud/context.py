"""What a handler knows about the call it serves."""

from __future__ import annotations

import dataclasses

from desktop_image_operator_dev.fakecloud.codes import StatusCode


@dataclasses.dataclass
class CallContext:
    """`principal` is the calling service account ("" before authentication; the IAM exchange sets it)."""

    principal: str
    idempotency_key: str | None = None
    # Set when a fault rule wants the operation this call starts to end with this error.
    fail_operation: tuple[StatusCode, str] | None = None
    # Whether an operation was started with that error (a refused or replayed call starts none).
    fail_operation_used: bool = False
