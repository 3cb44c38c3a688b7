"""A cloud that serves only the documented copy fields: the fake's strict switch refuses `labels` and
`description` on every copy, over REST and gRPC, as a cloud on the published schema would. The operator, as
its own process, must still end with one labelled image per object, also when killed right after a copy."""

from __future__ import annotations

import time
from typing import Any

import pytest

from desktop_image_operator.api.constants import OWNER_UID_LABEL
from tests.support.kube import Kubectl, StartOperator, apply, delete_object, kubectl_json, wait_ready_at
from tests.support.manifests import desktop_image, from_compute_image
from tests.support.processes import FakeCloudProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

COPIES = ("DesktopImageService.Copy", "DesktopImageService.CopyFromDesktop")
SPEC: dict[str, Any] = {"labels": {"team": "a", "tier": "gold"}, "description": "base image for analysts"}


def images_of(cloud: FakeCloudProcess, uid: str) -> list[dict[str, Any]]:
    return [image for image in cloud.images() if image.get("labels", {}).get(OWNER_UID_LABEL) == uid]


def assert_labelled_as_the_spec_says(cloud: FakeCloudProcess, obj: dict[str, Any]) -> None:
    [image] = images_of(cloud, obj["metadata"]["uid"])  # exactly one image, and it carries the owner label
    assert image["id"] == obj["status"]["imageId"]
    assert image["status"] == "ACTIVE"
    assert {key: image["labels"][key] for key in SPEC["labels"]} == SPEC["labels"]
    assert image["description"] == SPEC["description"]
    assert obj["status"]["matchesSpec"] is True


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_cloud_refusing_labels_on_copies_still_ends_with_one_labelled_image_per_object(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, transport: str
) -> None:
    cloud.config(strictCopyFields=True)
    start_operator(transport=transport)
    manifests = desktop_image("from-desktop", **SPEC), from_compute_image("from-compute", **SPEC)
    apply(kubectl, namespace, *manifests)
    for name in ("from-desktop", "from-compute"):
        assert_labelled_as_the_spec_says(cloud, wait_ready_at(kubectl, namespace, name, 1))

    copies = [entry for entry in cloud.requests() if entry["method"] in COPIES]
    refused = [entry for entry in copies if entry.get("code") == "INVALID_ARGUMENT"]
    # The first refusal teaches the operator; what follows goes out with the documented fields only.
    assert 1 <= len(refused) <= 2, copies
    assert len(copies) - len(refused) == 2
    assert len(cloud.images()) == 2


def test_killed_right_after_a_bare_copy_the_operator_finds_it_by_name_and_time_not_by_labels(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    cloud.config(strictCopyFields=True, honorIdempotency=False)
    operator = start_operator(extra_env={"DESKTOP_IMAGE_OPERATOR_COPY_FIELDS": "documented"})
    apply(kubectl, namespace, desktop_image("golden", **SPEC))
    wait_until(lambda: any(e["method"] in COPIES for e in cloud.requests()) or None, timeout=30)
    operator.kill9()  # the copy went out without labels; its answer may or may not be recorded
    start_operator(extra_env={"DESKTOP_IMAGE_OPERATOR_COPY_FIELDS": "documented"})

    obj = wait_ready_at(kubectl, namespace, "golden", 1)
    assert_labelled_as_the_spec_says(cloud, obj)
    assert len(cloud.images()) == 1, "the restarted operator copied again"
    delete_object(kubectl, namespace, "golden")
    deadline = time.monotonic() + 30
    while cloud.images() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cloud.images() == []
    assert kubectl_json(kubectl, "get", "desktopimages", "-n", namespace)["items"] == []
