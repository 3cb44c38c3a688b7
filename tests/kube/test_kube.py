"""The operator's own Kubernetes calls end within their timeout, on threads of their own.

The API server here is a TCP listener on loopback that accepts connections and never answers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from desktop_image_operator.kube import KubeApi, KubeTimeout, KubeUnreachable, Login
from tests.support.servers import SilentServer

TIMEOUT = 0.5
# Room for thread start-up and a loaded test machine; far below any retry or default timeout.
SLACK = 1.0


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def kube_at(port: int, *, workers: int = 8) -> KubeApi:
    return KubeApi(Login(server=f"http://127.0.0.1:{port}"), timeout_seconds=TIMEOUT, workers=workers)


async def test_a_status_patch_without_an_answer_fails_within_its_timeout_and_says_so(
    silent: SilentServer,
) -> None:
    kube = kube_at(silent.port)
    started = time.monotonic()
    with pytest.raises(KubeTimeout) as error:
        await kube.patch_status("team-a", "image-1", {"status": {"phase": "x"}})
    assert time.monotonic() - started < TIMEOUT + SLACK
    assert str(error.value) == "The status patch of DesktopImage team-a/image-1 timed out after 0.5 s."
    kube.close()


async def test_a_secret_read_without_an_answer_times_out_once_without_a_retry(silent: SilentServer) -> None:
    kube = kube_at(silent.port)
    started = time.monotonic()
    with pytest.raises(KubeTimeout, match=r"read of Secret team-a/key timed out after 0\.5 s"):
        await kube.read_secret_key("team-a", "key", "key.json")
    assert time.monotonic() - started < TIMEOUT + SLACK
    # A read is idempotent, so a client could try it again on its own; the thread must be free instead.
    await asyncio.sleep(TIMEOUT * 2)
    assert silent.accepted == 1
    kube.close()


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
    kube.close()


async def test_calls_run_on_at_most_the_configured_threads(silent: SilentServer) -> None:
    kube = kube_at(silent.port, workers=2)
    started = time.monotonic()
    results = await asyncio.gather(
        *(kube.patch_status("team-a", f"image-{n}", {}) for n in range(6)), return_exceptions=True
    )
    # Calls waiting for a thread count their wait against the timeout too.
    assert time.monotonic() - started < TIMEOUT + SLACK
    assert all(isinstance(result, KubeTimeout) for result in results)
    assert 1 <= silent.most_at_once <= 2
    kube.close()


async def test_a_busy_default_executor_does_not_hold_up_kubernetes_calls(silent: SilentServer) -> None:
    loop = asyncio.get_running_loop()
    default = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(default)
    release = threading.Event()
    blocker = loop.run_in_executor(None, release.wait, 30)
    kube = kube_at(silent.port)
    try:
        started = time.monotonic()
        with pytest.raises(KubeTimeout):
            await kube.patch_status("team-a", "image-1", {})
        assert time.monotonic() - started < TIMEOUT + SLACK
        assert silent.accepted == 1  # the call really went out while the default executor was stuck
    finally:
        release.set()
        await blocker
        kube.close()


async def test_a_refused_connection_is_not_reported_as_a_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    kube = kube_at(port)
    with pytest.raises(KubeUnreachable) as error:
        await kube.patch_status("team-a", "image-1", {})
    assert str(error.value).startswith(
        "The status patch of DesktopImage team-a/image-1 could not reach the API server ("
    )
    kube.close()


async def test_a_lease_call_goes_out_while_every_call_thread_is_busy(silent: SilentServer) -> None:
    kube = KubeApi(Login(server=f"http://127.0.0.1:{silent.port}"), timeout_seconds=3 * TIMEOUT, workers=1)
    try:
        busy = asyncio.ensure_future(kube.patch_status("team-a", "image-1", {}))
        await asyncio.sleep(TIMEOUT / 5)  # the only call thread and connection are now taken
        started = time.monotonic()
        with pytest.raises(KubeTimeout, match=r"read of Lease team-a/leader"):
            await kube.read_lease("team-a", "leader", within=TIMEOUT)
        assert time.monotonic() - started < TIMEOUT + SLACK
        assert silent.accepted == 2  # the renewal reached the server, not the back of a queue
        with pytest.raises(KubeTimeout):
            await busy
    finally:
        kube.close()
