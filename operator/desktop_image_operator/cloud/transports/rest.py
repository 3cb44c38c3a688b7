"""REST transport: the Cloud Desktop and Operation REST APIs over one shared `httpx.AsyncClient`."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from desktop_image_operator.cloud.errors import CloudError, Code, parse_retry_after
from desktop_image_operator.cloud.transport import CallContext, ImagePage
from desktop_image_operator.cloud.transports.rest_wire import (
    desktop_folder_from_json,
    error_from_status,
    image_from_json,
    operation_from_json,
)
from desktop_image_operator.cloud.types import CloudImage, CloudOperation, CopyRequest

_IMAGES_PATH = "/cloud-desktop/v1/images"
_DESKTOPS_PATH = "/cloud-desktop/v1/desktops"

T = TypeVar("T")


def _shorter(own: float | None, limit: float) -> float:
    """The shorter of a client timeout (None: none) and the call's limit."""
    return limit if own is None else min(own, limit)


def transport_error(exc: httpx.HTTPError, request_id: str | None) -> CloudError:
    """A failure below HTTP (timeout, refused or reset connection) as a retryable CloudError."""
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return CloudError(Code.DEADLINE_EXCEEDED, f"request timed out ({kind})", request_id=request_id)
    return CloudError(Code.UNAVAILABLE, f"connection failed ({kind}: {exc})", request_id=request_id)


def error_from_response(response: httpx.Response, sent_request_id: str | None) -> CloudError:
    """A non-2xx answer as a CloudError; the `google.rpc.Status` body wins over the HTTP status."""
    fallback = Code.from_http_status(response.status_code)
    header_request_id = response.headers.get("x-request-id") or sent_request_id
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, Mapping):
        # Some gateways wrap the status as {"error": {...}}.
        wrapped = body.get("error")
        status: Mapping[str, Any] = wrapped if isinstance(wrapped, Mapping) else body
        return error_from_status(
            status, fallback_code=fallback, request_id=header_request_id, retry_after=retry_after
        )
    return CloudError(
        fallback,
        f"HTTP {response.status_code} {response.reason_phrase}".strip(),
        request_id=header_request_id,
        retry_after=retry_after,
    )


def json_object(response: httpx.Response, request_id: str | None) -> Mapping[str, Any]:
    """The JSON object of a 2xx answer; any other answer as a CloudError."""
    if not response.is_success:
        raise error_from_response(response, request_id)
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        # Not chained: the decoder's error holds the whole body, which may be a token.
        raise CloudError(Code.INTERNAL, "response is not JSON", request_id=request_id) from None
    if not isinstance(data, Mapping):
        raise CloudError(Code.INTERNAL, "response is not a JSON object", request_id=request_id)
    return data


def headers_for(ctx: CallContext) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {ctx.token}",
        "x-request-id": ctx.request_id,
        "x-client-trace-id": ctx.trace_id,
        "Accept": "application/json",
    }
    if ctx.idempotency_key:
        headers["Idempotency-Key"] = ctx.idempotency_key
    return headers


class RestTransport:
    """One request per call; the `httpx.AsyncClient` (pool, limits, TLS) belongs to the session."""

    def __init__(self, http: httpx.AsyncClient, *, desktop_endpoint: str, operation_endpoint: str) -> None:
        self._http = http
        self._images_url = desktop_endpoint.rstrip("/") + _IMAGES_PATH
        self._desktops_url = desktop_endpoint.rstrip("/") + _DESKTOPS_PATH
        self._operations_url = operation_endpoint.rstrip("/") + "/operations"
        # The proto maps Cancel to GET; some documentation says POST. Switch once if GET is refused.
        self._cancel_method = "GET"

    def __repr__(self) -> str:
        return f"RestTransport(images={self._images_url!r}, operations={self._operations_url!r})"

    async def _send(
        self,
        ctx: CallContext,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        try:
            return await self._http.request(
                method, url, params=params, json=body, headers=headers_for(ctx), timeout=self._timeout(ctx)
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, ctx.request_id) from exc

    def _timeout(self, ctx: CallContext) -> httpx.Timeout:
        """The shared client's timeouts (connect and read configured separately), each cut to the call's."""
        own = self._http.timeout
        if ctx.timeout is None:
            return own
        return httpx.Timeout(
            connect=_shorter(own.connect, ctx.timeout),
            read=_shorter(own.read, ctx.timeout),
            write=_shorter(own.write, ctx.timeout),
            pool=_shorter(own.pool, ctx.timeout),
        )

    async def _call(
        self,
        ctx: CallContext,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Mapping[str, Any]:
        response = await self._send(ctx, method, url, params=params, body=body)
        return json_object(response, ctx.request_id)

    @staticmethod
    def _parse(ctx: CallContext, parse: Callable[[Mapping[str, Any]], T], data: Mapping[str, Any]) -> T:
        try:
            return parse(data)
        except (ValueError, TypeError) as exc:
            raise CloudError(
                Code.INTERNAL, f"unexpected response shape: {exc}", request_id=ctx.request_id
            ) from exc

    def _image_url(self, image_id: str) -> str:
        return f"{self._images_url}/{quote(image_id, safe='')}"

    def _operation_url(self, operation_id: str) -> str:
        return f"{self._operations_url}/{quote(operation_id, safe='')}"

    async def get_image(self, ctx: CallContext, image_id: str) -> CloudImage:
        data = await self._call(ctx, "GET", self._image_url(image_id))
        return self._parse(ctx, image_from_json, data)

    async def list_images(
        self, ctx: CallContext, *, folder_id: str, filter: str, page_size: int, page_token: str
    ) -> ImagePage:
        params: dict[str, str | int] = {"folderId": folder_id, "pageSize": page_size}
        if filter:
            params["filter"] = filter
        if page_token:
            params["pageToken"] = page_token
        data = await self._call(ctx, "GET", self._images_url, params=params)
        raw_images = data.get("desktopImages") or []
        if not isinstance(raw_images, list):
            raise CloudError(Code.INTERNAL, "desktopImages is not a list", request_id=ctx.request_id)
        images = [self._parse(ctx, image_from_json, item) for item in raw_images if isinstance(item, Mapping)]
        token = data.get("nextPageToken")
        return ImagePage(images=images, next_page_token=token if isinstance(token, str) else "")

    async def copy(self, ctx: CallContext, request: CopyRequest) -> CloudOperation:
        body: dict[str, Any] = {"name": request.name}
        if request.folder_id:
            body["folderId"] = request.folder_id
        if request.description:
            body["description"] = request.description
        if request.labels:
            body["labels"] = dict(request.labels)
        if request.from_desktop:
            body["desktopId"] = request.desktop_id
            url = f"{self._images_url}:copyFromDesktop"
        else:
            body["imageId"] = request.compute_image_id
            url = f"{self._images_url}:copy"
        return await self._operation(ctx, "POST", url, body=body)

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
        # FieldMask in proto3 JSON is one comma-separated string of camelCase paths.
        body: dict[str, Any] = {"updateMask": ",".join(sorted(mask))}
        if "name" in mask:
            body["name"] = name or ""
        if "description" in mask:
            body["description"] = description or ""
        if "labels" in mask:
            body["labels"] = dict(labels or {})
        return await self._operation(ctx, "PATCH", self._image_url(image_id), body=body)

    async def delete(self, ctx: CallContext, image_id: str) -> CloudOperation:
        return await self._operation(ctx, "DELETE", self._image_url(image_id))

    async def get_desktop_folder(self, ctx: CallContext, desktop_id: str) -> str:
        data = await self._call(ctx, "GET", f"{self._desktops_url}/{quote(desktop_id, safe='')}")
        return self._parse(ctx, desktop_folder_from_json, data)

    async def get_operation(self, ctx: CallContext, operation_id: str) -> CloudOperation:
        return await self._operation(ctx, "GET", self._operation_url(operation_id))

    async def cancel_operation(self, ctx: CallContext, operation_id: str) -> CloudOperation:
        url = f"{self._operation_url(operation_id)}:cancel"
        response = await self._send(ctx, self._cancel_method, url)
        if response.status_code == 405 and self._cancel_method == "GET":
            self._cancel_method = "POST"
            response = await self._send(ctx, "POST", url)
        return self._parse(ctx, operation_from_json, json_object(response, ctx.request_id))

    async def _operation(
        self, ctx: CallContext, method: str, url: str, *, body: Mapping[str, Any] | None = None
    ) -> CloudOperation:
        data = await self._call(ctx, method, url, body=body)
        return self._parse(ctx, operation_from_json, data)
