"""The credentials finalizer on the real API server: a Secret in use outlives its deletion until released."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from desktop_image_operator.api import GROUP, PLURAL, VERSION
from desktop_image_operator.controller.secret_guard import SecretGuard, SecretGuardError
from desktop_image_operator.kube import KubeApi, Login
from desktop_image_operator.reconciler.annotations import CREDENTIALS_FINALIZER, FINALIZER
from tests.support.counting_kube import CountingKube
from tests.support.manifests import desktop_image
from tests.support.servers import SilentServer

pytestmark = [pytest.mark.controlplane]

KEY_MATERIAL = "fake-private-key-body-7c1d0e"  # must never show in an error
OTHERS = "example.com/someone-else"


@pytest.fixture
def core(api_client: client.ApiClient, namespace: str) -> Iterator[client.CoreV1Api]:
    """The Secrets API for setting up and looking; afterwards no Secret keeps the namespace alive."""
    api = client.CoreV1Api(api_client)
    yield api
    for secret in api.list_namespaced_secret(namespace).items:
        if secret.metadata.finalizers:
            patch = [{"op": "remove", "path": "/metadata/finalizers"}]
            api.patch_namespaced_secret(secret.metadata.name, namespace, patch)


@pytest.fixture
def custom(api_client: client.ApiClient, crd: None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def make_secret(core: client.CoreV1Api, namespace: str, name: str, *finalizers: str) -> None:
    data = {"key.json": base64.b64encode(KEY_MATERIAL.encode()).decode()}
    meta = client.V1ObjectMeta(name=name, finalizers=list(finalizers) or None)
    core.create_namespaced_secret(namespace, client.V1Secret(metadata=meta, data=data))


def finalizers(core: client.CoreV1Api, namespace: str, name: str) -> list[str]:
    return list(core.read_namespaced_secret(name, namespace).metadata.finalizers or [])


def make_image(custom: client.CustomObjectsApi, namespace: str, name: str, secret: str) -> str:
    body = desktop_image(name, credentialsRef={"name": secret})
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    return str(created["metadata"]["uid"])


def gone(core: client.CoreV1Api, namespace: str, name: str, *, within: float = 20) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        time.sleep(0.2)
    return False


async def test_hold_adds_the_finalizer_once_and_a_second_hold_makes_no_call(
    kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    make_secret(core, namespace, "team-key", OTHERS)
    guard = SecretGuard(kube)

    await guard.hold(namespace, "team-key")
    assert sorted(finalizers(core, namespace, "team-key")) == sorted([OTHERS, CREDENTIALS_FINALIZER])
    assert kube.calls == [
        f"read of Secret {namespace}/team-key",
        f"finalizer patch of Secret {namespace}/team-key",
    ]

    await guard.hold(namespace, "team-key")
    assert len(kube.calls) == 2


async def test_hold_after_the_credentials_read_adds_no_read_of_its_own(
    kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    make_secret(core, namespace, "team-key")
    guard = SecretGuard(kube)
    for _ in range(3):  # three reconciles: each reads the key, then holds
        assert await kube.read_secret_key(namespace, "team-key", "key.json") == KEY_MATERIAL.encode()
        await guard.hold(namespace, "team-key")
    read, patch = f"read of Secret {namespace}/team-key", f"finalizer patch of Secret {namespace}/team-key"
    assert kube.calls == [read, patch, read, read]
    assert finalizers(core, namespace, "team-key") == [CREDENTIALS_FINALIZER]


async def test_release_waits_for_the_last_desktop_image_that_names_the_secret(
    kube: CountingKube, core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    make_secret(core, namespace, "team-key", OTHERS)
    make_secret(core, namespace, "other-key")
    first = make_image(custom, namespace, "first", "team-key")
    make_image(custom, namespace, "second", "team-key")
    make_image(custom, namespace, "unrelated", "other-key")
    guard = SecretGuard(kube)
    await guard.hold(namespace, "team-key")

    await guard.release_if_unused(namespace, "team-key", leaving_uid=first)
    assert CREDENTIALS_FINALIZER in finalizers(core, namespace, "team-key")

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "second")
    await guard.release_if_unused(namespace, "team-key", leaving_uid=first)
    assert finalizers(core, namespace, "team-key") == [OTHERS]


async def test_a_held_secret_deleted_first_stays_readable_until_released(
    kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    make_secret(core, namespace, "team-key")
    guard = SecretGuard(kube)
    await guard.hold(namespace, "team-key")

    core.delete_namespaced_secret("team-key", namespace)
    assert not gone(core, namespace, "team-key", within=1)
    terminating = core.read_namespaced_secret("team-key", namespace)
    assert terminating.metadata.deletion_timestamp is not None
    # The delete handler can still read its credentials, and holding again changes nothing.
    assert await kube.read_secret_key(namespace, "team-key", "key.json") == KEY_MATERIAL.encode()
    await guard.hold(namespace, "team-key")

    await guard.release_if_unused(namespace, "team-key", leaving_uid="uid-of-the-last-image")
    assert gone(core, namespace, "team-key")


async def test_a_missing_secret_is_neither_held_nor_an_error_to_release(
    kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    guard = SecretGuard(kube)
    await guard.hold(namespace, "missing")
    await guard.release_if_unused(namespace, "missing", leaving_uid="any")
    make_secret(core, namespace, "missing")  # created later: the next hold protects it
    await guard.hold(namespace, "missing")
    assert finalizers(core, namespace, "missing") == [CREDENTIALS_FINALIZER]


async def test_a_secret_recreated_under_the_same_name_is_held_again(
    kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    make_secret(core, namespace, "team-key")
    guard = SecretGuard(kube)
    await guard.hold(namespace, "team-key")
    await guard.release_if_unused(namespace, "team-key", leaving_uid="any")
    core.delete_namespaced_secret("team-key", namespace)
    assert gone(core, namespace, "team-key")
    make_secret(core, namespace, "team-key")

    await kube.read_secret_key(namespace, "team-key", "key.json")  # the next reconcile sees the new one
    await guard.hold(namespace, "team-key")
    assert finalizers(core, namespace, "team-key") == [CREDENTIALS_FINALIZER]


async def test_holding_a_secret_already_being_deleted_is_a_lasting_error_naming_it(
    kube: CountingKube, core: client.CoreV1Api, namespace: str
) -> None:
    make_secret(core, namespace, "team-key", OTHERS)
    core.delete_namespaced_secret("team-key", namespace)
    guard = SecretGuard(kube)
    with pytest.raises(SecretGuardError) as error:
        await guard.hold(namespace, "team-key")
    assert str(error.value) == (
        f"Secret {namespace}/team-key is being deleted; its credentials will soon be gone."
    )
    assert error.value.transient is False
    assert CREDENTIALS_FINALIZER not in finalizers(core, namespace, "team-key")


async def test_an_api_server_without_an_answer_is_a_transient_error_naming_the_secret() -> None:
    silent = SilentServer()
    kube = KubeApi(Login(server=f"http://127.0.0.1:{silent.port}"), timeout_seconds=0.3)
    guard = SecretGuard(kube)
    try:
        with pytest.raises(SecretGuardError) as held:
            await guard.hold("team-a", "team-key")
        with pytest.raises(SecretGuardError) as released:
            await guard.release_if_unused("team-a", "team-key", leaving_uid="any")
    finally:
        await kube.aclose()
        silent.close()
    assert str(held.value) == (
        "Could not add the finalizer to Secret team-a/team-key: "
        "The read of Secret team-a/team-key timed out after 0.3 s."
    )
    assert str(released.value) == (
        "Could not release the finalizer of Secret team-a/team-key: "
        "The list of DesktopImages in team-a timed out after 0.3 s."
    )
    assert held.value.transient
    assert released.value.transient


def make_finalized_image(custom: client.CustomObjectsApi, namespace: str, name: str, secret: str) -> str:
    """A DesktopImage naming `secret` that carries the operator's finalizer, as kopf leaves it."""
    body = desktop_image(name, credentialsRef={"name": secret})
    body["metadata"]["finalizers"] = [FINALIZER]
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    return str(created["metadata"]["uid"])


@pytest.fixture
def unfinalized(custom: client.CustomObjectsApi, namespace: str) -> Iterator[None]:
    """Afterwards no DesktopImage of the test keeps its namespace alive."""
    yield
    for image in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
        patch = {"metadata": {"finalizers": None}}
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, image["metadata"]["name"], patch
        )


def delete_image(custom: client.CustomObjectsApi, namespace: str, name: str) -> None:
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


@pytest.mark.usefixtures("unfinalized")
async def test_objects_deleted_together_release_their_secret_once_the_last_one_finished(
    kube: CountingKube, core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    make_secret(core, namespace, "team-key")
    uids = [make_finalized_image(custom, namespace, f"image-{n}", "team-key") for n in range(3)]
    guard = SecretGuard(kube)
    await guard.hold(namespace, "team-key")
    for n in range(3):  # a namespace deletion: every object terminating, each waiting on its cleanup
        delete_image(custom, namespace, f"image-{n}")

    for uid in uids[:2]:
        await guard.release_if_unused(namespace, "team-key", leaving_uid=uid)
        assert finalizers(core, namespace, "team-key") == [CREDENTIALS_FINALIZER]
    await guard.release_if_unused(namespace, "team-key", leaving_uid=uids[2])
    assert finalizers(core, namespace, "team-key") == []


@pytest.mark.usefixtures("unfinalized")
async def test_releases_asked_for_at_once_share_their_checks_and_let_go(
    kube: CountingKube, core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    make_secret(core, namespace, "team-key")
    uids = [make_finalized_image(custom, namespace, f"image-{n}", "team-key") for n in range(20)]
    guard = SecretGuard(kube)
    await guard.hold(namespace, "team-key")
    for n in range(20):
        delete_image(custom, namespace, f"image-{n}")

    await asyncio.gather(*(guard.release_if_unused(namespace, "team-key", leaving_uid=uid) for uid in uids))
    assert finalizers(core, namespace, "team-key") == []
    lists = [call for call in kube.calls if call.startswith("list of DesktopImages")]
    assert len(lists) <= 2, lists  # the first ask's check, then one check for all asked meanwhile


@pytest.mark.usefixtures("unfinalized")
async def test_a_live_object_keeps_its_secret_while_the_secret_is_being_deleted(
    kube: CountingKube, core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    make_secret(core, namespace, "team-key")
    leaving = make_finalized_image(custom, namespace, "leaving", "team-key")
    make_finalized_image(custom, namespace, "staying", "team-key")
    guard = SecretGuard(kube)
    await guard.hold(namespace, "team-key")
    core.delete_namespaced_secret("team-key", namespace)
    delete_image(custom, namespace, "leaving")

    await guard.release_if_unused(namespace, "team-key", leaving_uid=leaving)
    assert not gone(core, namespace, "team-key", within=1)


async def test_an_object_being_deleted_without_the_operators_finalizer_needs_no_secret(
    kube: CountingKube, core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    make_secret(core, namespace, "team-key")
    body = desktop_image("held-by-another", credentialsRef={"name": "team-key"})
    body["metadata"]["finalizers"] = [OTHERS]  # kept by someone else: nothing of ours runs for it
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    guard = SecretGuard(kube)
    await guard.hold(namespace, "team-key")
    delete_image(custom, namespace, "held-by-another")
    try:
        await guard.release_if_unused(namespace, "team-key")
        assert finalizers(core, namespace, "team-key") == []
    finally:
        patch = {"metadata": {"finalizers": None}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "held-by-another", patch)


async def test_the_sweep_releases_every_secret_no_object_needs_and_keeps_the_others(
    kube: CountingKube, core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> None:
    make_secret(core, namespace, "switched-away", CREDENTIALS_FINALIZER, OTHERS)
    make_secret(core, namespace, "in-use", CREDENTIALS_FINALIZER)
    make_secret(core, namespace, "not-ours", OTHERS)
    make_image(custom, namespace, "user", "in-use")

    await SecretGuard(kube).sweep([namespace])
    assert finalizers(core, namespace, "switched-away") == [OTHERS]
    assert finalizers(core, namespace, "in-use") == [CREDENTIALS_FINALIZER]
    assert finalizers(core, namespace, "not-ours") == [OTHERS]
    assert not any(call.startswith("read of Secret") and "not-ours" in call for call in kube.calls)
