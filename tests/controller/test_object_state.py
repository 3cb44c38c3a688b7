"""What the controller keeps of each object: the newest body it saw, trimmed to what a reconcile reads."""

from __future__ import annotations

import json
from typing import Any

from desktop_image_operator.controller.controller import ObjectState, trimmed

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def body_at(version: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "clouddesktop.yc.io/v1alpha1",
        "kind": "DesktopImage",
        "metadata": {
            "name": "golden",
            "namespace": "team-a",
            "uid": "uid-1",
            "generation": 2,
            "resourceVersion": version,
            "labels": {"team": "a"},
            "annotations": {LAST_APPLIED: json.dumps({"spec": {"name": "golden"}}), "note": "kept"},
            "finalizers": ["clouddesktop.yc.io/finalizer"],
            "managedFields": [{"manager": "kubectl-client-side-apply", "fieldsV1": {"f:spec": {}}}],
            "ownerReferences": [{"kind": "Application", "name": "argo"}],
        },
        "spec": {"folderId": "folder", "name": "golden"},
        "status": status,
    }


def test_a_trimmed_body_keeps_what_a_reconcile_reads_and_drops_the_bookkeeping() -> None:
    slim = trimmed(body_at("10", imageId="image-1"))
    metadata = slim["metadata"]
    assert metadata["annotations"] == {"note": "kept"}
    assert "managedFields" not in metadata
    assert "ownerReferences" not in metadata
    assert metadata["finalizers"] == ["clouddesktop.yc.io/finalizer"]
    assert (metadata["uid"], metadata["generation"], metadata["resourceVersion"]) == ("uid-1", 2, "10")
    assert slim["spec"] == {"folderId": "folder", "name": "golden"}
    assert slim["status"] == {"imageId": "image-1"}
    assert (slim["apiVersion"], slim["kind"]) == ("clouddesktop.yc.io/v1alpha1", "DesktopImage")


def test_the_state_keeps_the_newest_body_whatever_order_they_come_in() -> None:
    state = ObjectState()
    state.freshest(body_at("20", imageId="newer"))
    returned = state.freshest(body_at("19", imageId="older"))  # a watch event behind our own write
    assert returned["status"] == {"imageId": "newer"}
    assert state.latest is not None
    assert state.latest["status"] == {"imageId": "newer"}
    state.freshest(body_at("21", imageId="newest"))
    assert state.latest["status"] == {"imageId": "newest"}


def test_each_read_of_the_kept_body_is_a_copy_a_reconcile_may_change_freely() -> None:
    state = ObjectState()
    state.freshest(body_at("5", imageId="image-1"))
    first = state.latest
    assert first is not None
    first["status"]["imageId"] = "scribbled"
    assert state.latest is not None
    assert state.latest["status"] == {"imageId": "image-1"}
