"""The raw wire interface both transports implement: one attempt per call, no retries, no limits.

The shared behaviour (tokens, limits, retries, metrics, operation polling) lives once in
`client.ManagedClient`, on top of this.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from desktop_image_operator.cloud.types import CloudImage, CloudOperation, CopyRequest


@dataclass(frozen=True)
class CallContext:
    """Per-attempt request headers. The token is excluded from repr so a logged context leaks nothing.

    Timeouts are the transport's own (the shared HTTP client's, the gRPC transport's deadline), cut to
    `timeout` when it is given: what is left of the leader's fence, so no request outlives it."""

    token: str = field(repr=False)
    request_id: str
    trace_id: str
    idempotency_key: str | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class ImagePage:
    images: list[CloudImage]
    next_page_token: str


class Transport(Protocol):
    """One wire protocol (REST or gRPC). Each method raises `CloudError` and sends one request."""

    async def get_image(self, ctx: CallContext, image_id: str) -> CloudImage: ...

    async def list_images(
        self, ctx: CallContext, *, folder_id: str, filter: str, page_size: int, page_token: str
    ) -> ImagePage: ...

    async def copy(self, ctx: CallContext, request: CopyRequest) -> CloudOperation: ...

    async def update(
        self,
        ctx: CallContext,
        image_id: str,
        *,
        mask: Collection[str],
        name: str | None,
        description: str | None,
        labels: Mapping[str, str] | None,
    ) -> CloudOperation: ...

    async def delete(self, ctx: CallContext, image_id: str) -> CloudOperation: ...

    async def get_desktop_folder(self, ctx: CallContext, desktop_id: str) -> str:
        """`DesktopService.Get`, read down to the desktop's folderId (never empty)."""
        ...

    async def get_operation(self, ctx: CallContext, operation_id: str) -> CloudOperation: ...

    async def cancel_operation(self, ctx: CallContext, operation_id: str) -> CloudOperation: ...


# Metric / log names of the calls, `Service.Method` as in the gRPC API.
METHOD_LIST = "DesktopImageService.List"
METHOD_GET = "DesktopImageService.Get"
METHOD_COPY = "DesktopImageService.Copy"
METHOD_COPY_FROM_DESKTOP = "DesktopImageService.CopyFromDesktop"
METHOD_UPDATE = "DesktopImageService.Update"
METHOD_DELETE = "DesktopImageService.Delete"
METHOD_DESKTOP_GET = "DesktopService.Get"
METHOD_OPERATION_GET = "OperationService.Get"
METHOD_OPERATION_CANCEL = "OperationService.Cancel"
METHOD_IAM_CREATE_TOKEN = "IamTokenService.Create"
METHOD_METADATA_TOKEN = "Metadata.Token"
