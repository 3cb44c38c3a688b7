"""What the API server accepts, the cloud accepts: manifests at the edge of the CRD's rules reach Ready.

The operator runs as its own process against the local control plane and the fake cloud, which checks
every request against the official request messages' field rules (label count, key and value patterns)
as the cloud does. Objects here sit at those edges: dotted names (a '.' is no cloud label character), the
longest name Kubernetes allows, and the largest label map the CRD allows on top of the ownership labels.
"""

from __future__ import annotations

from typing import Any

import pytest

from desktop_image_operator.api import validation as v
from desktop_image_operator.api.constants import OWNER_NAME_LABEL, OWNER_UID_LABEL
from desktop_image_operator.commands.run import ENV_PREFIX
from desktop_image_operator.reconciler.ownership import name_label
from tests.support.kube import (
    Kubectl,
    StartOperator,
    apply,
    delete_object,
    get,
    wait_ready,
    wait_ready_at,
    wait_reason,
)
from tests.support.manifests import API_VERSION, desktop_image
from tests.support.processes import FakeCloudProcess

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

DOTTED = "team.images.base"
# The longest object name (253 characters, an RFC 1123 subdomain): its name label is cut and digested.
LONGEST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
UPDATE = "DesktopImageService.Update"
COPIES = ("DesktopImageService.Copy", "DesktopImageService.CopyFromDesktop")


def largest_labels() -> dict[str, str]:
    """As many labels as the CRD allows, each key and value as long as the cloud allows."""
    width = v.LABEL_KEY_MAX_LENGTH - 3
    return {f"k{i:02d}" + "x" * width: "v" * v.LABEL_VALUE_MAX_LENGTH for i in range(v.LABELS_MAX_COUNT)}


def named(object_name: str, cloud_name: str, /, **spec: Any) -> dict[str, Any]:
    """A copy from the seeded desktop whose cloud image name is set apart from its object name."""
    obj = desktop_image(object_name, **spec)
    obj["spec"]["name"] = cloud_name
    return obj


def image_of(cloud: FakeCloudProcess, image_id: str) -> dict[str, Any]:
    return next(image for image in cloud.images() if image["id"] == image_id)


def refused(cloud: FakeCloudProcess, *methods: str) -> list[dict[str, Any]]:
    """The calls of these methods the cloud answered with INVALID_ARGUMENT."""
    return [
        entry
        for entry in cloud.requests()
        if entry["method"] in methods and entry["code"] == "INVALID_ARGUMENT"
    ]


@pytest.mark.parametrize(
    ("transport", "strict"),
    [("rest", False), ("grpc", False), ("rest", True)],
    ids=["rest", "grpc", "rest-copy-without-labels"],
)
def test_dotted_names_with_the_largest_label_map_reach_ready_and_the_cloud_refuses_nothing(
    transport: str,
    strict: bool,
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    # Strict: copies take no labels, so the whole label map goes through one Update instead.
    cloud.config(strictCopyFields=strict)
    start_operator(transport=transport)
    labels = largest_labels()
    apply(
        kubectl,
        namespace,
        named(DOTTED, "team-images-base", labels=labels),
        named(LONGEST, "longest-name", labels=labels),
    )
    wait_ready(kubectl, namespace, DOTTED, LONGEST)

    for name in (DOTTED, LONGEST):
        image = image_of(cloud, get(kubectl, namespace, name)["status"]["imageId"])
        assert len(image["labels"]) == v.CLOUD_LABELS_MAX_COUNT
        assert {key: image["labels"][key] for key in labels} == labels
        assert image["labels"][OWNER_NAME_LABEL] == name_label(name)
    assert refused(cloud, UPDATE) == []
    if not strict:
        assert refused(cloud, *COPIES) == []


def adopting(object_name: str, image_id: str, /, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DesktopImage",
        "metadata": {"name": object_name},
        "spec": {"source": {"imageId": image_id}, **spec},
    }


def test_an_image_of_a_live_dotted_object_is_not_taken_until_that_object_is_gone(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    # The owner is looked up by the name its label spells: "team_images_base" must be read as
    # "team.images.base", or the live owner would seem gone and its image be taken.
    # Quick terminal retries: the refused object notices its owner's deletion within seconds.
    start_operator(extra_env={ENV_PREFIX + "TERMINAL_RETRY_SECONDS": "1", ENV_PREFIX + "RESYNC_SECONDS": "3"})
    apply(kubectl, namespace, named(DOTTED, "team-images-base", deletionPolicy="Retain"))
    owner = wait_ready_at(kubectl, namespace, DOTTED, 1)
    image_id = owner["status"]["imageId"]
    assert image_of(cloud, image_id)["labels"][OWNER_NAME_LABEL] == "team_images_base"

    apply(kubectl, namespace, adopting("taker", image_id, name="team-images-base"))
    wait_reason(kubectl, namespace, "taker", "AdoptionConflict")
    assert image_of(cloud, image_id)["labels"][OWNER_UID_LABEL] == owner["metadata"]["uid"]
    assert refused(cloud, UPDATE) == []

    delete_object(kubectl, namespace, DOTTED)
    taker = wait_ready_at(kubectl, namespace, "taker", 1)
    labels = image_of(cloud, image_id)["labels"]
    assert (labels[OWNER_UID_LABEL], labels[OWNER_NAME_LABEL]) == (taker["metadata"]["uid"], "taker")
    assert taker["status"]["imageId"] == image_id
