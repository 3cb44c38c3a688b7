"""DesktopImage manifests built from the fake cloud's seeded sources."""

from __future__ import annotations

import json
from typing import Any

from desktop_image_operator.api import API_VERSION, KIND
from desktop_image_operator_dev.fakecloud import seeds


def from_desktop(name: str) -> dict[str, Any]:
    return _manifest(name, {"source": {"desktopId": seeds.STOPPED_DESKTOP_ID}})


def from_compute_image(name: str) -> dict[str, Any]:
    return _manifest(
        name, {"source": {"computeImageId": seeds.COMPUTE_IMAGE_ID}, "folderId": seeds.FOLDER_ID}
    )


def as_list(items: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def _manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


def is_ready(obj: dict[str, Any]) -> bool:
    """Ready=True for the object's current generation (what `kubectl wait --for=condition=Ready` checks)."""
    status = obj.get("status") or {}
    generation = obj.get("metadata", {}).get("generation")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            observed = condition.get("observedGeneration", status.get("observedGeneration"))
            return bool(condition.get("status") == "True" and observed == generation)
    return False
