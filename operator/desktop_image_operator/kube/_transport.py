"""HTTP to the API server for the operator's own calls: JSON in and out, errors as `KubeApiError`.

A thin layer over httpx's asynchronous client, the HTTP stack the cloud client already runs on: the few
calls the operator makes need no generated models (the official client's would cost some 35 MB for
classes never used), and with calls, watches and the Lease on the event loop no thread is needed. A
connection that could not be made is tried once more; nothing else is retried here, so a slow API server
costs one timeout and the caller's schedule decides when to ask again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from desktop_image_operator.kube._errors import KubeApiError
from desktop_image_operator.kube._login import Login

JSON = "application/json"


class Transport:
    """One connection pool to the API server, logged in as `login` says."""

    def __init__(self, login: Login, *, connections: int | None, user_agent: str) -> None:
        """`connections` bounds the pool; None leaves it unbounded (watches: each holds one for good)."""
        self._login = login
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        verify = login.ssl_context() if login.server.startswith("https:") else False
        proxy = httpx.Proxy(login.proxy_url) if login.proxy_url else None
        transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits, retries=1, proxy=proxy)
        self._client = httpx.AsyncClient(
            base_url=login.server,
            transport=transport,
            headers=[("User-Agent", user_agent), ("Accept", JSON), *login.headers()],
            trust_env=False,  # the API server is reached as the kubeconfig says, not through a proxy variable
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        within: float,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = JSON,
        accept: str = JSON,
    ) -> dict[str, Any]:
        """One call; its answer decoded. KubeApiError for an error status, httpx's errors for the rest.

        `accept` may ask for another form of the answer (a list of metadata only, say).
        """
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else {}
        if accept != JSON:
            headers["Accept"] = accept
        response = await self._send(
            method, path, params, content, headers, httpx.Timeout(within), stream=False
        )
        _raise_for(what, response)
        answer: dict[str, Any] = response.json()
        return answer

    async def watch(
        self, what: str, path: str, params: Mapping[str, str], *, connect_timeout: float, read_timeout: float
    ) -> WatchStream:
        """Start a watch; its events arrive as JSON lines until the server ends it or it is closed."""
        timeouts = httpx.Timeout(connect_timeout, read=read_timeout)
        response = await self._send("GET", path, {**params, "watch": "true"}, None, {}, timeouts, stream=True)
        if response.is_error:
            await response.aclose()
            _raise_for(what, response)
        return WatchStream(response)

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        content: bytes | None,
        headers: dict[str, str],
        timeouts: httpx.Timeout,
        *,
        stream: bool,
    ) -> httpx.Response:
        async def send() -> httpx.Response:
            request = self._client.build_request(
                method,
                path,
                params=params,
                content=content,
                headers=await self._auth(headers),
                timeout=timeouts,
            )
            return await self._client.send(request, stream=stream)

        response = await send()
        if response.status_code == 401 and self._login.token is not None:
            # A rotated ServiceAccount token or an expired exec token: read it again and try once more.
            await response.aclose()
            self._login.token.expire()
            response = await send()
        return response

    async def _auth(self, headers: dict[str, str]) -> dict[str, str]:
        authorization = await self._login.authorization()
        return {**headers, "Authorization": authorization} if authorization else headers


class WatchStream:
    """A watch's response, read line by line; closing it (or cancelling its reader) ends it."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def lines(self) -> AsyncIterator[str]:
        async for line in self._response.aiter_lines():
            if line.strip():
                yield line

    async def aclose(self) -> None:
        await self._response.aclose()


def _raise_for(what: str, response: httpx.Response) -> None:
    if response.is_error:
        raise KubeApiError(what, response.status_code, response.reason_phrase)
