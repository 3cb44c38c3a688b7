"""Status writes on the real API server: each is conditional on the version its reconcile worked from, and
checked against the leader's fence when it is sent, so a deposed leader never overwrites its successor."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client

from desktop_image_operator.api import GROUP, PLURAL, VERSION
from desktop_image_operator.base import Fence, Fenced
from desktop_image_operator.controller.controller import Controller, ObjectState
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.kube import KubeApi, StatusConflict, kubeconfig_login
from desktop_image_operator.reconciler.reconciler import Reconciler
from tests.support.manifests import desktop_image

pytestmark = [pytest.mark.controlplane]


@pytest.fixture
def custom(api_client: client.ApiClient, crd: None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def make_image(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return cast(
        dict[str, Any],
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, desktop_image(name)),
    )


def read_image(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return cast(dict[str, Any], custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))


def status_of(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return dict(read_image(custom, namespace, name).get("status") or {})


def writer_of(kube: KubeApi, body: dict[str, Any]) -> Any:
    """The status writer a reconcile of `body` gets (the controller's own)."""
    controller = Controller(
        settings=RunSettings(),
        reconciler=Reconciler(),
        credentials=None,  # type: ignore[arg-type]
        kube=kube,
        guard=None,  # type: ignore[arg-type]
        rng=random.Random(0),
    )
    state = ObjectState()
    state.freshest(body)
    return controller._writer(body, state)


async def test_a_status_write_on_a_version_the_object_has_left_is_refused_with_a_conflict(
    kubeconfig: Path, custom: client.CustomObjectsApi, namespace: str
) -> None:
    read = make_image(custom, namespace, "contested")["metadata"]["resourceVersion"]
    kube = KubeApi(kubeconfig_login(kubeconfig), timeout_seconds=5.0)
    try:
        await kube.patch_status(namespace, "contested", {"status": {"imageId": "new"}}, resource_version=read)
        with pytest.raises(StatusConflict):
            await kube.patch_status(
                namespace, "contested", {"status": {"imageId": "stale"}}, resource_version=read
            )
    finally:
        await kube.aclose()
    assert status_of(custom, namespace, "contested")["imageId"] == "new"


async def test_a_deposed_leaders_reconcile_cannot_overwrite_what_its_successor_wrote(
    kubeconfig: Path, custom: client.CustomObjectsApi, namespace: str
) -> None:
    body = make_image(custom, namespace, "handed-over")
    old, new = (KubeApi(kubeconfig_login(kubeconfig), timeout_seconds=5.0) for _ in range(2))
    try:
        deposed = writer_of(old, body)
        await deposed({"status": {"imageId": "first"}})
        await deposed({"status": {"imageStatus": "CREATING"}})  # its own last write is no conflict
        current = read_image(custom, namespace, "handed-over")
        await writer_of(new, current)({"status": {"imageId": "successor's", "imageStatus": "ACTIVE"}})
        with pytest.raises(StatusConflict):
            await deposed({"status": {"imageStatus": "CREATING"}})
    finally:
        await old.aclose()
        await new.aclose()
    assert status_of(custom, namespace, "handed-over") == {"imageId": "successor's", "imageStatus": "ACTIVE"}


async def test_a_status_write_is_fenced_when_it_is_sent_not_when_it_was_queued(
    kubeconfig: Path, custom: client.CustomObjectsApi, namespace: str
) -> None:
    make_image(custom, namespace, "queued")
    fence = Fence()
    fence.grant(time.monotonic() + 30.0)
    kube = KubeApi(kubeconfig_login(kubeconfig), timeout_seconds=5.0, concurrency=1, gate=fence)
    try:
        # The only turn is taken: the write waits in the queue, past the check it would once have had.
        async with kube._turn():
            write = asyncio.create_task(
                kube.patch_status(namespace, "queued", {"status": {"imageId": "late"}})
            )
            await asyncio.sleep(0.2)
            fence.revoke()  # stepped down meanwhile
        with pytest.raises(Fenced):
            await write
    finally:
        await kube.aclose()
    assert status_of(custom, namespace, "queued") == {}


async def test_a_status_write_takes_no_longer_than_the_fence_has_left(
    kubeconfig: Path, custom: client.CustomObjectsApi, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_image(custom, namespace, "bounded")
    fence = Fence()
    fence.grant(time.monotonic() + 3.0)
    kube = KubeApi(kubeconfig_login(kubeconfig), timeout_seconds=60.0, gate=fence)
    limits: list[float] = []
    request = kube._calls.request

    async def recorded(*args: Any, within: float, **kwargs: Any) -> dict[str, Any]:
        limits.append(within)
        return await request(*args, within=within, **kwargs)

    monkeypatch.setattr(kube._calls, "request", recorded)
    try:
        await kube.patch_status(namespace, "bounded", {"status": {"imageId": "x"}})
    finally:
        await kube.aclose()
    assert len(limits) == 1
    assert 2.0 < limits[0] <= 3.0
