"""Method names as the request log and fault rules spell them."""

from __future__ import annotations

LIST = "DesktopImageService.List"
GET = "DesktopImageService.Get"
COPY = "DesktopImageService.Copy"
COPY_FROM_DESKTOP = "DesktopImageService.CopyFromDesktop"
UPDATE = "DesktopImageService.Update"
DELETE = "DesktopImageService.Delete"
DESKTOP_GET = "DesktopService.Get"
OPERATION_GET = "OperationService.Get"
OPERATION_CANCEL = "OperationService.Cancel"
IAM_TOKEN_CREATE = "IamTokenService.Create"
METADATA_TOKEN = "Metadata.Token"

ALL = (
    LIST,
    GET,
    COPY,
    COPY_FROM_DESKTOP,
    UPDATE,
    DELETE,
    DESKTOP_GET,
    OPERATION_GET,
    OPERATION_CANCEL,
    IAM_TOKEN_CREATE,
    METADATA_TOKEN,
)

# Calls that start a long-running operation (and so honour Idempotency-Key).
STARTING_OPERATION = frozenset({COPY, COPY_FROM_DESKTOP, UPDATE, DELETE})

TRANSPORTS = ("rest", "grpc")
