"""A credentials Secret is read once in a while, not every reconcile, and again when the cloud refuses it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from desktop_image_operator.cloud import CloudSettings, open_cloud
from desktop_image_operator.cloud.session import CloudSession
from desktop_image_operator.controller.credentials import Credentials
from desktop_image_operator.controller.kube import SecretUnavailable
from desktop_image_operator.controller.settings import RunSettings
from desktop_image_operator.reconciler import conditions as c
from desktop_image_operator.reconciler.failures import Failure
from desktop_image_operator.reconciler.resource import Resource
from tests.cloud.support import authorized_key_json

pytestmark = pytest.mark.timeout(30)


class SecretStore:
    """The API server's Secrets as the operator reads them: counted, and gone when deleted."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str, str], bytes] = {}
        self.reads = 0

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        self.reads += 1
        if (namespace, name, key) not in self.keys:
            raise SecretUnavailable(f"Secret {namespace}/{name} does not exist.")
        return self.keys[(namespace, name, key)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def resource() -> Resource:
    body: dict[str, Any] = {
        "metadata": {"name": "img", "namespace": "team-a", "uid": "u-1", "generation": 1},
        "spec": {"source": {"desktopId": "e3v"}, "credentialsRef": {"name": "yc-sa-key"}},
    }
    return Resource.from_body(body)


@pytest.fixture
async def session() -> AsyncIterator[CloudSession]:
    async with open_cloud(CloudSettings()) as opened:  # no call reaches the cloud here
        yield opened


def credentials(session: CloudSession, store: SecretStore, clock: Clock) -> Credentials:
    settings = RunSettings(credentials_cache_seconds=60)
    return Credentials(session, store, settings, clock=clock)  # type: ignore[arg-type]


async def test_the_secret_is_read_once_while_its_key_is_fresh(session: CloudSession) -> None:
    store, clock = SecretStore(), Clock()
    store.keys[("team-a", "yc-sa-key", "key.json")] = authorized_key_json().encode()
    creds = credentials(session, store, clock)
    first = await creds.client_for(resource())
    for _ in range(5):
        clock.now += 10
        assert await creds.client_for(resource()) is first
    assert store.reads == 1


async def test_the_secret_is_read_again_after_a_while(session: CloudSession) -> None:
    store, clock = SecretStore(), Clock()
    store.keys[("team-a", "yc-sa-key", "key.json")] = authorized_key_json().encode()
    creds = credentials(session, store, clock)
    await creds.client_for(resource())
    clock.now += 61
    await creds.client_for(resource())
    assert store.reads == 2


async def test_a_refused_key_is_read_again_at_once(session: CloudSession) -> None:
    store, clock = SecretStore(), Clock()
    store.keys[("team-a", "yc-sa-key", "key.json")] = authorized_key_json().encode()
    creds = credentials(session, store, clock)
    await creds.client_for(resource())
    creds.forget(resource())
    await creds.client_for(resource())
    assert store.reads == 2


async def test_a_missing_secret_is_not_remembered(session: CloudSession) -> None:
    store, clock = SecretStore(), Clock()
    creds = credentials(session, store, clock)
    with pytest.raises(Failure) as caught:
        await creds.client_for(resource())
    assert caught.value.reason == c.CREDENTIALS_INVALID
    store.keys[("team-a", "yc-sa-key", "key.json")] = authorized_key_json().encode()
    await creds.client_for(resource())  # created meanwhile: found at once
    assert store.reads == 2
