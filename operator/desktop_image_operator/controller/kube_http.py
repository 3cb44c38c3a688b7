"""HTTP to the API server for the operator's own calls: JSON in and out, errors as one exception type.

A thin layer over httpx's synchronous client: the few calls the operator makes need no generated models,
and the official client's would cost some 35 MB of memory for classes never used. Calls run in the
caller's threads (see `kube.KubeApi`), over a connection pool as large as the thread pool. A connection
that could not be made is tried once more; nothing else is retried here, so a slow API server costs one
timeout and the caller's schedule decides when to ask again.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from desktop_image_operator.controller.kubeconfig import Login

JSON = "application/json"


class KubeApiError(Exception):
    """The API server answered with an error status. The message has the status line only: a response
    body can echo the object it was about (a Secret's data, say)."""

    def __init__(self, what: str, status: int, reason: str) -> None:
        super().__init__(f"The {what} was answered HTTP {status} {reason}.")
        self.status = status
        self.reason = reason


class KubeHttp:
    def __init__(self, login: Login, *, connections: int | None, user_agent: str) -> None:
        """`connections` bounds the pool; None leaves it unbounded (watches: each holds one for good)."""
        self._login = login
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        verify = login.ssl_context() if login.server.startswith("https:") else False
        proxy = httpx.Proxy(login.proxy_url) if login.proxy_url else None
        transport = httpx.HTTPTransport(verify=verify, limits=limits, retries=1, proxy=proxy)
        self._client = httpx.Client(
            base_url=login.server,
            transport=transport,
            headers=[("User-Agent", user_agent), ("Accept", JSON), *login.headers()],
            trust_env=False,  # the API server is reached as the kubeconfig says, not through a proxy variable
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        timeout: float,
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
        response = self._send(method, path, params, content, headers, httpx.Timeout(timeout), stream=False)
        _raise_for(what, response)
        answer: dict[str, Any] = response.json()
        return answer

    def watch(
        self, what: str, path: str, params: Mapping[str, str], *, connect_timeout: float, read_timeout: float
    ) -> WatchStream:
        """Start a watch; its events arrive as JSON lines until the server ends it or it is interrupted."""
        timeout = httpx.Timeout(connect_timeout, read=read_timeout)
        response = self._send("GET", path, {**params, "watch": "true"}, None, {}, timeout, stream=True)
        if response.is_error:
            response.close()
            _raise_for(what, response)
        return WatchStream(response)

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        content: bytes | None,
        headers: dict[str, str],
        timeout: httpx.Timeout,
        *,
        stream: bool,
    ) -> httpx.Response:
        def send() -> httpx.Response:
            request = self._client.build_request(
                method, path, params=params, content=content, headers=self._auth(headers), timeout=timeout
            )
            return self._client.send(request, stream=stream)

        response = send()
        if response.status_code == 401 and self._login.token is not None:
            # A rotated ServiceAccount token or an expired exec token: read it again and try once more.
            response.close()
            self._login.token.expire()
            response = send()
        return response

    def _auth(self, headers: dict[str, str]) -> dict[str, str]:
        authorization = self._login.authorization()
        return {**headers, "Authorization": authorization} if authorization else headers


class WatchStream:
    """A watch's response: its lines, read in one thread; `interrupt` may come from any other."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    def lines(self) -> Iterator[str]:
        return (line for line in self._response.iter_lines() if line.strip())

    def close(self) -> None:
        self._response.close()

    def interrupt(self) -> None:
        """Wake the thread blocked reading this stream: shut its socket down (closing it would not)."""
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        try:
            if isinstance(sock, socket.socket):
                sock.shutdown(socket.SHUT_RDWR)
            else:
                self._response.close()
        except (OSError, RuntimeError):
            pass  # already released or closed: nothing is blocked on it


def _raise_for(what: str, response: httpx.Response) -> None:
    if response.is_error:
        raise KubeApiError(what, response.status_code, response.reason_phrase)
