"""Adoption and identity end to end: the operator as its own process, the local control plane and the fake
cloud, driven through kubectl, the `import` command and the fake's APIs as a person would.

Images "made by hand" are copied through the fake's REST API with a token from its admin API, as someone
with the console or `yc` would; their own Copy calls are logged before each test's mark, so the counts a
test asserts (and records as the `cloud_calls` property) are the operator's alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from desktop_image_operator.api.constants import (
    OWNER_CLUSTER_LABEL,
    OWNER_NAME_LABEL,
    OWNER_NAMESPACE_LABEL,
    OWNER_UID_LABEL,
)
from desktop_image_operator.commands.run import ENV_PREFIX
from desktop_image_operator.reconciler.annotations import ADOPT_FROM_OTHER_CLUSTER
from desktop_image_operator.reconciler.ownership import Owner
from desktop_image_operator_dev.devenv.stack import child_environment
from desktop_image_operator_dev.fakecloud import seeds
from tests.support.images import make_image
from tests.support.kube import (
    Kubectl,
    StartOperator,
    apply,
    condition,
    delete_object,
    event_reasons,
    kubectl_json,
    wait_ready_at,
    wait_reason,
)
from tests.support.manifests import API_VERSION, desktop_image
from tests.support.processes import FakeCloudProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

COPIES = ("DesktopImageService.Copy", "DesktopImageService.CopyFromDesktop")
UPDATE = "DesktopImageService.Update"
DELETE = "DesktopImageService.Delete"
MUTATING = frozenset({*COPIES, UPDATE, DELETE})
OWNERSHIP_LABELS = (OWNER_UID_LABEL, OWNER_CLUSTER_LABEL, OWNER_NAMESPACE_LABEL, OWNER_NAME_LABEL)
IMAGES_PATH = "/cloud-desktop/v1/images"
# Seconds: a few one-second copies and quick retries, never a hang.
WAIT = 30
Record = Callable[[str, Counter[str]], None]


# -- images made outside the operator -----------------------------------------------------------------------


def new_folder(cloud: FakeCloudProcess) -> str:
    """A folder of its own (in a cloud of its own), so no other image shows up in its listing."""
    response = cloud.http.post("/folders", json={"name": "hand-made"})
    response.raise_for_status()
    return str(response.json()["id"])


def image_of(cloud: FakeCloudProcess, image_id: str) -> dict[str, Any] | None:
    return next((image for image in cloud.images() if image["id"] == image_id), None)


def wait_active(cloud: FakeCloudProcess, *image_ids: str) -> None:
    def all_active() -> bool:
        statuses = {image["id"]: image["status"] for image in cloud.images()}
        return all(statuses.get(image_id) == "ACTIVE" for image_id in image_ids)

    wait_until(all_active, timeout=WAIT, what=f"images {', '.join(image_ids)} ACTIVE")


def other_cluster_labels(namespace: str, name: str) -> dict[str, str]:
    """Ownership labels as an operator in another cluster stamps them."""
    return Owner.of(str(uuid.uuid4()), f"elsewhere-{uuid.uuid4()}", namespace, name).labels()


# -- what the operator did ----------------------------------------------------------------------------------


def mark(cloud: FakeCloudProcess) -> int:
    """The sequence number of the last logged call: calls after it are the ones under test."""
    return max((entry["seq"] for entry in cloud.requests()), default=0)


def calls_since(cloud: FakeCloudProcess, seq: int) -> Counter[str]:
    return Counter(entry["method"] for entry in cloud.requests(after=seq))


def copies(calls: Counter[str]) -> int:
    return sum(calls[method] for method in COPIES)


def mutating(calls: Counter[str]) -> dict[str, int]:
    return {method: count for method, count in calls.items() if method in MUTATING}


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Record:
    """Keep a test's call counts with its report (a user property, and a line in the captured output)."""

    def keep(step: str, calls: Counter[str]) -> None:
        counts = dict(sorted(calls.items()))
        request.node.user_properties.append((f"cloud_calls[{step}]", json.dumps(counts)))
        print(f"cloud calls, {step}: {sum(counts.values())} {counts}")

    return keep


def cluster_id(kubectl: Kubectl) -> str:
    """This cluster's identity as the operator reads it by default: the UID of kube-system."""
    return str(kubectl_json(kubectl, "get", "namespace", "kube-system")["metadata"]["uid"])


def adopting(object_name: str, image_id: str, /, **spec: Any) -> dict[str, Any]:
    body = {"source": {"imageId": image_id}, **spec}
    return {
        "apiVersion": API_VERSION,
        "kind": "DesktopImage",
        "metadata": {"name": object_name},
        "spec": body,
    }


def ownership(image: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = image.get("labels", {})
    return {key: value for key, value in labels.items() if key in OWNERSHIP_LABELS}


def assert_owned_by(image: dict[str, Any], obj: dict[str, Any], cluster: str) -> None:
    metadata = obj["metadata"]
    expected = Owner.of(metadata["uid"], cluster, metadata["namespace"], metadata["name"]).labels()
    assert ownership(image) == expected, image


def ready_message(obj: dict[str, Any]) -> str:
    ready = condition(obj)
    assert ready, obj
    return str(ready["message"])


# -- 1. adopt by ID -----------------------------------------------------------------------------------------


def test_an_image_made_by_hand_is_adopted_by_id_with_labels_stamped_status_mirrored_and_no_copy(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, record: Record
) -> None:
    image_id = make_image(cloud, "by-hand", labels={"team": "a"}, description="made in the console")
    wait_active(cloud, image_id)
    seq = mark(cloud)
    start_operator()

    apply(kubectl, namespace, adopting("by-hand", image_id, labels={"team": "a"}, description="managed"))
    obj = wait_ready_at(kubectl, namespace, "by-hand", 1)

    image = image_of(cloud, image_id)
    assert image is not None
    assert_owned_by(image, obj, cluster_id(kubectl))
    assert (image["labels"]["team"], image["description"]) == ("a", "managed")
    status = obj["status"]
    assert status["imageId"] == image_id
    assert status["imageStatus"] == "ACTIVE"
    assert status["folderId"] == seeds.FOLDER_ID
    assert status["storageSize"] == int(image["storageSize"])
    assert status["minDiskSize"] == int(image["minDiskSize"])
    assert event_reasons(kubectl, namespace, "by-hand")["ImageAdopted"] >= 1
    calls = calls_since(cloud, seq)
    record("adopt", calls)
    assert copies(calls) == 0
    assert calls[UPDATE] == 1  # labels and description in one change
    assert len(cloud.images()) == 1


# -- 2. never take an image from a live object --------------------------------------------------------------


def test_an_image_owned_by_a_live_object_is_refused_until_that_object_is_gone(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, record: Record
) -> None:
    # Quick terminal retries: the refused object notices its owner's deletion within seconds.
    start_operator(extra_env={ENV_PREFIX + "TERMINAL_RETRY_SECONDS": "1", ENV_PREFIX + "RESYNC_SECONDS": "3"})
    apply(kubectl, namespace, desktop_image("owner-a", deletionPolicy="Retain", labels={"team": "a"}))
    owner = wait_ready_at(kubectl, namespace, "owner-a", 1)
    image_id = owner["status"]["imageId"]
    before = image_of(cloud, image_id)
    seq = mark(cloud)

    apply(kubectl, namespace, adopting("taker-b", image_id, name="owner-a"))
    refused = wait_reason(kubectl, namespace, "taker-b", "AdoptionConflict", timeout=WAIT)

    assert f"DesktopImage {namespace}/owner-a" in ready_message(refused)
    assert owner["metadata"]["uid"] in ready_message(refused)
    assert event_reasons(kubectl, namespace, "taker-b")["AdoptionConflict"] >= 1
    assert image_of(cloud, image_id) == before  # labels, name and all unchanged
    refused_calls = calls_since(cloud, seq)
    record("refused", refused_calls)
    assert mutating(refused_calls) == {}

    # Once the owner is deleted (its image retained), nobody else can hold the image: it is taken over.
    delete_object(kubectl, namespace, "owner-a")
    taker = wait_ready_at(kubectl, namespace, "taker-b", 1)
    image = image_of(cloud, image_id)
    assert image is not None
    assert_owned_by(image, taker, cluster_id(kubectl))
    assert image["name"] == "owner-a"
    calls = calls_since(cloud, seq)
    record("taken over after the owner's deletion", calls)
    assert copies(calls) == 0
    assert calls[DELETE] == 0


def test_an_object_refused_adoption_deletes_nothing_even_with_deletion_policy_delete(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, record: Record
) -> None:
    start_operator()
    apply(kubectl, namespace, desktop_image("owner-a"))
    owner = wait_ready_at(kubectl, namespace, "owner-a", 1)
    image_id = owner["status"]["imageId"]
    apply(kubectl, namespace, adopting("taker-b", image_id, deletionPolicy="Delete"))
    wait_reason(kubectl, namespace, "taker-b", "AdoptionConflict", timeout=WAIT)
    seq = mark(cloud)

    delete_object(kubectl, namespace, "taker-b")

    calls = calls_since(cloud, seq)
    record("refused object deleted", calls)
    assert calls[DELETE] == 0, "the image of a live object was deleted by an object that never owned it"
    image = image_of(cloud, image_id)
    assert image is not None
    assert image["status"] == "ACTIVE"
    assert_owned_by(image, owner, cluster_id(kubectl))


# -- 3. re-created after Retain -----------------------------------------------------------------------------


def test_an_object_re_applied_after_a_retain_delete_gets_its_image_back_without_a_copy(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, record: Record
) -> None:
    start_operator()
    manifest = desktop_image("kept", deletionPolicy="Retain", labels={"team": "a"}, description="keep me")
    apply(kubectl, namespace, manifest)
    first = wait_ready_at(kubectl, namespace, "kept", 1)
    delete_object(kubectl, namespace, "kept")
    assert len(cloud.images()) == 1
    seq = mark(cloud)

    apply(kubectl, namespace, manifest)  # a Git revert, an Argo CD re-sync, a restore: same name, new UID
    second = wait_ready_at(kubectl, namespace, "kept", 1)

    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert second["status"]["imageId"] == first["status"]["imageId"]
    [image] = cloud.images()
    assert_owned_by(image, second, cluster_id(kubectl))
    assert (image["labels"]["team"], image["description"]) == ("a", "keep me")
    calls = calls_since(cloud, seq)
    record("re-applied", calls)
    assert copies(calls) == 0
    assert calls[UPDATE] == 1  # the new UID stamped
    assert calls[DELETE] == 0


# -- 4. observe only ----------------------------------------------------------------------------------------


def test_an_observed_image_is_only_read_and_survives_the_object_s_deletion_untouched(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, record: Record
) -> None:
    image_id = make_image(cloud, "watched", labels={"team": "a"}, description="not ours")
    wait_active(cloud, image_id)
    before = image_of(cloud, image_id)
    seq = mark(cloud)
    start_operator()

    # Name, labels and deletion policy that differ from the image: none of them may reach the cloud.
    observed = adopting(
        "watched", image_id, managementPolicy="Observe", name="renamed", labels={"team": "b"},
        deletionPolicy="Delete",
    )  # fmt: skip
    apply(kubectl, namespace, observed)
    obj = wait_ready_at(kubectl, namespace, "watched", 1)
    assert obj["status"]["imageId"] == image_id
    assert obj["status"]["imageStatus"] == "ACTIVE"
    assert "observed" in ready_message(obj)

    started = time.monotonic()
    delete_object(kubectl, namespace, "watched")
    took = time.monotonic() - started

    calls = calls_since(cloud, seq)
    record("observe, then delete", calls)
    assert mutating(calls) == {}
    assert calls["DesktopImageService.Get"] >= 1
    assert image_of(cloud, image_id) == before
    assert took < 5, f"deleting an observed object took {took:.1f} s"


# -- 5. import ----------------------------------------------------------------------------------------------


def run_import(
    cloud: FakeCloudProcess, kubeconfig: Path, folder_id: str, namespace: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`desktop-image-operator import` as a person runs it: the fake's endpoints and key, this cluster's
    kubeconfig (which tells the cluster's identity), nothing from our own operator settings."""
    endpoints = cloud.endpoints
    env = {
        k: v for k, v in child_environment(KUBECONFIG=str(kubeconfig)).items() if not k.startswith(ENV_PREFIX)
    }
    command = [
        str(Path(sys.executable).parent / "desktop-image-operator"), "import",
        "--folder-id", folder_id, "--namespace", namespace, "--transport", "rest",
        "--desktop-endpoint", endpoints["cloudDesktop"], "--operation-endpoint", endpoints["operation"],
        "--iam-endpoint", endpoints["iam"], "--credentials-file", str(cloud.key_file), *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


def test_import_output_applied_makes_every_hand_made_image_ready_without_a_copy(
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    kubeconfig: Path,
    namespace: str,
    record: Record,
) -> None:
    folder_id = new_folder(cloud)
    made = {
        f"team-image-{n}": make_image(
            cloud, f"team-image-{n}", folder_id=folder_id, labels={"team": f"t{n}"}, description=f"image {n}"
        )
        for n in range(1, 6)
    }
    already_ours = make_image(cloud, "already-ours", folder_id=folder_id)
    wait_active(cloud, *made.values(), already_ours)
    start_operator()
    apply(kubectl, namespace, adopting("already-ours", already_ours))
    wait_ready_at(kubectl, namespace, "already-ours", 1)
    seq = mark(cloud)

    imported = run_import(cloud, kubeconfig, folder_id, namespace)
    assert imported.returncode == 0, imported.stderr
    assert f"skipped {already_ours}" in imported.stderr
    assert f"{namespace}/already-ours" in imported.stderr
    manifests = [doc for doc in yaml.safe_load_all(imported.stdout) if doc is not None]
    assert {m["metadata"]["name"]: m["spec"]["source"]["imageId"] for m in manifests} == made

    kubectl("apply", "-n", namespace, "-f", "-", stdin=imported.stdout)
    cluster = cluster_id(kubectl)
    for name, image_id in made.items():
        obj = wait_ready_at(kubectl, namespace, name, 1)
        image = image_of(cloud, image_id)
        assert image is not None
        assert obj["status"]["imageId"] == image_id
        assert_owned_by(image, obj, cluster)
        assert (image["name"], image["description"], image["labels"]["team"]) == (
            name,
            f"image {name[-1]}",
            f"t{name[-1]}",
        )
    calls = calls_since(cloud, seq)
    record("import and apply", calls)
    assert copies(calls) == 0
    assert calls[UPDATE] == 5  # the ownership labels, nothing else
    assert len(cloud.images()) == 6

    # Told it is another cluster, the command offers every image: this cluster's objects are strangers there.
    elsewhere = run_import(cloud, kubeconfig, folder_id, namespace, "--cluster-id", "another-cluster")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "skipped" not in elsewhere.stderr
    offered = [doc["metadata"]["name"] for doc in yaml.safe_load_all(elsewhere.stdout) if doc is not None]
    assert sorted(offered) == sorted([*made, "already-ours"])


# -- 6. an image of another cluster -------------------------------------------------------------------------


def test_a_name_held_by_another_cluster_s_image_says_how_to_adopt_it_and_adopting_it_works(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, record: Record
) -> None:
    labels = {**other_cluster_labels("team-a", "analysts-base"), "team": "a"}
    image_id = make_image(cloud, "analysts-base", labels=labels)
    wait_active(cloud, image_id)
    before = image_of(cloud, image_id)
    seq = mark(cloud)
    start_operator()

    apply(kubectl, namespace, desktop_image("analysts-base"))
    conflict = wait_reason(kubectl, namespace, "analysts-base", "NameConflict", timeout=WAIT)
    message = ready_message(conflict)
    assert f"spec.source.imageId: {image_id}" in message
    assert "another cluster" in message
    assert ADOPT_FROM_OTHER_CLUSTER in message
    delete_object(kubectl, namespace, "analysts-base")
    assert image_of(cloud, image_id) == before  # left alone, also by the deletion
    conflict_calls = calls_since(cloud, seq)
    record("name conflict, then delete", conflict_calls)
    assert mutating(conflict_calls) == {}

    # Done as the message says: the image ID and the annotation (that cluster's object may be alive).
    manifest = adopting("analysts-base", image_id, labels={"team": "a"})
    manifest["metadata"]["annotations"] = {ADOPT_FROM_OTHER_CLUSTER: "true"}
    apply(kubectl, namespace, manifest)
    obj = wait_ready_at(kubectl, namespace, "analysts-base", 1)
    assert obj["status"]["imageId"] == image_id
    image = image_of(cloud, image_id)
    assert image is not None
    assert_owned_by(image, obj, cluster_id(kubectl))
    assert image["labels"]["team"] == "a"
    calls = calls_since(cloud, seq)
    record("adopted as told", calls)
    assert copies(calls) == 0
    assert calls[DELETE] == 0
    assert len(cloud.images()) == 1
