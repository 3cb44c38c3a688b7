"""Servers that tests point clients at: loopback only, stopped by the test that started them."""

from __future__ import annotations

import json
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from desktop_image_operator_dev.devenv.pki import KeyPair

# Bounds on the servers' waits: a handshake or request head, and the life of one proxy tunnel.
HANDSHAKE_SECONDS = 5.0
TUNNEL_SECONDS = 30.0


class SilentServer:
    """Accepts every connection, reads nothing, answers nothing; counts connections open at once."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.accepted = 0
        self.most_at_once = 0
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                self._open = [c for c in self._open if _still_open(c)]
                continue
            self._open = [c for c in self._open if _still_open(c)] + [connection]
            self.accepted += 1
            self.most_at_once = max(self.most_at_once, len(self._open))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self._open:
            connection.close()
        self._listener.close()


def _still_open(connection: socket.socket) -> bool:
    """False once the client hung up (a read of zero bytes); the request bytes do not count."""
    connection.setblocking(False)
    try:
        while chunk := connection.recv(65536):
            del chunk
    except BlockingIOError:
        return True
    except OSError:
        pass
    connection.close()
    return False


@dataclass(frozen=True)
class SeenRequest:
    """One request as a TlsApiServer saw it."""

    path: str
    headers: list[tuple[str, str]]
    client: str | None  # the common name of the client's certificate, if it showed one

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class TlsApiServer:
    """HTTPS on loopback with the given certificate, answering every GET with a namespace (uid
    UID) and closing the connection, so each request makes a new one. Records each request, and the
    name each client asked for in its handshake (SNI). With `client_ca`, a client must show a
    certificate that CA issued."""

    UID = "uid-of-the-loopback-server"

    def __init__(self, folder: Path, pair: KeyPair, *, client_ca: bytes | None = None) -> None:
        self.requests: list[SeenRequest] = []
        self.server_names: list[str | None] = []
        context = _server_context(folder, pair, client_ca)
        context.sni_callback = lambda _sock, name, _context: self.server_names.append(name)
        handler = _recording_handler(self.requests)
        self._server = _TlsHttpServer(("127.0.0.1", 0), handler, context)
        self.port = self._server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _TlsHttpServer(ThreadingHTTPServer):
    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext
    ) -> None:
        super().__init__(address, handler)
        self._context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake in the request's own thread: a client that fails it holds up no other.
        request.settimeout(HANDSHAKE_SECONDS)
        try:
            wrapped = self._context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        super().finish_request(wrapped, client_address)


def _server_context(folder: Path, pair: KeyPair, client_ca: bytes | None) -> ssl.SSLContext:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.crt").write_bytes(pair.cert_pem)
    (folder / "server.key").write_bytes(pair.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.crt", folder / "server.key")
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca.decode())
    return context


def _recording_handler(requests: list[SeenRequest]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(SeenRequest(self.path, list(self.headers.items()), _client_name(self.connection)))
            name = self.path.rstrip("/").rsplit("/", 1)[-1]
            body = json.dumps({"kind": "Namespace", "metadata": {"name": name, "uid": TlsApiServer.UID}})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _client_name(connection: Any) -> str | None:
    peer = connection.getpeercert() if isinstance(connection, ssl.SSLSocket) else None
    subject: Any = (peer or {}).get("subject", ())
    names = [value for part in subject for key, value in part if key == "commonName"]
    return str(names[0]) if names else None


class ConnectProxy:
    """An HTTP proxy on loopback that only tunnels (CONNECT), as proxies in front of API servers do;
    `targets` lists the host:port of each tunnel asked for."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            client.settimeout(HANDSHAKE_SECONDS)
            head = _request_head(client)
            method, target, *_ = [*head.split(" ", 2), "", ""]
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.targets.append(target)
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=HANDSHAKE_SECONDS) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _relay(client, upstream, self._stop)


def _request_head(client: socket.socket) -> str:
    """The request line of what the client sent up to its blank line (at most 64 KB)."""
    received = b""
    while b"\r\n\r\n" not in received and len(received) < 65536:
        chunk = client.recv(4096)
        if not chunk:
            break
        received += chunk
    return received.split(b"\r\n", 1)[0].decode(errors="replace")


def _relay(one: socket.socket, other: socket.socket, stop: threading.Event) -> None:
    """Bytes both ways until either side closes, the proxy stops, or TUNNEL_SECONDS pass."""
    deadline = time.monotonic() + TUNNEL_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        readable, _, _ = select.select([one, other], [], [], 0.1)
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            (other if source is one else one).sendall(data)
