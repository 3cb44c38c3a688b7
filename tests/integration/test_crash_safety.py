"""The operator killed with SIGKILL at the worst moments, then restarted: exactly one cloud image per object,
nothing stuck. Each case runs with the cloud honouring idempotency keys and without (their support in the
real cloud is unverified), so safety never rests on the keys alone."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.kube import Kubectl, StartOperator, get, kubectl_json, wait_ready
from tests.support.manifests import desktop_image, text
from tests.support.processes import FakeCloudProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

COPY = "DesktopImageService.CopyFromDesktop"
DELETE = "DesktopImageService.Delete"


@pytest.fixture(params=[True, False], ids=["keys-honoured", "keys-ignored"])
def honour_keys(request: pytest.FixtureRequest, cloud: FakeCloudProcess) -> bool:
    cloud.config(honorIdempotency=request.param)
    return bool(request.param)


def assert_one_image(cloud: FakeCloudProcess, name: str) -> None:
    images = [image for image in cloud.images() if image["name"] == name]
    assert len(images) == 1, images
    assert images[0]["status"] == "ACTIVE"


def test_killed_just_after_the_copy_was_accepted(
    honour_keys: bool,
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    cloud.config(copySeconds=2)
    operator = start_operator()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("crash-a")))
    wait_until(lambda: cloud.requests(COPY), timeout=30, interval=0.02, what="the copy call")
    operator.kill9()

    operator.start()
    wait_ready(kubectl, namespace, "crash-a")
    assert_one_image(cloud, "crash-a")
    assert len(cloud.requests(COPY)) == 1


def test_copy_answer_dropped_after_the_work_was_done(
    honour_keys: bool,
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    # Every answer to the copy is lost; the operator retries and is killed while it does.
    cloud.fault(method=COPY, dropResponse=1000)
    operator = start_operator()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("crash-b")))
    wait_until(lambda: cloud.requests(COPY), timeout=30, interval=0.02, what="the copy call")
    operator.kill9()
    cloud.http.delete("/faults").raise_for_status()

    operator.start()
    wait_ready(kubectl, namespace, "crash-b")
    assert_one_image(cloud, "crash-b")


def test_killed_while_following_the_operation(
    honour_keys: bool,
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    cloud.config(copySeconds=4)
    operator = start_operator()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("crash-c")))
    wait_until(
        lambda: get(kubectl, namespace, "crash-c").get("status", {}).get("operationId"),
        timeout=30,
        what="the recorded operation",
    )
    operator.kill9()

    operator.start()
    wait_ready(kubectl, namespace, "crash-c")
    assert_one_image(cloud, "crash-c")
    assert len(cloud.requests(COPY)) == 1


def test_killed_during_delete(
    honour_keys: bool,
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    operator = start_operator()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("crash-d")))
    wait_ready(kubectl, namespace, "crash-d")
    cloud.config(operationSeconds=3)
    kubectl("delete", "-n", namespace, "desktopimage", "crash-d", "--wait=false")
    wait_until(lambda: cloud.requests(DELETE), timeout=30, interval=0.02, what="the delete call")
    operator.kill9()

    operator.start()
    kubectl("wait", "-n", namespace, "--for=delete", "desktopimage/crash-d", "--timeout=60s", timeout=70)
    assert [image for image in cloud.images() if image["name"] == "crash-d"] == []
    assert len(cloud.requests(DELETE)) <= 2


def test_replace_of_a_ready_object_starts_no_second_copy(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    operator = start_operator()
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("replaced")))
    wait_ready(kubectl, namespace, "replaced")

    # `kubectl replace` (and Argo CD's Replace=true) drops every annotation the operator's framework kept.
    obj = kubectl_json(kubectl, "get", "-n", namespace, "desktopimage", "replaced")
    metadata = obj["metadata"]
    fresh = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {
            "name": metadata["name"],
            "namespace": namespace,
            "resourceVersion": metadata["resourceVersion"],
        },
        "spec": obj["spec"],
    }
    kubectl("replace", "-f", "-", stdin=json.dumps(fresh))
    # The operator reacts (as to a new object), and again after a restart; neither copies.
    time.sleep(2)
    operator.kill9()
    operator.start()
    wait_ready(kubectl, namespace, "replaced")
    time.sleep(2)
    assert len(cloud.requests(COPY)) == 1
    assert_one_image(cloud, "replaced")
    assert get(kubectl, namespace, "replaced")["status"]["conditions"][0]["status"] == "True"
