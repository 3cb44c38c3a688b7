"""A Secret watch's task against an API server that answers from a script: how each way a watch can end
is reported, that it resumes from the last version it saw, that a server gone silent is noticed within
the read timeout and the watch opened again, and that stopping a watch ends it at once, whatever it
waits for."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from desktop_image_operator.kube import KubeApi, Login, SecretSnapshot, SecretWatches, WatchEnd
from desktop_image_operator.kube._secrets import READ_SLACK_SECONDS, WATCH_SECONDS
from tests.support.servers import SilentServer

pytestmark = pytest.mark.timeout(30)

WAIT = 10.0
# How soon a stopped watch reports it, at most: far less than any read timeout here.
PROMPTLY = 1.0


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
    """A listener that keeps what the watch reported (from its task, on the event loop)."""

    def __init__(self, *, wanted_requests: int = 100) -> None:
        self.changes: list[SecretSnapshot | None] = []
        self.connected: list[tuple[bool, float]] = []  # what following() said, and when
        self.ends: list[WatchEnd] = []
        self.over = asyncio.Event()
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


async def within(seconds: float, awaited: Awaitable[object], what: str) -> None:
    try:
        async with asyncio.timeout(seconds):
            await awaited
    except TimeoutError:
        pytest.fail(f"{what} not within {seconds:g} s")


async def until(check: Callable[[], bool], what: str, seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {seconds:g} s"
        await asyncio.sleep(0.01)


async def closed(watches: SecretWatches) -> None:
    """Stop every watch and wait (bounded) until none of their tasks runs any more."""
    watches.close()
    await until(lambda: watches.running == 0, "every watch task ended")


@pytest.fixture
async def kube_and_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[KubeApi, ScriptedApiServer]]:
    server = ScriptedApiServer(*request.param)
    try:
        async with kube_at(server.port) as kube:
            yield kube, server
    finally:
        server.close()


async def follow(
    kube: KubeApi,
    recorder: Recorder,
    *,
    seconds: int = 60,
    read_slack: float = 5.0,
    reopen_pauses: tuple[float, ...] = (0.1, 0.1),
) -> None:
    """Watch until the watch ends of itself; then no task of it is left."""
    watches = SecretWatches(kube, seconds=seconds, read_slack=read_slack, reopen_pauses=reopen_pauses)
    watches.watch("team-a", "key", "5", recorder)
    try:
        await within(WAIT, recorder.over.wait(), "the watch's end")
    finally:
        await closed(watches)


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
async def test_each_request_resumes_from_the_last_version_seen_until_the_version_expires(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    kube, server = kube_and_server
    recorder = Recorder()
    await follow(kube, recorder, seconds=60)
    assert [asked["resourceVersion"] for asked in server.asked] == ["5", "6", "7"]
    assert {asked["fieldSelector"] for asked in server.asked} == {"metadata.name=key"}
    assert {asked["timeoutSeconds"] for asked in server.asked} == {"60"}
    assert [snapshot.data if snapshot else None for snapshot in recorder.changes] == [{"k": b"a"}]
    assert recorder.ends == [WatchEnd.EXPIRED]


@pytest.mark.parametrize("kube_and_server", [[Answer(410)]], indirect=True)
async def test_a_gone_answer_to_the_request_itself_is_expiry_too(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    recorder = Recorder()
    await follow(kube_and_server[0], recorder)
    assert recorder.ends == [WatchEnd.EXPIRED]


@pytest.mark.parametrize("kube_and_server", [[Answer(403)]], indirect=True)
async def test_a_watch_the_rbac_refuses_is_reported_as_not_allowed(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    recorder = Recorder()
    await follow(kube_and_server[0], recorder)
    assert recorder.ends == [WatchEnd.FORBIDDEN]


@pytest.mark.parametrize(
    "kube_and_server",
    [[Answer(200, {"type": "DELETED", "object": secret("6")}), Answer(503), Answer(503), Answer(503)]],
    indirect=True,
)
async def test_a_deletion_is_reported_and_a_server_unavailable_through_every_reopen_ends_the_watch_as_failed(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    kube, server = kube_and_server
    recorder = Recorder()
    await follow(kube, recorder, reopen_pauses=(0.1, 0.1))
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
async def test_an_error_event_the_server_may_recover_from_opens_the_watch_again_from_the_same_version(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    kube, server = kube_and_server
    recorder = Recorder()
    await follow(kube, recorder)
    assert [asked["resourceVersion"] for asked in server.asked] == ["5", "5", "6"]
    assert [snapshot.data if snapshot else None for snapshot in recorder.changes] == [{"k": b"b"}]
    assert [connected for connected, _ in recorder.connected] == [False, True]
    assert recorder.ends == [WatchEnd.EXPIRED]


@pytest.mark.parametrize(
    "kube_and_server",
    [[Answer(200, {"type": "MODIFIED", "object": secret("6")}), Answer(200)]],
    indirect=True,
)
async def test_a_watch_no_longer_wanted_asks_no_more(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    kube, server = kube_and_server
    recorder = Recorder(wanted_requests=1)
    await follow(kube, recorder)
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
async def test_a_server_silent_mid_watch_is_noticed_within_the_read_timeout_and_the_watch_resumes(
    kube_and_server: tuple[KubeApi, ScriptedApiServer],
) -> None:
    kube, server = kube_and_server
    recorder = Recorder()
    await follow(kube, recorder, seconds=1, read_slack=0.5, reopen_pauses=(0.1,))
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


async def test_a_silent_server_is_distrusted_within_the_read_timeout_and_dropped_if_silent_again() -> None:
    silent = SilentServer()
    recorder = Recorder()
    try:
        async with kube_at(silent.port) as kube:
            started = time.monotonic()
            await follow(kube, recorder, seconds=1, read_slack=0.5, reopen_pauses=(0.1, 0.1))
            ended = time.monotonic() - started
            accepted = silent.accepted
    finally:
        silent.close()
    assert [connected for connected, _ in recorder.connected] == [False]
    assert recorder.connected[0][1] - started < 1.5 + 2.0
    assert recorder.ends == [WatchEnd.FAILED]
    assert accepted == 2, "the first request and one reopen, each on a new connection"
    assert 2 * 1.5 <= ended < 2 * 1.5 + 0.1 + 3.0


async def test_stop_ends_a_watch_blocked_on_a_silent_server_promptly() -> None:
    silent = SilentServer()
    recorder = Recorder()
    try:
        async with kube_at(silent.port) as kube:
            watches = SecretWatches(kube, seconds=60, read_slack=5.0)  # its read would wait 65 s
            watch = watches.watch("team-a", "key", "5", recorder)
            await until(lambda: silent.accepted == 1, "the watch request")
            await asyncio.sleep(0.2)  # its task waits for an answer by now
            assert watches.running == 1
            started = time.monotonic()
            watch.stop()
            await within(PROMPTLY, recorder.over.wait(), "the stopped watch's end")
            stopped_in = time.monotonic() - started
            await until(lambda: watches.running == 0, "the stopped watch's task gone", seconds=PROMPTLY)
            watch.stop()  # stopping it again changes nothing
            await asyncio.sleep(0.1)
    finally:
        silent.close()
    assert stopped_in < PROMPTLY
    assert recorder.ends == [WatchEnd.STOPPED]
    assert recorder.connected == [], "a stop is no break: nothing was reported lost"
    assert recorder.changes == []
    assert silent.accepted == 1, "not opened again"


async def test_a_watch_stopped_before_its_task_ran_still_reports_stopped() -> None:
    silent = SilentServer()
    recorder = Recorder()
    try:
        async with kube_at(silent.port) as kube:
            watches = SecretWatches(kube)
            watches.watch("team-a", "key", "5", recorder).stop()  # no await in between
            await until(lambda: watches.running == 0, "the stopped watch's task gone", seconds=PROMPTLY)
            await asyncio.sleep(0.1)
    finally:
        silent.close()
    assert recorder.ends == [WatchEnd.STOPPED]
    assert silent.accepted == 0, "no request made"


def test_by_default_a_silent_watch_is_noticed_well_within_a_minute() -> None:
    assert WATCH_SECONDS + READ_SLACK_SECONDS <= 30
