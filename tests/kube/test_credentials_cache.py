"""A credentials Secret is read once, then kept current by its watch; it is read again only when the watch
ends, the cloud refuses its key, or no object used it for a while."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from desktop_image_operator.cloud import CloudSettings, open_cloud
from desktop_image_operator.cloud.session import CloudSession
from desktop_image_operator.controller.credentials import Credentials
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.kube import SecretMeta, SecretSnapshot, SecretUnavailable, WatchEnd, WatchListener
from desktop_image_operator.kube._secrets import UNWATCHED_SECONDS
from desktop_image_operator.reconciler import conditions as c
from desktop_image_operator.reconciler.failures import Failure
from desktop_image_operator.reconciler.resource import Resource
from tests.cloud.support import authorized_key_json

pytestmark = pytest.mark.timeout(30)

NAMESPACE, NAME, KEY = "team-a", "yc-sa-key", "key.json"
IDLE = 1200.0


class SecretStore:
    """The API server's Secrets as the operator reads them: counted, versioned, and gone when deleted."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], SecretSnapshot] = {}
        self.reads = 0
        self.seen: list[SecretMeta | None] = []
        self._version = 100

    def put(self, data: dict[str, bytes], *finalizers: str) -> SecretSnapshot:
        self._version += 1
        meta = SecretMeta("uid-1", str(self._version), finalizers, deleting=False)
        self.secrets[(NAMESPACE, NAME)] = SecretSnapshot(meta, data)
        return self.secrets[(NAMESPACE, NAME)]

    async def read_secret(self, namespace: str, name: str) -> SecretSnapshot:
        self.reads += 1
        if (namespace, name) not in self.secrets:
            raise SecretUnavailable(f"Secret {namespace}/{name} does not exist.")
        return self.secrets[(namespace, name)]

    def saw_secret(self, namespace: str, name: str, meta: SecretMeta | None) -> None:
        self.seen.append(meta)


class FakeWatch:
    """One watch as the real one behaves: it reports until it ends, then never again. Like the real
    one's task, it calls its listener directly, on the event loop: nothing is handed over for later."""

    def __init__(self, since: str, listener: WatchListener) -> None:
        self.since = since
        self.listener = listener
        self.over = False

    def deliver(self, snapshot: SecretSnapshot | None) -> None:
        assert not self.over, "an ended watch reports nothing"
        self.listener.changed(snapshot)

    def end(self, why: WatchEnd) -> None:
        if not self.over:
            self.over = True
            self.listener.ended(why)

    def reopen(self) -> None:
        """The server ended one request: the watch asks again only while it is wanted."""
        if not self.listener.wanted():
            self.end(WatchEnd.IDLE)

    def stop(self) -> None:
        self.end(WatchEnd.STOPPED)


class FakeWatches:
    def __init__(self) -> None:
        self.started: list[FakeWatch] = []
        self.closed = False

    def watch(self, namespace: str, name: str, since: str, listener: WatchListener) -> FakeWatch:
        assert (namespace, name) == (NAMESPACE, NAME)
        self.started.append(FakeWatch(since, listener))
        return self.started[-1]

    def close(self) -> None:
        self.closed = True

    @property
    def live(self) -> list[FakeWatch]:
        return [watch for watch in self.started if not watch.over]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Setup:
    def __init__(self, session: CloudSession) -> None:
        self.store, self.watches, self.clock = SecretStore(), FakeWatches(), Clock()
        settings = RunSettings(credentials_cache_seconds=IDLE)
        self.credentials = Credentials(
            session,
            self.store,  # type: ignore[arg-type]
            settings,
            watches=self.watches,
            clock=self.clock,
        )

    async def client(self) -> Any:
        return await self.credentials.client_for(resource())

    async def failure(self) -> Failure:
        with pytest.raises(Failure) as caught:
            await self.credentials.client_for(resource())
        return caught.value


def resource() -> Resource:
    body: dict[str, Any] = {
        "metadata": {"name": "img", "namespace": NAMESPACE, "uid": "u-1", "generation": 1},
        "spec": {"source": {"desktopId": "e3v"}, "credentialsRef": {"name": NAME}},
    }
    return Resource.from_body(body)


def key(number: int) -> dict[str, bytes]:
    return {KEY: authorized_key_json(key_id=f"ajekey{number:013d}").encode()}


def secret_reads() -> float:
    return REGISTRY.get_sample_value("desktop_image_operator_secret_reads_total") or 0.0


@pytest.fixture
async def session() -> AsyncIterator[CloudSession]:
    async with open_cloud(CloudSettings()) as opened:  # no call reaches the cloud here
        yield opened


@pytest.fixture
def setup(session: CloudSession) -> Setup:
    return Setup(session)


async def test_the_secret_is_read_once_while_its_watch_runs(setup: Setup) -> None:
    setup.store.put(key(1))
    reads_before = secret_reads()
    first = await setup.client()
    for _ in range(20):
        setup.clock.now += 600  # far beyond any period a timer would have re-read it after
        assert await setup.client() is first
    assert setup.store.reads == 1
    assert secret_reads() - reads_before == 1
    assert [watch.since for watch in setup.watches.started] == ["101"]


async def test_a_changed_key_arrives_by_the_watch_without_a_read(setup: Setup) -> None:
    setup.store.put(key(1))
    first = await setup.client()
    setup.watches.started[0].deliver(setup.store.put(key(2)))
    second = await setup.client()
    assert second is not first
    assert second.token_source is not first.token_source
    assert setup.store.reads == 1


async def test_a_change_that_keeps_the_key_keeps_the_client_and_its_token(setup: Setup) -> None:
    setup.store.put(key(1))
    first = await setup.client()
    changed = setup.store.put(key(1), "example.com/finalizer")
    setup.watches.started[0].deliver(changed)
    assert await setup.client() is first
    assert setup.store.seen == [changed.meta]  # the finalizer guard sees the Secret as the watch does


async def test_a_deleted_secret_fails_the_next_use_as_invalid_credentials(setup: Setup) -> None:
    setup.store.put(key(1))
    await setup.client()
    del setup.store.secrets[(NAMESPACE, NAME)]
    setup.watches.started[0].deliver(None)
    failure = await setup.failure()
    assert failure.reason == c.CREDENTIALS_INVALID
    assert f"Secret {NAMESPACE}/{NAME} does not exist" in failure.message
    assert setup.watches.live == []
    assert setup.store.seen == [None]


async def test_a_broken_watch_makes_the_next_use_read_again_and_watch_anew(setup: Setup) -> None:
    setup.store.put(key(1))
    await setup.client()
    broken = setup.watches.started[0]
    broken.end(WatchEnd.FAILED)
    setup.store.put(key(2))
    second = await setup.client()
    assert setup.store.reads == 2
    assert [watch.since for watch in setup.watches.live] == ["102"]
    assert await setup.client() is second


async def test_a_watch_ending_is_distrusted_by_the_very_next_use_with_nothing_run_in_between(
    setup: Setup,
) -> None:
    setup.store.put(key(1))
    await setup.client()
    setup.watches.started[0].end(WatchEnd.EXPIRED)  # its task just ended; the loop ran nothing since
    await setup.client()
    assert setup.store.reads == 2


async def test_a_watch_being_opened_again_is_distrusted_so_a_use_meanwhile_reads_and_watches_anew(
    setup: Setup,
) -> None:
    setup.store.put(key(1))
    await setup.client()
    broken = setup.watches.started[0]
    broken.listener.following(False)  # its task just noticed the silence; the loop ran nothing since
    setup.store.put(key(2))
    second = await setup.client()
    assert setup.store.reads == 2
    assert broken.over, "the old watch stops"
    assert [watch.since for watch in setup.watches.live] == ["102"]
    assert await setup.client() is second


async def test_a_watch_back_after_a_break_is_trusted_again_without_a_read(setup: Setup) -> None:
    setup.store.put(key(1))
    first = await setup.client()
    watch = setup.watches.started[0]
    watch.listener.following(False)
    watch.listener.following(True)  # opened again from the last version it saw
    assert await setup.client() is first
    assert setup.store.reads == 1
    assert setup.watches.live == [watch]


async def test_late_events_of_a_replaced_watch_are_ignored(setup: Setup) -> None:
    setup.store.put(key(1))
    await setup.client()
    old = setup.watches.started[0]
    setup.credentials.forget(resource())
    current = await setup.client()
    # A stopped watch's task is cancelled only at its next wait: what it had read by then still reports.
    old.listener.changed(SecretSnapshot(SecretMeta("uid-1", "99", (), False), key(9)))
    old.listener.following(False)
    old.listener.ended(WatchEnd.EXPIRED)
    assert await setup.client() is current
    assert setup.store.seen == []
    assert setup.store.reads == 2
    assert [watch.over for watch in setup.watches.started] == [True, False]


async def test_a_refused_key_is_read_again_at_once_and_its_old_watch_stops(setup: Setup) -> None:
    setup.store.put(key(1))
    await setup.client()
    setup.credentials.forget(resource())
    await setup.client()
    assert setup.store.reads == 2
    assert [watch.over for watch in setup.watches.started] == [True, False]


async def test_a_missing_secret_is_neither_remembered_nor_watched(setup: Setup) -> None:
    assert (await setup.failure()).reason == c.CREDENTIALS_INVALID
    setup.store.put(key(1))
    await setup.client()  # created meanwhile: found at once
    assert setup.store.reads == 2
    assert len(setup.watches.started) == 1


async def test_a_missing_key_says_which_without_another_read(setup: Setup) -> None:
    setup.store.put({"other.json": b"{}"})
    failure = await setup.failure()
    assert failure.message == f"Secret {NAMESPACE}/{NAME} has no key 'key.json'."
    assert (await setup.failure()).message == failure.message
    assert setup.store.reads == 1


async def test_a_malformed_key_is_invalid_and_names_no_key_material(setup: Setup) -> None:
    setup.store.put({KEY: b'{"id": "k", "private_key": "secret-body-123"}'})
    failure = await setup.failure()
    assert failure.reason == c.CREDENTIALS_INVALID
    assert "is not an authorized key" in failure.message
    assert "secret-body-123" not in failure.message


async def test_a_secret_no_object_used_for_a_while_is_no_longer_watched(setup: Setup) -> None:
    setup.store.put(key(1))
    await setup.client()
    watch = setup.watches.started[0]
    setup.clock.now += IDLE - 1
    watch.reopen()
    assert not watch.over
    setup.clock.now += 2
    watch.reopen()
    assert watch.over
    await setup.client()
    assert setup.store.reads == 2


async def test_a_use_keeps_the_watch_wanted(setup: Setup) -> None:
    setup.store.put(key(1))
    await setup.client()
    watch = setup.watches.started[0]
    for _ in range(5):
        setup.clock.now += IDLE / 2
        await setup.client()
        watch.reopen()
    assert not watch.over
    assert setup.store.reads == 1


async def test_without_permission_to_watch_the_secret_is_read_again_after_a_minute(setup: Setup) -> None:
    setup.store.put(key(1))
    await setup.client()
    setup.watches.started[0].end(WatchEnd.FORBIDDEN)
    setup.clock.now += UNWATCHED_SECONDS - 1
    await setup.client()
    assert setup.store.reads == 1
    setup.clock.now += 2
    await setup.client()
    assert setup.store.reads == 2


async def test_objects_needing_the_secret_at_once_share_one_read(setup: Setup) -> None:
    setup.store.put(key(1))
    clients = await asyncio.gather(*(setup.client() for _ in range(10)))
    assert setup.store.reads == 1
    assert len({id(client) for client in clients}) == 1
    assert len(setup.watches.started) == 1


async def test_clear_stops_every_watch_and_the_next_use_reads_again(setup: Setup) -> None:
    setup.store.put(key(1))
    await setup.client()
    setup.credentials.clear()
    assert setup.watches.live == []
    await setup.client()
    assert setup.store.reads == 2
    assert len(setup.watches.live) == 1


async def test_after_close_nothing_is_watched_and_every_use_reads(setup: Setup) -> None:
    setup.store.put(key(1))
    await setup.client()
    setup.credentials.close()
    assert setup.watches.closed
    await setup.client()
    await setup.client()
    assert setup.store.reads == 3
    assert setup.watches.live == []
