"""gRPC transport: the official DesktopImageService, DesktopService and OperationService stubs over
`grpc.aio` channels."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import grpc

from desktop_image_operator.cloud.errors import CloudError, Code
from desktop_image_operator.cloud.generated.yandex.cloud.clouddesktop.v1 import (
    desktop_image_service_pb2_grpc,
    desktop_service_pb2_grpc,
)
from desktop_image_operator.cloud.generated.yandex.cloud.operation import operation_service_pb2_grpc
from desktop_image_operator.cloud.transport import CallContext, ImagePage
from desktop_image_operator.cloud.transports import grpc_wire
from desktop_image_operator.cloud.types import CloudImage, CloudOperation, CopyRequest

# A generous receive limit because a full List page can be large.
_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.enable_retries", 0),  # retries are ours, with idempotency keys and shared limits
)


def open_channel(target: str, *, insecure: bool = False, user_agent: str = "") -> Any:
    """A `grpc.aio.Channel` to `target`: TLS with the system roots unless `insecure` (loopback fakes)."""
    options = _CHANNEL_OPTIONS + ((("grpc.primary_user_agent", user_agent),) if user_agent else ())
    if insecure:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(), options=options)


def _metadata(ctx: CallContext) -> tuple[tuple[str, str], ...]:
    metadata: tuple[tuple[str, str], ...] = (
        ("authorization", f"Bearer {ctx.token}"),
        ("x-request-id", ctx.request_id),
        ("x-client-trace-id", ctx.trace_id),
    )
    if ctx.idempotency_key:
        metadata += (("idempotency-key", ctx.idempotency_key),)
    return metadata


class GrpcTransport:
    """One RPC per call over channels owned by the session, each with a deadline of `timeout` seconds."""

    def __init__(self, desktop_channel: Any, operation_channel: Any, *, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._images = desktop_image_service_pb2_grpc.DesktopImageServiceStub(desktop_channel)
        self._desktops = desktop_service_pb2_grpc.DesktopServiceStub(desktop_channel)
        self._operations = operation_service_pb2_grpc.OperationServiceStub(operation_channel)

    def __repr__(self) -> str:
        return "GrpcTransport()"

    async def _invoke(self, ctx: CallContext, rpc: Any, request: Any) -> Any:
        try:
            # The deadline travels with the call: the server gives up on it too once it has passed.
            timeout = self._timeout if ctx.timeout is None else min(self._timeout, ctx.timeout)
            return await rpc(request, metadata=_metadata(ctx), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise grpc_wire.error_from_rpc_error(exc, ctx.request_id) from exc

    async def get_image(self, ctx: CallContext, image_id: str) -> CloudImage:
        answer = await self._invoke(ctx, self._images.Get, grpc_wire.get_image_request(image_id))
        return grpc_wire.image_from_proto(answer)

    async def list_images(
        self, ctx: CallContext, *, folder_id: str, filter: str, page_size: int, page_token: str
    ) -> ImagePage:
        request = grpc_wire.list_images_request(
            folder_id=folder_id, filter=filter, page_size=page_size, page_token=page_token
        )
        return grpc_wire.image_page_from_proto(await self._invoke(ctx, self._images.List, request))

    async def copy(self, ctx: CallContext, request: CopyRequest) -> CloudOperation:
        rpc = self._images.CopyFromDesktop if request.from_desktop else self._images.Copy
        answer = await self._invoke(ctx, rpc, grpc_wire.copy_request(request))
        return grpc_wire.operation_from_proto(answer)

    async def update(
        self,
        ctx: CallContext,
        image_id: str,
        *,
        mask: Collection[str],
        name: str | None,
        description: str | None,
        labels: Mapping[str, str] | None,
    ) -> CloudOperation:
        request = grpc_wire.update_request(
            image_id, mask=mask, name=name, description=description, labels=labels
        )
        answer = await self._invoke(ctx, self._images.Update, request)
        return grpc_wire.operation_from_proto(answer)

    async def delete(self, ctx: CallContext, image_id: str) -> CloudOperation:
        answer = await self._invoke(ctx, self._images.Delete, grpc_wire.delete_request(image_id))
        return grpc_wire.operation_from_proto(answer)

    async def get_desktop_folder(self, ctx: CallContext, desktop_id: str) -> str:
        answer = await self._invoke(ctx, self._desktops.Get, grpc_wire.get_desktop_request(desktop_id))
        folder_id = grpc_wire.desktop_folder_from_proto(answer)
        if not folder_id:
            # No folder must ever be guessed: images copied without one land in the desktop's folder.
            raise CloudError(Code.INTERNAL, "the desktop has no folder_id", request_id=ctx.request_id)
        return folder_id

    async def get_operation(self, ctx: CallContext, operation_id: str) -> CloudOperation:
        answer = await self._invoke(ctx, self._operations.Get, grpc_wire.get_operation_request(operation_id))
        return grpc_wire.operation_from_proto(answer)

    async def cancel_operation(self, ctx: CallContext, operation_id: str) -> CloudOperation:
        request = grpc_wire.cancel_operation_request(operation_id)
        answer = await self._invoke(ctx, self._operations.Cancel, request)
        return grpc_wire.operation_from_proto(answer)
