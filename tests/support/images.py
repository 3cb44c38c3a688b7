"""Images made by hand: through the fake cloud's REST API, with a token from its admin API, as someone with
the console or `yc` would make them (the operator never sees these calls as its own)."""

from __future__ import annotations

import httpx

from desktop_image_operator_dev.fakecloud import seeds
from tests.support.processes import FakeCloudProcess

IMAGES_PATH = "/cloud-desktop/v1/images"


def make_image(
    cloud: FakeCloudProcess,
    name: str,
    *,
    folder_id: str = seeds.FOLDER_ID,
    labels: dict[str, str] | None = None,
    description: str = "",
) -> str:
    """Copy a Compute image into a Cloud Desktop image through the REST API, as a person would; its ID."""
    token = cloud.http.post("/tokens").json()["iamToken"]
    body = {"folderId": folder_id, "imageId": seeds.COMPUTE_IMAGE_ID, "name": name, "labels": labels or {}}
    if description:
        body["description"] = description
    response = httpx.post(
        cloud.endpoints["cloudDesktop"] + IMAGES_PATH + ":copy",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        trust_env=False,
    )
    response.raise_for_status()
    return str(response.json()["metadata"]["imageId"])
