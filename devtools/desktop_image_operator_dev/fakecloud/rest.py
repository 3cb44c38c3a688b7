"""The REST side: Cloud Desktop images and desktops, operations, IAM tokens and the metadata service,
over aiohttp."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web
from google.protobuf.message import Message
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2
from yandex.cloud.clouddesktop.v1 import desktop_service_pb2
from yandex.cloud.iam.v1 import iam_token_service_pb2
from yandex.cloud.operation import operation_pb2, operation_service_pb2

from desktop_image_operator_dev.fakecloud import methods
from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode
from desktop_image_operator_dev.fakecloud.context import CallContext
from desktop_image_operator_dev.fakecloud.desktops import DesktopService
from desktop_image_operator_dev.fakecloud.dispatch import CallMeta, Dispatcher
from desktop_image_operator_dev.fakecloud.ids import new_request_id
from desktop_image_operator_dev.fakecloud.images import DesktopImageService, sent_mask
from desktop_image_operator_dev.fakecloud.operations import OperationService, rest_json
from desktop_image_operator_dev.fakecloud.protojson import (
    decode_body,
    dumps,
    error_status,
    from_json,
    to_json,
)
from desktop_image_operator_dev.fakecloud.tokens import IamTokenService, MetadataTokenService
from desktop_image_operator_dev.fakecloud.validation import json_field_names

T = TypeVar("T")

IMAGES_PATH = "/cloud-desktop/v1/images"
DESKTOPS_PATH = "/cloud-desktop/v1/desktops"
OPERATIONS_PATH = "/operations"
IAM_TOKENS_PATH = "/iam/v1/tokens"
METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"

_ID = r"{%s:[^/:]+}"
_CAMEL = re.compile(r"([A-Z])")


def _render(response: object) -> dict[str, Any]:
    if isinstance(response, Mapping):
        return dict(response)
    if isinstance(response, operation_pb2.Operation):
        return rest_json(response)
    return to_json(response)


def _error_response(error: ApiError, request_id: str, trace_id: str) -> web.Response:
    """A google.rpc.Status body, as the cloud answers every failed call."""
    headers = _ids(request_id, trace_id)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return web.Response(
        status=error.code.http_status,
        text=dumps(to_json(error_status(error, request_id))),
        content_type="application/json",
        headers=headers,
    )


def _ids(request_id: str, trace_id: str) -> dict[str, str]:
    return {"X-Request-Id": request_id, "X-Server-Trace-Id": trace_id}


def _snake_case(path: str) -> str:
    return _CAMEL.sub(lambda match: "_" + match[1].lower(), path.strip())


def _sent_fields(body: object, message: Message) -> list[str]:
    """Every field the JSON body names, also one sent empty (`"labels": {}`), which the parsed message
    cannot show."""
    return json_field_names(body, message.DESCRIPTOR) if isinstance(body, Mapping) else []


def _update_request(raw: bytes, image_id: str) -> service_pb2.UpdateDesktopImageRequest:
    """The PATCH body; `updateMask` is the JSON mapping's comma-separated path list (either spelling)."""
    body = decode_body(raw)
    if not isinstance(body, dict):
        raise ApiError(StatusCode.INVALID_ARGUMENT, "request body must be a JSON object")
    body = dict(body)
    mask = body.pop("updateMask", body.pop("update_mask", None))
    if isinstance(mask, str):
        paths = [_snake_case(path) for path in mask.split(",") if path.strip()]
    elif isinstance(mask, dict) and isinstance(mask.get("paths"), list):
        paths = [_snake_case(str(path)) for path in mask["paths"]]
    elif mask is None:
        paths = None
    else:
        raise ApiError(
            StatusCode.INVALID_ARGUMENT, "updateMask must be a comma-separated list of field paths"
        )
    body.pop("imageId", None)
    body.pop("image_id", None)
    request = from_json(body, service_pb2.UpdateDesktopImageRequest)
    request.image_id = image_id
    if paths is not None:
        request.update_mask.paths.extend(paths)
    return request


class RestApi:
    def __init__(
        self,
        dispatcher: Dispatcher,
        images: DesktopImageService,
        desktops: DesktopService,
        operations: OperationService,
        iam_tokens: IamTokenService,
        metadata: MetadataTokenService,
    ) -> None:
        self._dispatcher = dispatcher
        self._images = images
        self._desktops = desktops
        self._operations = operations
        self._iam_tokens = iam_tokens
        self._metadata = metadata

    def routes(self) -> list[web.RouteDef]:
        image = IMAGES_PATH + "/" + _ID % "image_id"
        desktop = DESKTOPS_PATH + "/" + _ID % "desktop_id"
        operation = OPERATIONS_PATH + "/" + _ID % "operation_id"
        return [
            web.get(IMAGES_PATH, self.list_images),
            web.post(IMAGES_PATH + ":copy", self.copy_image),
            web.post(IMAGES_PATH + ":copyFromDesktop", self.copy_from_desktop),
            web.get(image, self.get_image),
            web.patch(image, self.update_image),
            web.delete(image, self.delete_image),
            web.get(desktop, self.get_desktop),
            web.get(operation, self.get_operation),
            web.get(operation + ":cancel", self.cancel_operation),
            web.post(operation + ":cancel", self.cancel_operation),
            web.post(IAM_TOKENS_PATH, self.create_iam_token),
            web.get(METADATA_TOKEN_PATH, self.metadata_token),
        ]

    async def list_images(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)

        def handler(ctx: CallContext) -> Message:
            return self._images.list(from_json(query, service_pb2.ListDesktopImagesRequest), ctx)

        return await self._serve(request, methods.LIST, handler)

    async def get_image(self, request: web.Request) -> web.StreamResponse:
        message = service_pb2.GetDesktopImageRequest(image_id=request.match_info["image_id"])
        return await self._serve(request, methods.GET, lambda ctx: self._images.get(message, ctx))

    async def copy_image(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()

        def handler(ctx: CallContext) -> Message:
            body = decode_body(raw)
            message = from_json(body, service_pb2.CopyDesktopImageRequest)
            return self._images.copy(message, ctx, sent=_sent_fields(body, message))

        return await self._serve(request, methods.COPY, handler)

    async def copy_from_desktop(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()

        def handler(ctx: CallContext) -> Message:
            body = decode_body(raw)
            message = from_json(body, service_pb2.CopyFromDesktopRequest)
            return self._images.copy_from_desktop(message, ctx, sent=_sent_fields(body, message))

        return await self._serve(request, methods.COPY_FROM_DESKTOP, handler)

    async def update_image(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        # Read before dispatch so the log has the mask even of a refused call; a bad body is still
        # answered in the usual order (authentication and faults first).
        parsed: service_pb2.UpdateDesktopImageRequest | ApiError
        try:
            parsed = _update_request(raw, request.match_info["image_id"])
        except ApiError as exc:
            parsed = exc

        def handler(ctx: CallContext) -> Message:
            if isinstance(parsed, ApiError):
                raise parsed
            return self._images.update(parsed, ctx)

        mask = None if isinstance(parsed, ApiError) else sent_mask(parsed)
        return await self._serve(request, methods.UPDATE, handler, update_mask=mask)

    async def delete_image(self, request: web.Request) -> web.StreamResponse:
        message = service_pb2.DeleteDesktopImageRequest(image_id=request.match_info["image_id"])
        return await self._serve(request, methods.DELETE, lambda ctx: self._images.delete(message, ctx))

    async def get_desktop(self, request: web.Request) -> web.StreamResponse:
        message = desktop_service_pb2.GetDesktopRequest(desktop_id=request.match_info["desktop_id"])
        return await self._serve(request, methods.DESKTOP_GET, lambda ctx: self._desktops.get(message, ctx))

    async def get_operation(self, request: web.Request) -> web.StreamResponse:
        message = operation_service_pb2.GetOperationRequest(operation_id=request.match_info["operation_id"])
        return await self._serve(
            request, methods.OPERATION_GET, lambda ctx: self._operations.get(message, ctx)
        )

    async def cancel_operation(self, request: web.Request) -> web.StreamResponse:
        message = operation_service_pb2.CancelOperationRequest(
            operation_id=request.match_info["operation_id"]
        )
        return await self._serve(
            request, methods.OPERATION_CANCEL, lambda ctx: self._operations.cancel(message, ctx)
        )

    async def create_iam_token(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()

        def handler(ctx: CallContext) -> Message:
            message = from_json(decode_body(raw), iam_token_service_pb2.CreateIamTokenRequest)
            return self._iam_tokens.create(message, ctx)

        return await self._serve(request, methods.IAM_TOKEN_CREATE, handler, authenticate=False)

    async def metadata_token(self, request: web.Request) -> web.StreamResponse:
        flavor = request.headers.get("Metadata-Flavor")
        return await self._serve(
            request, methods.METADATA_TOKEN, lambda ctx: self._metadata.token(flavor, ctx), authenticate=False
        )

    async def _serve(
        self,
        request: web.Request,
        method: str,
        handler: Callable[[CallContext], T],
        *,
        authenticate: bool = True,
        update_mask: list[str] | None = None,
    ) -> web.StreamResponse:
        headers = request.headers
        meta = CallMeta(
            transport="rest",
            method=method,
            authorization=headers.get("Authorization"),
            idempotency_key=headers.get("Idempotency-Key") or None,
            request_id=headers.get("X-Request-Id") or None,
            update_mask=update_mask,
        )
        outcome = await self._dispatcher.run(meta, handler, authenticate=authenticate)
        reply_headers = _ids(outcome.request_id, outcome.trace_id)
        if outcome.drop:
            # The work is done; the client sees the connection close without an answer.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=StatusCode.UNAVAILABLE.http_status, headers=reply_headers)
        if outcome.error is not None:
            return _error_response(outcome.error, outcome.request_id, outcome.trace_id)
        return web.Response(
            text=dumps(_render(outcome.response)), content_type="application/json", headers=reply_headers
        )


async def not_found(request: web.Request) -> web.StreamResponse:
    """Unknown paths answer like the cloud does: a google.rpc.Status body."""
    error = ApiError(StatusCode.NOT_FOUND, f"Not found: {request.method} {request.path}")
    return _error_response(error, request.headers.get("X-Request-Id") or new_request_id(), uuid.uuid4().hex)
