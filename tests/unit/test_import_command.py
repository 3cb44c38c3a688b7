"""`desktop-image-operator import`, its pure part: which images become manifests and what those say."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml

from desktop_image_operator.api import API_VERSION, KIND, DesktopImageSpec
from desktop_image_operator.api.constants import RESERVED_LABEL_PREFIX
from desktop_image_operator.cloud.types import CloudImage, ImageStatus
from desktop_image_operator.commands.import_images import Imported, manifests_for, render
from desktop_image_operator.reconciler.ownership import Owner

CLUSTER_ID = "5d1c0a2e-7f3b-4c8e-9a61-0b2d4e6f8a10"
ELSEWHERE = "b7e4c2a0-1d3f-4e5a-8b6c-9d0e1f2a3b4c"
FOLDER_ID = "b1gfolder00000000009"
OWNER_UID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


def image(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    description: str = "",
    status: ImageStatus = ImageStatus.ACTIVE,
) -> CloudImage:
    return CloudImage(
        id=f"e3vimg-{name}",
        folder_id=FOLDER_ID,
        name=name,
        description=description,
        labels=labels or {},
        status=status,
        storage_size=12 << 30,
        min_disk_size=20 << 30,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def owned_by(cluster_id: str, namespace: str, name: str, **labels: str) -> dict[str, str]:
    return {**Owner.of(OWNER_UID, cluster_id, namespace, name).labels(), **labels}


def imported(*images: CloudImage, namespace: str | None = "imports", secret: str | None = None) -> Imported:
    return manifests_for(images, cluster_id=CLUSTER_ID, namespace=namespace, credentials_secret=secret)


def names(result: Imported) -> list[str]:
    return [manifest["metadata"]["name"] for manifest in result.manifests]


def documents(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document is not None]


# -- which images -------------------------------------------------------------------------------------------


def test_images_owned_by_an_object_of_this_cluster_are_skipped_and_the_owner_is_named() -> None:
    result = imported(image("free"), image("taken", labels=owned_by(CLUSTER_ID, "team-a", "taken-obj")))
    assert names(result) == ["free"]
    [line] = result.skipped
    assert "e3vimg-taken" in line
    assert "team-a/taken-obj" in line


def test_images_owned_by_another_cluster_are_imported() -> None:
    result = imported(image("restored", labels=owned_by(ELSEWHERE, "team-a", "restored")))
    assert names(result) == ["restored"]
    assert result.skipped == []


def test_images_being_deleted_are_skipped() -> None:
    result = imported(image("going", status=ImageStatus.DELETING), image("staying"))
    assert names(result) == ["staying"]
    assert "e3vimg-going" in result.skipped[0]


def test_images_still_being_created_are_imported() -> None:
    assert names(imported(image("fresh", status=ImageStatus.CREATING))) == ["fresh"]


def test_manifests_come_in_the_order_of_the_image_names() -> None:
    assert names(imported(image("zeta"), image("alpha"), image("mid"))) == ["alpha", "mid", "zeta"]


# -- what each manifest says --------------------------------------------------------------------------------


def test_a_manifest_adopts_the_image_by_id_under_its_own_name() -> None:
    [manifest] = imported(image("analysts-base")).manifests
    assert manifest["apiVersion"] == API_VERSION
    assert manifest["kind"] == KIND
    assert manifest["metadata"] == {"name": "analysts-base", "namespace": "imports"}
    assert manifest["spec"]["source"] == {"imageId": "e3vimg-analysts-base"}
    assert manifest["spec"]["name"] == "analysts-base"
    assert "folderId" not in manifest["spec"]  # an adopted image stays in its folder


def test_description_and_labels_are_kept_and_the_reserved_labels_dropped() -> None:
    labels = owned_by(ELSEWHERE, "old", "old-name", team="analytics", cost_center="a-17")
    [manifest] = imported(image("kept", labels=labels, description="Base image.")).manifests
    assert manifest["spec"]["description"] == "Base image."
    assert manifest["spec"]["labels"] == {"cost_center": "a-17", "team": "analytics"}


def test_an_image_without_description_or_labels_gives_a_spec_without_them() -> None:
    [manifest] = imported(image("bare", labels=owned_by(ELSEWHERE, "old", "bare"))).manifests
    assert set(manifest["spec"]) == {"source", "name"}


def test_no_namespace_leaves_it_to_kubectl_and_a_secret_becomes_the_credentials_ref() -> None:
    [manifest] = imported(image("plain"), namespace=None, secret="team-key").manifests
    assert "namespace" not in manifest["metadata"]
    assert manifest["spec"]["credentialsRef"] == {"name": "team-key"}


def test_no_manifest_asks_for_the_image_to_be_deleted_with_its_object() -> None:
    # An imported image was made outside the operator: deleting its object must leave it in the cloud.
    [manifest] = imported(image("precious")).manifests
    spec = DesktopImageSpec.model_validate(manifest["spec"])
    assert spec.deletion_policy is None
    assert spec.effective_deletion_policy() == "Retain"


# -- the printed YAML ---------------------------------------------------------------------------------------


def test_the_output_is_yaml_whose_documents_are_the_manifests_and_pass_the_spec_model() -> None:
    result = imported(
        image("one", description="First: with a colon, # and a hash", labels={"team": "a"}),
        image("two", labels=owned_by(ELSEWHERE, "x", "two", tier="gold")),
        image("three"),
        secret="team-key",
    )
    parsed = documents(render(result, FOLDER_ID))
    assert parsed == result.manifests
    for document in parsed:
        spec = DesktopImageSpec.model_validate(document["spec"])
        assert spec.source.image_id == f"e3vimg-{document['metadata']['name']}"
        assert not any(key.startswith(RESERVED_LABEL_PREFIX) for key in spec.labels or {})


def test_the_output_starts_with_comments_naming_the_folder_and_the_count() -> None:
    text = render(imported(image("one"), image("two")), FOLDER_ID)
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert FOLDER_ID in header[0]
    assert "2 image(s)" in header[0]
    assert any("deletionPolicy" in line for line in header)


def test_an_empty_folder_prints_only_comments() -> None:
    text = render(imported(), FOLDER_ID)
    assert documents(text) == []
    assert "0 image(s)" in text
