"""A Secret watch's thread against an API server that answers from a script: how each way a watch can end
is reported, that it resumes from the last version it saw, and that a server gone silent is noticed within
the read timeout and the watch opened again."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from desktop_image_operator.kube import KubeApi, Login, SecretSnapshot, SecretWatches, WatchEnd
from desktop_image_operator.kube._secrets import READ_SLACK_SECONDS, WATCH_SECONDS
from tests.support.servers import SilentServer

pytestmark = pytest.mark.timeout(30)

WAIT = 10.0


# How long a scripted answer that falls silent keeps its connection open at most (the client's read
# timeout ends it much sooner).
SILENCE = 10.0


class Answer:
    """One scripted answer: a status and the JSON lines of the body; then the connection closes, or, with
    `then_silent`, stays open with nothing more sent (an API server that stopped answering)."""

    def __init__(self, status: int, *events: dict[str, Any], then_silent: bool = False) -> None:
        self.status = status
        self.body = b"".join(json.dumps(event).encode() + b"\n" for event in events)
        self.then_silent = then_silent


class ScriptedApiServer:
    """Answers watch requests in order from a script, on loopback; records what each asked for and when."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.asked: list[dict[str, str]] = []
        self.asked_at: list[float] = []
        self.closing = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                outer.asked.append({name: values[0] for name, values in query.items()})
                outer.asked_at.append(time.monotonic())
                answer = outer.answers.pop(0) if outer.answers else Answer(500)
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(answer.body)
                self.wfile.flush()
                if answer.then_silent:
                    outer.closing.wait(SILENCE)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.closing.set()  # silent answers end, so closing waits for no handler
        self._server.shutdown()
        self._server.server_close()


class Recorder:
    def __init__(self, *, wanted_requests: int = 100) -> None:
        self.changes: list[SecretSnapshot | None] = []
        self.connected: list[tuple[bool, float]] = []  # what following() said, and when
        self.ends: list[WatchEnd] = []
        self.over = threading.Event()
        self._left = wanted_requests

    def changed(self, snapshot: SecretSnapshot | None) -> None:
        self.changes.append(snapshot)

    def following(self, connected: bool) -> None:
        self.connected.append((connected, time.monotonic()))

    def ended(self, why: WatchEnd) -> None:
        self.ends.append(why)
        self.over.set()

    def wanted(self) -> bool:
        self._left -= 1
        return self._left >= 0


def secret(version: str, **data: str) -> dict[str, Any]:
    meta = {"name": "key", "namespace": "team-a", "uid": "u-1", "resourceVersion": version}
    return {"kind": "Secret", "apiVersion": "v1", "metadata": meta, "data": data}


def kube_at(port: int) -> KubeApi:
    return KubeApi(Login(server=f"http://127.0.0.1:{port}"), timeout_seconds=2)


@pytest.fixture
def kube_and_server(request: pytest.FixtureRequest) -> Iterator[tuple[KubeApi, ScriptedApiServer]]:
    server = ScriptedApiServer(*request.param)
    kube = kube_at(server.port)
    yield kube, server
    kube.close()
    server.close()


def follow(
    kube: KubeApi,
    recorder: Recorder,
    *,
    seconds: int = 60,
    read_slack: float = 5.0,
    reopen_pauses: tuple[float, ...] = (0.1, 0.1),
) -> None:
    watches = SecretWatches(kube, seconds=seconds, read_slack=read_slack, reopen_pauses=reopen_pauses)
    watches.watch("team-a", "key", "5", recorder)
    assert recorder.over.wait(WAIT)
    watches.close()


@pytest.mark.parametrize(
    "kube_and_server",
    [
        [
            Answer(200, {"type": "ADDED", "object": secret("6", k="YQ==")}),
            Answer(200, {"type": "BOOKMARK", "object": secret("7")}),
            Answer(200, {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}),
        ]
    ],
    indirect=True,
)
def test_each_request_resumes_from_the_last_version_seen_until_the_version_expires(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    kube, server = kube_and_server
    recorder = Recorder()
    follow(kube, recorder, seconds=60)
    assert [asked["resourceVersion"] for asked in server.asked] == ["5", "6", "7"]
    assert {asked["fieldSelector"] for asked in server.asked} == {"metadata.name=key"}
    assert {asked["timeoutSeconds"] for asked in server.asked} == {"60"}
    assert [snapshot.data if snapshot else None for snapshot in recorder.changes] == [{"k": b"a"}]
    assert recorder.ends == [WatchEnd.EXPIRED]


@pytest.mark.parametrize("kube_and_server", [[Answer(410)]], indirect=True)
def test_a_gone_answer_to_the_request_itself_is_expiry_too(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    recorder = Recorder()
    follow(kube_and_server[0], recorder)
    assert recorder.ends == [WatchEnd.EXPIRED]


@pytest.mark.parametrize("kube_and_server", [[Answer(403)]], indirect=True)
def test_a_watch_the_rbac_refuses_is_reported_as_not_allowed(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    recorder = Recorder()
    follow(kube_and_server[0], recorder)
    assert recorder.ends == [WatchEnd.FORBIDDEN]


@pytest.mark.parametrize(
    "kube_and_server",
    [[Answer(200, {"type": "DELETED", "object": secret("6")}), Answer(503), Answer(503), Answer(503)]],
    indirect=True,
)
def test_a_deletion_is_reported_and_a_server_unavailable_through_every_reopen_ends_the_watch_as_failed(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    kube, server = kube_and_server
    recorder = Recorder()
    follow(kube, recorder, reopen_pauses=(0.1, 0.1))
    assert recorder.changes == [None]
    assert len(server.asked) == 4, "the first request, then one more after each pause"
    assert [connected for connected, _ in recorder.connected] == [False]
    assert recorder.ends == [WatchEnd.FAILED]


@pytest.mark.parametrize(
    "kube_and_server",
    [
        [
            Answer(200, {"type": "ERROR", "object": {"kind": "Status", "code": 500, "reason": "Internal"}}),
            Answer(200, {"type": "MODIFIED", "object": secret("6", k="Yg==")}),
            Answer(410),
        ]
    ],
    indirect=True,
)
def test_an_error_event_the_server_may_recover_from_opens_the_watch_again_from_the_same_version(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    kube, server = kube_and_server
    recorder = Recorder()
    follow(kube, recorder)
    assert [asked["resourceVersion"] for asked in server.asked] == ["5", "5", "6"]
    assert [snapshot.data if snapshot else None for snapshot in recorder.changes] == [{"k": b"b"}]
    assert [connected for connected, _ in recorder.connected] == [False, True]
    assert recorder.ends == [WatchEnd.EXPIRED]


@pytest.mark.parametrize(
    "kube_and_server",
    [[Answer(200, {"type": "MODIFIED", "object": secret("6")}), Answer(200)]],
    indirect=True,
)
def test_a_watch_no_longer_wanted_asks_no_more(kube_and_server: tuple[KubeApi, ScriptedApiServer]) -> None:
    kube, server = kube_and_server
    recorder = Recorder(wanted_requests=1)
    follow(kube, recorder)
    assert len(server.asked) == 1
    assert recorder.ends == [WatchEnd.IDLE]


@pytest.mark.parametrize(
    "kube_and_server",
    [
        [
            Answer(200, {"type": "ADDED", "object": secret("6", k="YQ==")}, then_silent=True),
            Answer(200, {"type": "MODIFIED", "object": secret("7", k="Yg==")}),
            Answer(410),
        ]
    ],
    indirect=True,
)
def test_a_server_that_stops_answering_mid_watch_is_noticed_within_the_read_timeout_and_the_watch_resumes(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    kube, server = kube_and_server
    recorder = Recorder()
    follow(kube, recorder, seconds=1, read_slack=0.5, reopen_pauses=(0.1,))
    assert [asked["resourceVersion"] for asked in server.asked] == ["5", "6", "7"]
    assert [snapshot.data if snapshot else None for snapshot in recorder.changes] == [
        {"k": b"a"},
        {"k": b"b"},
    ]
    (lost, lost_at), (back, back_at) = recorder.connected
    assert (lost, back) == (False, True)
    silent_for = lost_at - server.asked_at[0]
    assert 1.5 <= silent_for < 1.5 + 2.0, "noticed when the read timeout (1 s + 0.5 s) ran out"
    assert back_at - lost_at < 0.1 + 2.0, "opened again after the pause"
    assert recorder.ends == [WatchEnd.EXPIRED]


def test_a_silent_server_is_distrusted_within_the_read_timeout_and_dropped_if_silent_after_a_reopen() -> None:
    silent = SilentServer()
    kube = kube_at(silent.port)
    recorder = Recorder()
    started = time.monotonic()
    try:
        follow(kube, recorder, seconds=1, read_slack=0.5, reopen_pauses=(0.1, 0.1))
        ended = time.monotonic() - started
        accepted = silent.accepted
    finally:
        kube.close()
        silent.close()
    assert [connected for connected, _ in recorder.connected] == [False]
    assert recorder.connected[0][1] - started < 1.5 + 2.0
    assert recorder.ends == [WatchEnd.FAILED]
    assert accepted == 2, "the first request and one reopen, each on a new connection"
    assert 2 * 1.5 <= ended < 2 * 1.5 + 0.1 + 3.0


def test_by_default_a_silent_watch_is_noticed_well_within_a_minute() -> None:
    assert WATCH_SECONDS + READ_SLACK_SECONDS <= 30
