"""The operator process against the real API server and the fake cloud, driven through kubectl."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from desktop_image_operator_dev.fakecloud import seeds
from tests.support.kube import Kubectl, StartOperator, condition, get, kubectl_json, wait_ready, wait_reason
from tests.support.manifests import desktop_image, from_compute_image, text
from tests.support.processes import FakeCloudProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

COPY_METHODS = ("DesktopImageService.Copy", "DesktopImageService.CopyFromDesktop")


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_both_sources_reach_ready_and_mirror_the_image(
    transport: str, start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator(transport=transport)
    manifests = text(desktop_image("from-desktop"), from_compute_image("from-compute", labels={"team": "a"}))
    kubectl("apply", "-n", namespace, "-f", "-", stdin=manifests)
    wait_ready(kubectl, namespace, "from-desktop", "from-compute")

    images = {image["name"]: image for image in cloud.images()}
    for name, folder in (("from-desktop", seeds.FOLDER_ID), ("from-compute", seeds.FOLDER_ID)):
        obj = get(kubectl, namespace, name)
        image = images[name]
        status = obj["status"]
        assert status["imageId"] == image["id"]
        assert status["imageStatus"] == "ACTIVE"
        # The REST API sends int64 as strings; status holds integers.
        assert status["storageSize"] == int(image["storageSize"])
        assert status["minDiskSize"] == int(image["minDiskSize"])
        assert status["folderId"] == folder
        assert status["observedGeneration"] == obj["metadata"]["generation"]
        assert image["labels"]["clouddesktop-yc-io-owner-uid"] == obj["metadata"]["uid"]
    assert images["from-compute"]["labels"]["team"] == "a"

    calls = cloud.calls()
    assert calls["DesktopImageService.CopyFromDesktop"] == 1
    assert calls["DesktopImageService.Copy"] == 1
    transports = {entry["transport"] for entry in cloud.requests() if entry["method"] in COPY_METHODS}
    assert transports == {transport}


def test_label_change_is_one_update_with_the_right_mask(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator()
    kubectl("apply", "-n", namespace, "-f", "-",
            stdin=text(desktop_image("labelled", labels={"team": "a"}, description="keep me")))  # fmt: skip
    wait_ready(kubectl, namespace, "labelled")

    kubectl("patch", "-n", namespace, "desktopimage", "labelled", "--type=merge",
            "-p", json.dumps({"spec": {"labels": {"team": "b", "tier": "gold"}}}))  # fmt: skip
    wait_until(
        lambda: (
            get(kubectl, namespace, "labelled")["status"]["observedGeneration"] == 2
            and condition(get(kubectl, namespace, "labelled"), "Ready")["status"] == "True"
        ),
        timeout=30,
        what="generation 2 Ready",
    )
    updates = cloud.requests("DesktopImageService.Update")
    assert len(updates) == 1
    assert updates[0]["updateMask"] == ["labels"]
    [image] = cloud.images()
    assert image["labels"]["team"] == "b"
    assert image["labels"]["tier"] == "gold"
    assert image["description"] == "keep me"


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_delete_follows_the_deletion_policy(
    policy: str, start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("doomed", deletionPolicy=policy)))
    wait_ready(kubectl, namespace, "doomed")
    kubectl("delete", "-n", namespace, "desktopimage", "doomed", "--timeout=60s", timeout=70)

    assert len(cloud.images()) == (0 if policy == "Delete" else 1)
    assert cloud.calls()["DesktopImageService.Delete"] == (1 if policy == "Delete" else 0)


def test_throttling_and_outages_still_end_ready_with_bounded_calls(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    cloud.fault(method="DesktopImageService.CopyFromDesktop", code="RESOURCE_EXHAUSTED", count=3)
    cloud.fault(method="OperationService.Get", code="UNAVAILABLE", count=4)
    cloud.fault(method="DesktopImageService.List", code="UNAVAILABLE", count=2)
    start_operator()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("stormy")))
    wait_ready(kubectl, namespace, "stormy", timeout=90)

    calls = cloud.calls()
    assert len(cloud.images()) == 1
    assert calls["DesktopImageService.CopyFromDesktop"] == 4  # three refused, one accepted
    assert calls["DesktopImageService.List"] == 3
    assert sum(calls.values()) < 40, calls


def test_failed_copy_gives_copy_failed_and_no_retry_storm(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    cloud.fault(method="DesktopImageService.CopyFromDesktop", failOperation=1)
    start_operator()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("broken")))
    obj = wait_reason(kubectl, namespace, "broken", "CopyFailed")
    assert condition(obj, "Ready")["status"] == "False"
    message = condition(obj, "Ready")["message"]
    assert message.split(":")[0] in {"INTERNAL", "UNAVAILABLE", "FAILED_PRECONDITION", "UNKNOWN"}, message

    events = kubectl_json(kubectl, "get", "events", "-n", namespace, "--field-selector",
                          "involvedObject.name=broken")  # fmt: skip
    assert "CopyFailed" in {event["reason"] for event in events["items"]}
    # Terminal: watching for a while shows no second copy (a hot loop would make dozens).
    time.sleep(5)
    assert cloud.calls()["DesktopImageService.CopyFromDesktop"] == 1


def test_running_desktop_is_a_clear_condition_until_it_is_stopped(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator()
    manifest = desktop_image("from-running", source={"desktopId": seeds.RUNNING_DESKTOP_ID})
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(manifest))
    obj = wait_reason(kubectl, namespace, "from-running", "SourceNotReady")
    message = condition(obj, "Ready")["message"]
    assert message.startswith("FAILED_PRECONDITION:")
    assert "request id" in message

    # Terminal: the operator waits for a change rather than hammering the cloud.
    cloud.set_desktop(seeds.RUNNING_DESKTOP_ID, status="STOPPED")
    try:
        kubectl("annotate", "-n", namespace, "desktopimage", "from-running", "example.com/retry=1")
        wait_ready(kubectl, namespace, "from-running")
    finally:
        cloud.set_desktop(seeds.RUNNING_DESKTOP_ID, status="ACTIVE")
    assert cloud.calls()["DesktopImageService.CopyFromDesktop"] == 2


def test_pause_annotation_stops_cloud_calls(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator()
    paused = desktop_image("paused")
    paused["metadata"]["annotations"] = {"clouddesktop.yc.io/paused": "true"}
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(paused))
    wait_until(
        lambda: any(
            c["type"] == "Synced" and c["reason"] == "ReconcilePaused"
            for c in get(kubectl, namespace, "paused").get("status", {}).get("conditions", [])
        ),
        timeout=30,
        what="Synced=ReconcilePaused",
    )
    assert not any(entry["method"].startswith("DesktopImageService") for entry in cloud.requests())

    kubectl("annotate", "-n", namespace, "desktopimage", "paused", "clouddesktop.yc.io/paused-")
    wait_ready(kubectl, namespace, "paused")


def test_image_deleted_behind_our_back_is_reported_and_not_recreated(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator(extra_env={"DESKTOP_IMAGE_OPERATOR_RESYNC_SECONDS": "2"})
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("drifted")))
    wait_ready(kubectl, namespace, "drifted")
    [image] = cloud.images()
    cloud.http.delete(f"/images/{image['id']}").raise_for_status()

    obj = wait_reason(kubectl, namespace, "drifted", "ImageNotFound", timeout=30)
    assert image["id"] in condition(obj, "Ready")["message"]
    events = kubectl_json(
        kubectl, "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=drifted"
    )
    assert "ImageNotFound" in {event["reason"] for event in events["items"]}
    time.sleep(3)  # more than one resync period
    assert cloud.images() == []
    assert cloud.calls()["DesktopImageService.CopyFromDesktop"] == 1

    # Deleting the object then releases it at once: there is nothing left to delete.
    kubectl("delete", "-n", namespace, "desktopimage", "drifted", "--timeout=30s", timeout=40)


def test_metrics_are_scrapeable_and_count_what_happened(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    operator = start_operator()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("measured")))
    wait_ready(kubectl, namespace, "measured")

    families = {family.name: family for family in text_string_to_metric_families(operator.metrics())}
    copies = [
        sample.value
        for sample in families["desktop_image_operator_cloud_requests"].samples
        if sample.name.endswith("_total") and sample.labels == {"method": COPY_METHODS[1], "code": "OK"}
    ]
    assert copies == [1.0]
    ready = [
        s for s in families["desktop_image_operator_objects"].samples if s.labels == {"reason": "Available"}
    ]
    assert [s.value for s in ready] == [1.0]
    results = {
        (s.labels["trigger"], s.labels["result"])
        for s in families["desktop_image_operator_reconciles"].samples
        if s.name.endswith("_total")
    }
    # The object's loop starts the copy at once and returns; later scheduled looks poll it until Ready.
    assert ("start", "progressing") in results
    assert ("scheduled", "ready") in results
    assert families["desktop_image_operator_time_to_ready_seconds"].samples
    assert families["desktop_image_operator_cloud_request_duration_seconds"].samples


def test_status_writes_name_the_operator_as_their_field_manager(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("managed")))
    wait_ready(kubectl, namespace, "managed")
    obj = kubectl_json(kubectl, "get", "-n", namespace, "desktopimage", "managed", "--show-managed-fields")
    status_managers = {
        entry["manager"] for entry in obj["metadata"]["managedFields"] if entry.get("subresource") == "status"
    }
    assert status_managers == {"desktop-image-operator"}
    # No framework bookkeeping left on the object: only the finalizer.
    annotations = obj["metadata"].get("annotations") or {}
    assert not [key for key in annotations if "clouddesktop.yc.io" in key]
    assert obj["metadata"]["finalizers"] == ["clouddesktop.yc.io/finalizer"]
