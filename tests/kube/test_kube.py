"""The operator's own Kubernetes calls end within their timeout, and never hold up the event loop.

The API server here is a TCP listener on loopback that accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from desktop_image_operator.base import Fence, Fenced
from desktop_image_operator.kube import KubeApi, KubeTimeout, KubeUnreachable, Login
from tests.support.servers import SilentServer

TIMEOUT = 0.5
# Room for a loaded test machine; far below any retry or default timeout.
SLACK = 1.0


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def kube_at(port: int, *, concurrency: int = 8, gate: Fence | None = None) -> KubeApi:
    login = Login(server=f"http://127.0.0.1:{port}")
    return KubeApi(login, timeout_seconds=TIMEOUT, concurrency=concurrency, gate=gate)


async def test_a_status_patch_without_an_answer_fails_within_its_timeout_and_says_so(
    silent: SilentServer,
) -> None:
    kube = kube_at(silent.port)
    started = time.monotonic()
    with pytest.raises(KubeTimeout) as error:
        await kube.patch_status("team-a", "image-1", {"status": {"phase": "x"}})
    assert time.monotonic() - started < TIMEOUT + SLACK
    assert str(error.value) == "The status patch of DesktopImage team-a/image-1 timed out after 0.5 s."
    await kube.aclose()


async def test_a_secret_read_without_an_answer_times_out_once_without_a_retry(silent: SilentServer) -> None:
    kube = kube_at(silent.port)
    started = time.monotonic()
    with pytest.raises(KubeTimeout, match=r"read of Secret team-a/key timed out after 0\.5 s"):
        await kube.read_secret_key("team-a", "key", "key.json")
    assert time.monotonic() - started < TIMEOUT + SLACK
    # A read is idempotent, so a client could try it again on its own; its connection must be free instead.
    await asyncio.sleep(TIMEOUT * 2)
    assert silent.accepted == 1
    await kube.aclose()


@pytest.mark.parametrize(
    "call",
    ["secret_metadata", "add_secret_finalizer", "remove_secret_finalizer", "list_desktop_images"],
)
async def test_every_call_the_secret_guard_makes_is_bounded_too(silent: SilentServer, call: str) -> None:
    kube = kube_at(silent.port)
    calls = {
        "secret_metadata": lambda: kube.secret_metadata("team-a", "key"),
        "add_secret_finalizer": lambda: kube.add_secret_finalizer("team-a", "key", "example.com/f"),
        "remove_secret_finalizer": lambda: kube.remove_secret_finalizer("team-a", "key", "example.com/f"),
        "list_desktop_images": lambda: kube.list_desktop_images("team-a"),
    }
    started = time.monotonic()
    with pytest.raises(KubeTimeout, match=r"timed out after 0\.5 s"):
        await calls[call]()
    assert time.monotonic() - started < TIMEOUT + SLACK
    await kube.aclose()


async def test_no_more_calls_than_the_configured_concurrency_are_in_flight(silent: SilentServer) -> None:
    kube = kube_at(silent.port, concurrency=2)
    started = time.monotonic()
    results = await asyncio.gather(
        *(kube.patch_status("team-a", f"image-{n}", {}) for n in range(6)), return_exceptions=True
    )
    # Calls waiting for their turn count their wait against the timeout too.
    assert time.monotonic() - started < TIMEOUT + SLACK
    assert all(isinstance(result, KubeTimeout) for result in results)
    assert 1 <= silent.most_at_once <= 2
    await kube.aclose()


async def test_calls_need_no_thread_so_a_stuck_default_executor_holds_nothing_up(
    silent: SilentServer,
) -> None:
    loop = asyncio.get_running_loop()
    release = threading.Event()
    blockers = [loop.run_in_executor(None, release.wait, 30) for _ in range(64)]  # every default thread
    kube = kube_at(silent.port)
    try:
        started = time.monotonic()
        with pytest.raises(KubeTimeout):
            await kube.patch_status("team-a", "image-1", {})
        assert time.monotonic() - started < TIMEOUT + SLACK
        assert silent.accepted == 1  # the call really went out while the default executor was stuck
    finally:
        release.set()
        await asyncio.gather(*blockers)
        await kube.aclose()


async def test_a_fenced_write_is_checked_when_its_turn_comes_not_when_it_queued(silent: SilentServer) -> None:
    fence = Fence()
    fence.grant(time.monotonic() + 60)
    kube = kube_at(silent.port, concurrency=1, gate=fence)
    try:
        first = asyncio.ensure_future(kube.patch_status("team-a", "image-1", {}))
        await asyncio.sleep(TIMEOUT / 5)  # the only turn is taken; the next write queues behind it
        queued = asyncio.ensure_future(kube.patch_status("team-a", "image-2", {}))
        await asyncio.sleep(TIMEOUT / 5)
        fence.revoke()  # the leader steps down while one write is out and one waits its turn
        with pytest.raises(Fenced):
            await first  # cancelled in flight
        with pytest.raises(Fenced):
            await queued  # refused when its turn came: it never went out
        await asyncio.sleep(TIMEOUT / 5)
        assert silent.accepted == 1
    finally:
        await kube.aclose()


async def test_a_fenced_write_may_take_no_longer_than_the_fence_has_left(silent: SilentServer) -> None:
    fence = Fence()
    fence.grant(time.monotonic() + TIMEOUT / 5)
    kube = KubeApi(Login(server=f"http://127.0.0.1:{silent.port}"), timeout_seconds=30, gate=fence)
    try:
        started = time.monotonic()
        with pytest.raises((KubeTimeout, Fenced)):
            await kube.patch_status("team-a", "image-1", {})
        assert time.monotonic() - started < TIMEOUT / 5 + SLACK
    finally:
        await kube.aclose()


async def test_a_refused_connection_is_not_reported_as_a_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    kube = kube_at(port)
    with pytest.raises(KubeUnreachable) as error:
        await kube.patch_status("team-a", "image-1", {})
    assert str(error.value).startswith(
        "The status patch of DesktopImage team-a/image-1 could not reach the API server ("
    )
    await kube.aclose()


async def test_a_lease_call_goes_out_while_every_call_turn_is_taken(silent: SilentServer) -> None:
    login = Login(server=f"http://127.0.0.1:{silent.port}")
    kube = KubeApi(login, timeout_seconds=3 * TIMEOUT, concurrency=1)
    try:
        busy = asyncio.ensure_future(kube.patch_status("team-a", "image-1", {}))
        await asyncio.sleep(TIMEOUT / 5)  # the only turn and connection are now taken
        started = time.monotonic()
        with pytest.raises(KubeTimeout, match=r"read of Lease team-a/leader"):
            await kube.read_lease("team-a", "leader", within=TIMEOUT)
        assert time.monotonic() - started < TIMEOUT + SLACK
        assert silent.accepted == 2  # the renewal reached the server, not the back of a queue
        with pytest.raises(KubeTimeout):
            await busy
    finally:
        await kube.aclose()
