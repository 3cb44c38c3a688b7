"""Every way a cloud operation can fail, end to end: the operator as its own process, the local control plane
and the fake cloud, driven through kubectl and the fake's admin API as a person or a fault would.

What is checked is what users see: conditions, events, the cloud's images and its request log. Every test
ends by comparing the cloud with the spec: as many images as objects, each named, described and labelled as
its spec says, and no image left behind.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from desktop_image_operator.api.constants import OWNER_UID_LABEL
from tests.support.kube import (
    WAIT,
    Kubectl,
    StartOperator,
    acted_on,
    apply,
    create_key_secret,
    delete_object,
    event_reasons,
    get,
    patch_spec,
    wait_ready_at,
    wait_reason,
)
from tests.support.manifests import desktop_image
from tests.support.processes import FakeCloudProcess, OperatorProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

COPY = "DesktopImageService.CopyFromDesktop"
UPDATE = "DesktopImageService.Update"
DELETE = "DesktopImageService.Delete"
# Labels the operator puts on its images besides the spec's (the owner UID at least) share this prefix.
OPERATOR_LABEL_PREFIX = "clouddesktop-yc-io-"
# Seconds: room for a few one-second operations and retries, never a hang.


# -- driving the objects ------------------------------------------------------------------------------------


def status_writes(operator: OperatorProcess) -> float:
    families = {family.name: family for family in text_string_to_metric_families(operator.metrics())}
    samples = families["desktop_image_operator_status_writes"].samples
    return sum(sample.value for sample in samples if sample.name.endswith("_total"))


# -- the cloud's side ---------------------------------------------------------------------------------------


def keys(cloud: FakeCloudProcess, method: str) -> list[str | None]:
    """The idempotency key of each call of `method`, in order."""
    return [entry["idempotencyKey"] for entry in cloud.requests(method)]


def principals(cloud: FakeCloudProcess, method: str) -> set[str | None]:
    return {entry["principal"] for entry in cloud.requests(method)}


def assert_distinct_keys(cloud: FakeCloudProcess, method: str, count: int) -> None:
    sent = keys(cloud, method)
    assert len(sent) == count, f"{method}: {len(sent)} calls, expected {count}"
    assert None not in sent, f"{method} sent without an idempotency key: {sent}"
    assert len(set(sent)) == count, f"{method} repeated an idempotency key across attempts: {sent}"


def spec_labels(image: dict[str, Any]) -> dict[str, str]:
    """The image's labels without the operator's own."""
    labels: dict[str, str] = image.get("labels", {})
    return {k: v for k, v in labels.items() if not k.startswith(OPERATOR_LABEL_PREFIX)}


def assert_image_matches(image: dict[str, Any], obj: dict[str, Any]) -> None:
    spec, name = obj["spec"], obj["metadata"]["name"]
    assert image["name"] == spec.get("name", name), image
    assert image.get("description", "") == spec.get("description", ""), image
    assert spec_labels(image) == spec.get("labels", {}), image
    assert image["status"] == "ACTIVE", image


def assert_cloud_matches(cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, *names: str) -> None:
    """The cloud holds one image per named object, as its spec says, and no other image."""
    images = cloud.images()
    assert len(images) == len(names), f"{len(images)} images for {len(names)} objects: {images}"
    for name in names:
        obj = get(kubectl, namespace, name)
        owned = [i for i in images if i.get("labels", {}).get(OWNER_UID_LABEL) == obj["metadata"]["uid"]]
        assert len(owned) == 1, f"{name} owns {len(owned)} images: {images}"
        assert_image_matches(owned[0], obj)


def assert_cloud_empty(cloud: FakeCloudProcess) -> None:
    images = cloud.images()
    assert images == [], f"images left behind: {images}"


def new_service_account_key(cloud: FakeCloudProcess, name: str) -> dict[str, Any]:
    """An authorized key of a service account of its own, so the request log shows whose calls were whose."""
    response = cloud.http.post("/service-accounts", json={"name": name})
    response.raise_for_status()
    key: dict[str, Any] = response.json()
    return key


# -- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture
def own_namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A namespace the test itself deletes; removed afterwards only if the test did not get that far."""
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


# -- updates ------------------------------------------------------------------------------------------------


def test_a_failed_update_is_applied_once_the_cloud_recovers_without_a_spec_change(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator()
    apply(kubectl, namespace, desktop_image("relabelled", labels={"team": "a"}, description="kept"))
    wait_ready_at(kubectl, namespace, "relabelled", 1)

    cloud.fault(method=UPDATE, failOperation=1, code="INTERNAL")
    generation = patch_spec(kubectl, namespace, "relabelled", labels={"team": "b", "tier": "gold"})
    wait_ready_at(kubectl, namespace, "relabelled", generation)

    assert event_reasons(kubectl, namespace, "relabelled")["UpdateFailed"] >= 1
    assert_distinct_keys(cloud, UPDATE, 2)
    assert_cloud_matches(cloud, kubectl, namespace, "relabelled")


def test_a_revert_of_a_revert_is_applied_every_time(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator()
    apply(kubectl, namespace, desktop_image("flip-flop", labels={"team": "a"}))
    wait_ready_at(kubectl, namespace, "flip-flop", 1)

    # The third change repeats the first one exactly: it must still reach the cloud.
    for team in ("b", "a", "b"):
        generation = patch_spec(kubectl, namespace, "flip-flop", labels={"team": team})
        wait_ready_at(kubectl, namespace, "flip-flop", generation)
        assert_cloud_matches(cloud, kubectl, namespace, "flip-flop")
    assert_distinct_keys(cloud, UPDATE, 3)


# -- deletion -----------------------------------------------------------------------------------------------


def test_a_failed_delete_is_retried_until_the_image_is_gone(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator()
    apply(kubectl, namespace, desktop_image("deleted-twice"))
    wait_ready_at(kubectl, namespace, "deleted-twice", 1)

    cloud.fault(method=DELETE, failOperation=1, code="INTERNAL")
    delete_object(kubectl, namespace, "deleted-twice")

    assert_distinct_keys(cloud, DELETE, 2)
    assert_cloud_empty(cloud)


def test_a_namespace_deletion_finishes_with_the_image_deleted_in_the_cloud(
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    own_namespace: str,
    tmp_path: Path,
) -> None:
    key = new_service_account_key(cloud, "namespace-team")
    create_key_secret(kubectl, own_namespace, "team-key", key, tmp_path)
    start_operator(namespace=own_namespace)
    apply(kubectl, own_namespace, desktop_image("in-doomed-namespace", credentialsRef={"name": "team-key"}))
    wait_ready_at(kubectl, own_namespace, "in-doomed-namespace", 1)
    assert_cloud_matches(cloud, kubectl, own_namespace, "in-doomed-namespace")

    # The namespace controller deletes the Secret and the object together, in no promised order; a cloud
    # that stutters on the Delete makes the object's deletion outlast the Secret's.
    cloud.fault(method=DELETE, code="UNAVAILABLE", count=5)
    kubectl("delete", "namespace", own_namespace, f"--timeout={WAIT}s", timeout=WAIT + 10)

    assert principals(cloud, DELETE) == {key["service_account_id"]}
    assert_cloud_empty(cloud)


# -- copies -------------------------------------------------------------------------------------------------


def test_a_copy_longer_than_the_resync_period_is_started_and_reported_once(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    cloud.config(copySeconds=6)
    operator = start_operator(extra_env={"DESKTOP_IMAGE_OPERATOR_RESYNC_SECONDS": "1.5"})
    apply(kubectl, namespace, desktop_image("long-copy"))
    wait_ready_at(kubectl, namespace, "long-copy", 1)
    time.sleep(3)  # two more resync periods: a repeated step would show by now

    reasons = event_reasons(kubectl, namespace, "long-copy")
    assert reasons["CopyStarted"] == 1, reasons
    assert reasons["ImageReady"] == 1, reasons
    assert reasons["ImageAdopted"] == 0, reasons
    assert len(cloud.requests(COPY)) == 1
    # The copy's start and its end; a few more at most, never one per resync.
    assert status_writes(operator) <= 5
    assert_cloud_matches(cloud, kubectl, namespace, "long-copy")


@pytest.mark.parametrize("honour_keys", [True, False], ids=["keys-honoured", "keys-ignored"])
def test_a_rename_after_an_unrecorded_copy_ends_with_one_image_under_the_new_name(
    honour_keys: bool,
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    cloud.config(honorIdempotency=honour_keys, copySeconds=2)
    # The cloud copies once and the operator never hears of it: that answer is dropped, and every later copy
    # call is refused without work (a refusal of the taken name would otherwise give the copy away).
    cloud.fault(method=COPY, dropResponse=1)
    cloud.fault(method=COPY, code="UNAVAILABLE", count=1000)
    start_operator()
    apply(kubectl, namespace, desktop_image("renamed"))
    wait_until(cloud.images, timeout=WAIT, interval=0.1, what="the copy at work in the cloud")

    generation = patch_spec(kubectl, namespace, "renamed", name="renamed-later")
    wait_until(
        lambda: acted_on(get(kubectl, namespace, "renamed"), generation),
        timeout=WAIT,
        what="the operator acting on the new name",
    )
    cloud.http.delete("/faults").raise_for_status()
    wait_ready_at(kubectl, namespace, "renamed", generation)

    assert_cloud_matches(cloud, kubectl, namespace, "renamed")


def test_a_failed_copy_is_retried_with_a_new_key_and_ends_ready(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    cloud.fault(method=COPY, failOperation=1, code="INTERNAL")
    # A failed operation is retried on a backoff; whichever schedule applies, it is short here.
    start_operator(extra_env={"DESKTOP_IMAGE_OPERATOR_TERMINAL_RETRY_SECONDS": "2"})
    apply(kubectl, namespace, desktop_image("second-try"))

    wait_reason(kubectl, namespace, "second-try", "CopyFailed", timeout=WAIT)
    wait_ready_at(kubectl, namespace, "second-try", 1)

    reasons = event_reasons(kubectl, namespace, "second-try")
    assert reasons["CopyFailed"] >= 1, reasons
    assert reasons["ImageReady"] == 1, reasons
    assert_distinct_keys(cloud, COPY, 2)
    assert_cloud_matches(cloud, kubectl, namespace, "second-try")


def test_a_secret_deleted_during_a_copy_stays_until_the_object_using_it_is_gone(
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    key = new_service_account_key(cloud, "copier")
    create_key_secret(kubectl, namespace, "copier-key", key, tmp_path)
    cloud.config(copySeconds=4)
    start_operator()
    apply(kubectl, namespace, desktop_image("slow-copy", credentialsRef={"name": "copier-key"}))
    wait_until(lambda: cloud.requests(COPY), timeout=WAIT, interval=0.1, what="the copy call")

    kubectl("delete", "secret", "-n", namespace, "copier-key", "--wait=false")
    wait_ready_at(kubectl, namespace, "slow-copy", 1)
    assert "CredentialsInvalid" not in event_reasons(kubectl, namespace, "slow-copy")
    secret = kubectl("get", "secret", "-n", namespace, "copier-key", "-o", "json", check=False)
    assert secret.returncode == 0, "the Secret went while an object still uses it"
    assert json.loads(secret.stdout)["metadata"].get("deletionTimestamp"), "the Secret is not being deleted"

    delete_object(kubectl, namespace, "slow-copy")
    gone = ("wait", "-n", namespace, "--for=delete", "secret/copier-key", f"--timeout={WAIT}s")
    kubectl(*gone, timeout=WAIT + 10)
    assert principals(cloud, COPY) == principals(cloud, DELETE) == {key["service_account_id"]}
    assert_cloud_empty(cloud)
