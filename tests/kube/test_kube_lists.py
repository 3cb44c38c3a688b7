"""The operator's own lists on the real API server: in pages, and for Secrets without their data."""

from __future__ import annotations

import base64

import pytest
from kubernetes import client

from desktop_image_operator.api import GROUP, PLURAL, VERSION
from desktop_image_operator.kube import _api as kube_module
from tests.support.counting_kube import CountingKube
from tests.support.manifests import desktop_image

pytestmark = [pytest.mark.controlplane]

KEY_MATERIAL = "fake-private-key-body-4b9e21"


async def test_desktop_images_are_listed_a_page_at_a_time(
    kube: CountingKube,
    api_client: client.ApiClient,
    crd: None,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    for n in range(5):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, desktop_image(f"image-{n}"))
    monkeypatch.setattr(kube_module, "LIST_PAGE_SIZE", 2)

    images = await kube.list_desktop_images(namespace)
    assert sorted(image["metadata"]["name"] for image in images) == [f"image-{n}" for n in range(5)]
    assert kube.calls == [f"list of DesktopImages in {namespace}"] * 3


async def test_secrets_are_listed_with_their_metadata_and_never_their_data(
    kube: CountingKube, api_client: client.ApiClient, namespace: str
) -> None:
    data = {"key.json": base64.b64encode(KEY_MATERIAL.encode()).decode()}
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="team-key"), data=data)
    client.CoreV1Api(api_client).create_namespaced_secret(namespace, secret)

    pages = [page async for page in kube.secret_metadata_pages(namespace)]
    listed = [item for page in pages for item in page]
    assert [item["metadata"]["name"] for item in listed] == ["team-key"]
    assert "data" not in listed[0]
    assert data["key.json"] not in repr(pages)
