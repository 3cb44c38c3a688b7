"""Credentials Secrets on the real API server: read once, then followed by a watch until they change or go."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from desktop_image_operator.cloud import CloudSettings, open_cloud
from desktop_image_operator.cloud.session import CloudSession
from desktop_image_operator.controller.credentials import Credentials
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.kube import SecretSnapshot, SecretWatches, WatchEnd
from desktop_image_operator.reconciler import conditions as c
from desktop_image_operator.reconciler.failures import Failure
from desktop_image_operator.reconciler.resource import Resource
from tests.cloud.support import authorized_key_json
from tests.support.counting_kube import CountingKube

pytestmark = [pytest.mark.controlplane, pytest.mark.timeout(60)]

NAME, KEY = "yc-sa-key", "key.json"
WAIT = 10.0  # a watch event arrives within milliseconds; this is for a loaded machine


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
async def session() -> AsyncIterator[CloudSession]:
    async with open_cloud(CloudSettings()) as opened:  # no call reaches the cloud here
        yield opened


class Watched:
    """Credentials over the real client and real watches; closed (watch tasks ended) afterwards."""

    def __init__(self, session: CloudSession, kube: CountingKube, namespace: str, **watching: Any) -> None:
        self.watches = SecretWatches(kube, **watching)
        self.credentials = Credentials(session, kube, RunSettings(), watches=self.watches)
        self.namespace = namespace

    async def client(self) -> Any:
        return await self.credentials.client_for(resource(self.namespace))

    async def close(self) -> None:
        self.credentials.close()
        await ended(self.watches)


@pytest.fixture
async def watched(session: CloudSession, kube: CountingKube, namespace: str) -> AsyncIterator[Watched]:
    made = Watched(session, kube, namespace)
    yield made
    await made.close()


def resource(namespace: str, secret: str = NAME) -> Resource:
    body: dict[str, Any] = {
        "metadata": {"name": "img", "namespace": namespace, "uid": "u-1", "generation": 1},
        "spec": {"source": {"desktopId": "e3v"}, "credentialsRef": {"name": secret}},
    }
    return Resource.from_body(body)


def key_data(number: int) -> dict[str, str]:
    text = authorized_key_json(key_id=f"ajekey{number:013d}")
    return {KEY: base64.b64encode(text.encode()).decode()}


def put_secret(core: client.CoreV1Api, namespace: str, number: int, name: str = NAME) -> None:
    body = client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=key_data(number))
    try:
        core.replace_namespaced_secret(name, namespace, body)
    except client.ApiException as error:
        if error.status != 404:
            raise
        core.create_namespaced_secret(namespace, body)


def secret_version(core: client.CoreV1Api, namespace: str, name: str = NAME) -> str:
    """The Secret's resourceVersion as the API server has it now."""
    metadata = core.read_namespaced_secret(name, namespace).metadata
    assert metadata is not None
    assert metadata.resource_version is not None
    return str(metadata.resource_version)


def secret_reads() -> float:
    return REGISTRY.get_sample_value("desktop_image_operator_secret_reads_total") or 0.0


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, "not seen in time"
        await asyncio.sleep(0.05)


async def ended(watches: SecretWatches, within: float = WAIT) -> None:
    """Wait (bounded) until no watch task of `watches` runs any more."""
    deadline = time.monotonic() + within
    while watches.running:
        assert time.monotonic() < deadline, f"{watches.running} watch tasks still running"
        await asyncio.sleep(0.01)


def watch_tasks() -> list[asyncio.Task[Any]]:
    """The watch tasks alive on the event loop (each is named after its Secret)."""
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("secret-watch ")]


async def test_reconciles_with_an_unchanged_secret_read_it_exactly_once(
    watched: Watched, kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    put_secret(core, namespace, 1)
    reads_before = secret_reads()
    first = await watched.client()
    for _ in range(50):
        assert await watched.client() is first
    assert kube.secret_reads == 1
    assert secret_reads() - reads_before == 1


async def test_more_secrets_in_use_than_the_calls_have_connections_are_all_watched_and_each_read_once(
    watched: Watched, kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    names = [f"key-{number}" for number in range(12)]  # the calls' pool has 8 connections; watches their own
    for number, name in enumerate(names):
        put_secret(core, namespace, number, name)
    for _ in range(5):
        for name in names:
            await watched.credentials.client_for(resource(namespace, name))
    assert kube.secret_reads == len(names)
    assert watched.watches.running == len(names)
    last = await watched.credentials.client_for(resource(namespace, names[-1]))
    put_secret(core, namespace, 99, names[-1])

    async def changed() -> bool:
        return await watched.credentials.client_for(resource(namespace, names[-1])) is not last

    await eventually(changed)  # the last one's watch runs as well as the first's
    assert kube.secret_reads == len(names)


async def test_a_secret_changed_in_the_api_server_is_used_without_another_read(
    watched: Watched, kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    put_secret(core, namespace, 1)
    first = await watched.client()
    put_secret(core, namespace, 2)

    async def changed() -> bool:
        return await watched.client() is not first

    await eventually(changed)
    assert kube.secret_reads == 1
    current = secret_version(core, namespace)
    seen = kube.seen_secret(namespace, NAME)  # what the finalizer guard goes by
    assert seen is not None
    assert seen.resource_version == current


async def test_a_secret_deleted_in_the_api_server_fails_the_next_use(
    watched: Watched, core: client.CoreV1Api, namespace: str
) -> None:
    put_secret(core, namespace, 1)
    await watched.client()
    core.delete_namespaced_secret(NAME, namespace)

    async def refused() -> bool:
        try:
            await watched.client()
        except Failure:
            return True
        return False

    await eventually(refused)
    with pytest.raises(Failure) as caught:
        await watched.client()
    assert caught.value.reason == c.CREDENTIALS_INVALID
    assert f"Secret {namespace}/{NAME} does not exist" in caught.value.message


async def test_the_watch_resumes_after_the_server_ends_each_request(
    session: CloudSession, kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    watched = Watched(session, kube, namespace, seconds=1, read_slack=5.0)
    try:
        put_secret(core, namespace, 1)
        first = await watched.client()
        await asyncio.sleep(2.5)  # the server ended the first request or two meanwhile
        put_secret(core, namespace, 2)

        async def changed() -> bool:
            return await watched.client() is not first

        await eventually(changed)
        assert kube.secret_reads == 1
    finally:
        await watched.close()


class Recorder:
    """A listener that keeps what the watch reported (from its task, on the event loop)."""

    def __init__(self) -> None:
        self.changes: list[SecretSnapshot | None] = []
        self.connected: list[bool] = []
        self.ends: list[WatchEnd] = []
        self.over = asyncio.Event()

    def changed(self, snapshot: SecretSnapshot | None) -> None:
        self.changes.append(snapshot)

    def following(self, connected: bool) -> None:
        self.connected.append(connected)

    def ended(self, why: WatchEnd) -> None:
        self.ends.append(why)
        self.over.set()

    def wanted(self) -> bool:
        return True


async def test_close_ends_every_watch_task_promptly(
    kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    put_secret(core, namespace, 1)
    version = secret_version(core, namespace)
    watches = SecretWatches(kube)  # each request would last 25 s, its read timeout 30 s
    recorders = [Recorder() for _ in range(3)]
    for recorder in recorders:
        watches.watch(namespace, NAME, version, recorder)
    await asyncio.sleep(0.5)  # every task is reading its stream by now
    tasks = watch_tasks()
    assert len(tasks) == watches.running == 3
    started = time.monotonic()
    watches.close()
    _, still_running = await asyncio.wait(tasks, timeout=2.0)
    assert time.monotonic() - started < 2.0
    assert still_running == set()
    assert [recorder.ends for recorder in recorders] == [[WatchEnd.STOPPED]] * 3
    assert [recorder.connected for recorder in recorders] == [[]] * 3, "a stop is no break"
    assert all(not task.cancelled() for task in tasks), "each ended by reporting, not by a cancellation"
    assert watches.running == 0
    assert watch_tasks() == []


async def test_a_watch_sees_a_change_then_the_deletion(
    kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    put_secret(core, namespace, 1)
    version = secret_version(core, namespace)
    watches, recorder = SecretWatches(kube), Recorder()
    watches.watch(namespace, NAME, version, recorder)
    try:
        put_secret(core, namespace, 2)
        core.delete_namespaced_secret(NAME, namespace)

        async def both_seen() -> bool:
            return len(recorder.changes) >= 2

        await eventually(both_seen)
    finally:
        watches.close()
        await ended(watches)
    changed, deleted = recorder.changes
    assert changed is not None
    assert changed.data[KEY] == base64.b64decode(key_data(2)[KEY])
    assert deleted is None
