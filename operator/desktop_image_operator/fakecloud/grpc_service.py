"""The gRPC side: the official servicers over grpc.aio, sharing the dispatcher and state with REST."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc
from yandex.cloud.clouddesktop.v1 import desktop_image_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2_grpc as service_grpc
from yandex.cloud.iam.v1 import iam_token_service_pb2, iam_token_service_pb2_grpc
from yandex.cloud.operation import operation_pb2, operation_service_pb2, operation_service_pb2_grpc

from desktop_image_operator.fakecloud import methods
from desktop_image_operator.fakecloud.codes import Code
from desktop_image_operator.fakecloud.context import CallContext
from desktop_image_operator.fakecloud.dispatch import CallMeta, Dispatcher
from desktop_image_operator.fakecloud.images import DesktopImageService
from desktop_image_operator.fakecloud.operations import OperationService
from desktop_image_operator.fakecloud.protojson import status
from desktop_image_operator.fakecloud.tokens import IamTokenService

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
    ) -> T:
        metadata = {key.lower(): value for key, value in (context.invocation_metadata() or ())}
        meta = CallMeta(
            transport="grpc",
            method=method,
            authorization=_text(metadata.get("authorization")),
            idempotency_key=_text(metadata.get("idempotency-key")),
            request_id=_text(metadata.get("x-request-id")),
        )
        outcome = await self._dispatcher.run(meta, handler, authenticate=authenticate)
        ids = (("x-request-id", outcome.request_id), ("x-server-trace-id", outcome.trace_id))
        if outcome.drop:
            await _abort(context, Code.UNAVAILABLE, DROPPED_MESSAGE, outcome.request_id, ids)
        if outcome.error is not None:
            await _abort(context, outcome.error.code, outcome.error.message, outcome.request_id, ids)
        await context.send_initial_metadata(ids)
        assert outcome.response is not None
        return outcome.response


async def _abort(
    context: grpc.aio.ServicerContext,
    code: Code,
    message: str,
    request_id: str,
    ids: tuple[tuple[str, str], ...],
) -> NoReturn:
    details = status(code, message, request_id).SerializeToString()
    await context.abort(
        _STATUS_CODES[int(code)], message, trailing_metadata=(*ids, ("grpc-status-details-bin", details))
    )
    raise AssertionError("abort returned")  # context.abort always raises


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
        return await self._calls.run(context, methods.UPDATE, lambda ctx: self._images.update(request, ctx))

    async def Delete(
        self, request: service_pb2.DeleteDesktopImageRequest, context: grpc.aio.ServicerContext
    ) -> operation_pb2.Operation:
        return await self._calls.run(context, methods.DELETE, lambda ctx: self._images.delete(request, ctx))


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
    operations: OperationService,
    tokens: IamTokenService,
) -> None:
    calls = _Calls(dispatcher)
    service_grpc.add_DesktopImageServiceServicer_to_server(DesktopImageServicer(calls, images), server)
    operation_service_pb2_grpc.add_OperationServiceServicer_to_server(
        OperationServicer(calls, operations), server
    )
    iam_token_service_pb2_grpc.add_IamTokenServiceServicer_to_server(IamTokenServicer(calls, tokens), server)
