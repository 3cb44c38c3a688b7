"""DesktopImage manifests for the integration tests, built from the fake cloud's seeded sources."""

from __future__ import annotations

import json
from typing import Any

from desktop_image_operator_dev.fakecloud import seeds

API_VERSION = "clouddesktop.yc.io/v1alpha1"


def desktop_image(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"source": {"desktopId": seeds.STOPPED_DESKTOP_ID}}
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": "DesktopImage", "metadata": {"name": name}, "spec": body}


def from_compute_image(name: str, **spec: Any) -> dict[str, Any]:
    return desktop_image(
        name, source={"computeImageId": seeds.COMPUTE_IMAGE_ID}, folderId=seeds.FOLDER_ID, **spec
    )


def text(*manifests: dict[str, Any]) -> str:
    return "\n---\n".join(json.dumps(m) for m in manifests)
