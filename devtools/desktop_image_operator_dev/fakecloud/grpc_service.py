"""The gRPC side: the official servicers over grpc.aio, sharing the dispatcher and state with REST."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc
from yandex.cloud.clouddesktop.v1 import (
    desktop_image_pb2,
    desktop_pb2,
    desktop_service_pb2,
    desktop_service_pb2_grpc,
)
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2_grpc as service_grpc
from yandex.cloud.iam.v1 import iam_token_service_pb2, iam_token_service_pb2_grpc
from yandex.cloud.operation import operation_pb2, operation_service_pb2, operation_service_pb2_grpc

from desktop_image_operator_dev.fakecloud import methods
from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode
from desktop_image_operator_dev.fakecloud.context import CallContext
from desktop_image_operator_dev.fakecloud.desktops import DesktopService
from desktop_image_operator_dev.fakecloud.dispatch import CallMeta, Dispatcher
from desktop_image_operator_dev.fakecloud.images import DesktopImageService, sent_mask
from desktop_image_operator_dev.fakecloud.operations import OperationService
from desktop_image_operator_dev.fakecloud.protojson import error_status
from desktop_image_operator_dev.fakecloud.tokens import IamTokenService

T = TypeVar("T")

_STATUS_CODES: dict[int, Any] = {code.value[0]: code for code in grpc.StatusCode}
DROPPED_MESSAGE = "Connection dropped before the response was sent"


class _Calls:
    """Turns one gRPC call into a dispatcher run and its outcome into a reply or an abort."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    async def run(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        handler: Callable[[CallContext], T],
        *,
        authenticate: bool = True,
        update_mask: list[str] | None = None,
    ) -> T:
        metadata = {key.lower(): value for key, value in (context.invocation_metadata() or ())}
        meta = CallMeta(
            transport="grpc",
            method=method,
            authorization=_text(metadata.get("authorization")),
            idempotency_key=_text(metadata.get("idempotency-key")),
            request_id=_text(metadata.get("x-request-id")),
            update_mask=update_mask,
        )
        outcome = await self._dispatcher.run(meta, handler, authenticate=authenticate)
        ids = (("x-request-id", outcome.request_id), ("x-server-trace-id", outcome.trace_id))
        if outcome.drop:
            await _abort(context, ApiError(StatusCode.UNAVAILABLE, DROPPED_MESSAGE), outcome.request_id, ids)
        if outcome.error is not None:
            await _abort(context, outcome.error, outcome.request_id, ids)
        await context.send_initial_metadata(ids)
        assert outcome.response is not None
        return outcome.response


async def _abort(
    context: grpc.aio.ServicerContext,
    error: ApiError,
    request_id: str,
    ids: tuple[tuple[str, str], ...],
) -> NoReturn:
    trailing: tuple[tuple[str, str | bytes], ...] = (
        *ids,
        ("grpc-status-details-bin", error_status(error, request_id).SerializeToString()),
    )
    if error.retry_after is not None:
        trailing += (("retry-after", str(error.retry_after)),)
    await context.abort(_STATUS_CODES[int(error.code)], error.message, trailing_metadata=trailing)
    raise AssertionError("abort returned")  # context.abort always raises


async def _unimplemented(context: grpc.aio.ServicerContext, method: str) -> NoReturn:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"the fake cloud does not serve {method}")
    raise AssertionError("abort returned")


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return value if isinstance(value, str) and value else None


class DesktopImageServicer(service_grpc.DesktopImageServiceServicer):
    def __init__(self, calls: _Calls, images: DesktopImageService) -> None:
        self._calls = calls
        self._images = images

    async def List(
        self, request: service_pb2.ListDesktopImagesRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ListDesktopImagesResponse:
        return await self._calls.run(context, methods.LIST, lambda ctx: self._images.list(request, ctx))

    async def Get(
        self, request: service_pb2.GetDesktopImageRequest, context: grpc.aio.ServicerContext
    ) -> desktop_image_pb2.DesktopImage:
        return await self._calls.run(context, methods.GET, lambda ctx: self._images.get(request, ctx))

    async def Copy(
        self, request: service_pb2.CopyDesktopImageRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        return await self._calls.run(context, methods.COPY, lambda ctx: self._images.copy(request, ctx))

    async def CopyFromDesktop(
        self, request: service_pb2.CopyFromDesktopRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        return await self._calls.run(
            context, methods.COPY_FROM_DESKTOP, lambda ctx: self._images.copy_from_desktop(request, ctx)
        )

    async def Update(
        self, request: service_pb2.UpdateDesktopImageRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        return await self._calls.run(
            context,
            methods.UPDATE,
            lambda ctx: self._images.update(request, ctx),
            update_mask=sent_mask(request),
        )

    async def Delete(
        self, request: service_pb2.DeleteDesktopImageRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        return await self._calls.run(context, methods.DELETE, lambda ctx: self._images.delete(request, ctx))


class DesktopServicer(desktop_service_pb2_grpc.DesktopServiceServicer):
    """Only Get, to read a desktop's folder; desktops change through the admin API, so the rest is
    UNIMPLEMENTED (the stubs declare every method abstract)."""

    def __init__(self, calls: _Calls, desktops: DesktopService) -> None:
        self._calls = calls
        self._desktops = desktops

    async def Get(
        self, request: desktop_service_pb2.GetDesktopRequest, context: grpc.aio.ServicerContext
    ) -> desktop_pb2.Desktop:
        return await self._calls.run(
            context, methods.DESKTOP_GET, lambda ctx: self._desktops.get(request, ctx)
        )

    async def GetRdpFile(
        self, request: desktop_service_pb2.GetRdpFileRequest, context: grpc.aio.ServicerContext
    ) -> desktop_service_pb2.RdpFileResponse:
        await _unimplemented(context, "DesktopService.GetRdpFile")

    async def List(
        self, request: desktop_service_pb2.ListDesktopsRequest, context: grpc.aio.ServicerContext
    ) -> desktop_service_pb2.ListDesktopsResponse:
        await _unimplemented(context, "DesktopService.List")

    async def ListOperations(
        self, request: desktop_service_pb2.ListDesktopOperationsRequest, context: grpc.aio.ServicerContext
    ) -> desktop_service_pb2.ListDesktopOperationsResponse:
        await _unimplemented(context, "DesktopService.ListOperations")

    async def Create(
        self, request: desktop_service_pb2.CreateDesktopRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        await _unimplemented(context, "DesktopService.Create")

    async def ResetPassword(
        self, request: desktop_service_pb2.ResetPasswordRequest, context: grpc.aio.ServicerContext
    ) -> desktop_service_pb2.ResetPasswordResponse:
        await _unimplemented(context, "DesktopService.ResetPassword")

    async def Restart(
        self, request: desktop_service_pb2.RestartRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        await _unimplemented(context, "DesktopService.Restart")

    async def Start(
        self, request: desktop_service_pb2.StartRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        await _unimplemented(context, "DesktopService.Start")

    async def Stop(
        self, request: desktop_service_pb2.StopRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        await _unimplemented(context, "DesktopService.Stop")

    async def Update(
        self, request: desktop_service_pb2.UpdateRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        await _unimplemented(context, "DesktopService.Update")

    async def UpdateProperties(
        self, request: desktop_service_pb2.UpdatePropertiesRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        await _unimplemented(context, "DesktopService.UpdateProperties")

    async def Delete(
        self, request: desktop_service_pb2.DeleteDesktopRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        await _unimplemented(context, "DesktopService.Delete")


class OperationServicer(operation_service_pb2_grpc.OperationServiceServicer):
    def __init__(self, calls: _Calls, operations: OperationService) -> None:
        self._calls = calls
        self._operations = operations

    async def Get(
        self, request: operation_service_pb2.GetOperationRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        return await self._calls.run(
            context, methods.OPERATION_GET, lambda ctx: self._operations.get(request, ctx)
        )

    async def Cancel(
        self, request: operation_service_pb2.CancelOperationRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        return await self._calls.run(
            context, methods.OPERATION_CANCEL, lambda ctx: self._operations.cancel(request, ctx)
        )


class IamTokenServicer(iam_token_service_pb2_grpc.IamTokenServiceServicer):
    def __init__(self, calls: _Calls, tokens: IamTokenService) -> None:
        self._calls = calls
        self._tokens = tokens

    async def Create(
        self, request: iam_token_service_pb2.CreateIamTokenRequest, context: grpc.aio.ServicerContext
    ) -> iam_token_service_pb2.CreateIamTokenResponse:
        return await self._calls.run(
            context,
            methods.IAM_TOKEN_CREATE,
            lambda ctx: self._tokens.create(request, ctx),
            authenticate=False,
        )

    async def CreateForServiceAccount(
        self,
        request: iam_token_service_pb2.CreateIamTokenForServiceAccountRequest,
        context: grpc.aio.ServicerContext,
    ) -> iam_token_service_pb2.CreateIamTokenResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake cloud exchanges JWTs only")
        raise AssertionError("abort returned")

    async def Revoke(
        self, request: iam_token_service_pb2.RevokeIamTokenRequest, context: grpc.aio.ServicerContext
    ) -> iam_token_service_pb2.RevokeIamTokenResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake cloud does not revoke tokens")
        raise AssertionError("abort returned")


def add_servicers(
    server: grpc.aio.Server,
    dispatcher: Dispatcher,
    images: DesktopImageService,
    desktops: DesktopService,
    operations: OperationService,
    tokens: IamTokenService,
) -> None:
    calls = _Calls(dispatcher)
    service_grpc.add_DesktopImageServiceServicer_to_server(DesktopImageServicer(calls, images), server)
    desktop_service_pb2_grpc.add_DesktopServiceServicer_to_server(DesktopServicer(calls, desktops), server)
    operation_service_pb2_grpc.add_OperationServiceServicer_to_server(
        OperationServicer(calls, operations), server
    )
    iam_token_service_pb2_grpc.add_IamTokenServiceServicer_to_server(IamTokenServicer(calls, tokens), server)
