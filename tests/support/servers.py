"""Servers that tests point clients at: loopback only, stopped by the test that started them."""

from __future__ import annotations

import socket
import threading


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
