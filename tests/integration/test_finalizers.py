"""The operator's finalizers always let go: objects deleted together, a credentialsRef switched, an
uninstall, and a mass deletion under leader election. The operator runs as its own process against the
local control plane and the fake cloud.

Timings are printed (run with -s to see them), never asserted: they depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from benchmarks.failover import ROOMY_QUOTA, Replica, Replicas
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from desktop_image_operator.api import GROUP, PLURAL, VERSION
from desktop_image_operator.reconciler.annotations import CREDENTIALS_FINALIZER, FINALIZER
from desktop_image_operator_dev.devenv.stack import as_environment, child_environment
from tests.support.kube import (
    Kubectl,
    StartOperator,
    apply,
    condition,
    create_key_secret,
    delete_object,
    patch_spec,
    wait_ready,
)
from tests.support.manifests import desktop_image, text
from tests.support.processes import FakeCloudProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

DELETE = "DesktopImageService.Delete"
# Many objects' cloud calls in a short test: the default rate (10/s) would make creating them the test.
BRISK = {"REQUESTS_PER_SECOND": "500", "MAX_CONCURRENCY": "16"}
# Objects deleted at once under leader election: the whole test, their copies included, takes about a
# minute on two cores.
MASS = 500
# A Lease kept on a short leash, and few threads for the operator's own Kubernetes calls: a renewal
# that queues behind other calls shows at once as a step-down and a new leader.
TIGHT_LEASE = {
    "KUBE_WORKERS": "2",
    "LEASE_DURATION_SECONDS": "4",
    "RENEW_DEADLINE_SECONDS": "3",
    "RETRY_PERIOD_SECONDS": "1",
}


# -- looking at the cluster ---------------------------------------------------------------------------------


def secret_finalizers(core: client.CoreV1Api, namespace: str, name: str) -> list[str] | None:
    """The Secret's finalizers; None once it is gone."""
    try:
        secret = core.read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return finalizers_of(secret)


def finalizers_of(secret: client.V1Secret) -> list[str]:
    metadata = secret.metadata
    assert metadata is not None, "the API server always sends metadata"
    return list(metadata.finalizers or [])


def wait_secret_held(core: client.CoreV1Api, namespace: str, name: str, *, timeout: float = 60) -> None:
    def held() -> bool:
        return CREDENTIALS_FINALIZER in (secret_finalizers(core, namespace, name) or [])

    wait_until(held, timeout=timeout, what=f"Secret {namespace}/{name} held by the operator")


def desktop_images(custom: client.CustomObjectsApi, namespace: str) -> list[dict[str, Any]]:
    listing = cast(dict[str, Any], custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL))
    return list(listing["items"])


def desktop_image_named(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return cast(dict[str, Any], custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))


def reason_of(custom: client.CustomObjectsApi, namespace: str, name: str) -> str | None:
    reason = condition(desktop_image_named(custom, namespace, name)).get("reason")
    return str(reason) if reason is not None else None


def namespace_gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def lease_transitions(kubectl: Kubectl, namespace: str) -> int:
    lease = json.loads(
        kubectl("get", "lease", "-n", namespace, "desktop-image-operator", "-o", "json").stdout
    )
    return int(lease["spec"].get("leaseTransitions", 0))


def operators_finalizers_in(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, namespace: str
) -> list[str]:
    """Every finalizer of the operator's in the namespace, as `kind/name: finalizer`."""
    found = [
        f"Secret/{metadata.name}: {CREDENTIALS_FINALIZER}"
        for metadata in (secret.metadata for secret in core.list_namespaced_secret(namespace).items)
        if metadata is not None and CREDENTIALS_FINALIZER in (metadata.finalizers or [])
    ]
    found += [
        f"DesktopImage/{image['metadata']['name']}: {FINALIZER}"
        for image in desktop_images(custom, namespace)
        if FINALIZER in (image["metadata"].get("finalizers") or [])
    ]
    return found


# -- driving it ---------------------------------------------------------------------------------------------


def new_key_secret(cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, name: str, tmp: Path) -> str:
    """A Secret with the authorized key of a service account of its own; the account's ID."""
    response = cloud.http.post("/service-accounts", json={"name": name})
    response.raise_for_status()
    key: dict[str, Any] = response.json()
    create_key_secret(kubectl, namespace, name, key, tmp)
    return str(key["service_account_id"])


def uninstall(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`desktop-image-operator uninstall` as a person runs it, logged in through the kubeconfig."""
    return subprocess.run(
        [sys.executable, "-m", "desktop_image_operator", "uninstall", *args],
        env=child_environment(KUBECONFIG=str(kubeconfig)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def custom(api_client: client.ApiClient, crd: None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def own_namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A namespace the test itself deletes; removed afterwards only if the test did not get that far."""
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


# -- the tests ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [3, 50])
def test_deleting_a_namespace_whose_objects_share_one_secret_lets_everything_go(
    count: int,
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    core: client.CoreV1Api,
    own_namespace: str,
    tmp_path: Path,
) -> None:
    cloud.config(**ROOMY_QUOTA)
    account = new_key_secret(cloud, kubectl, own_namespace, "shared-key", tmp_path)
    start_operator(namespace=own_namespace, extra_env=dict(as_environment(BRISK)))
    names = [f"image-{n}" for n in range(count)]
    apply(kubectl, own_namespace, *(desktop_image(n, credentialsRef={"name": "shared-key"}) for n in names))
    wait_ready(kubectl, own_namespace, *names, timeout=120)
    wait_secret_held(core, own_namespace, "shared-key")

    started = time.monotonic()
    kubectl("delete", "namespace", own_namespace, "--wait=false")
    wait_until(lambda: namespace_gone(core, own_namespace), timeout=120, what="the namespace to go")
    print(f"\nnamespace with {count} objects sharing one Secret gone in {time.monotonic() - started:.1f} s")

    # Every image was deleted with the Secret's key, read while the Secret itself was being deleted.
    assert cloud.images() == []
    assert {entry["principal"] for entry in cloud.requests(DELETE)} == {account}


def test_the_secret_an_object_switched_away_from_goes_as_soon_as_it_is_deleted(
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    core: client.CoreV1Api,
    namespace: str,
    tmp_path: Path,
) -> None:
    new_key_secret(cloud, kubectl, namespace, "old-key", tmp_path)
    new_account = new_key_secret(cloud, kubectl, namespace, "new-key", tmp_path)
    start_operator()
    apply(kubectl, namespace, desktop_image("switching", credentialsRef={"name": "old-key"}))
    wait_ready(kubectl, namespace, "switching")
    wait_secret_held(core, namespace, "old-key")

    patch_spec(kubectl, namespace, "switching", credentialsRef={"name": "new-key"})
    started = time.monotonic()
    kubectl("delete", "secret", "-n", namespace, "old-key", "--wait=false")
    wait_until(lambda: secret_finalizers(core, namespace, "old-key") is None, timeout=10, what="old-key gone")
    print(f"\nthe Secret switched away from was gone {time.monotonic() - started:.1f} s after its deletion")

    wait_secret_held(core, namespace, "new-key", timeout=10)
    wait_until(
        lambda: new_account in {entry["principal"] for entry in cloud.requests()},
        timeout=10,
        what="a cloud call with the new key",
    )


def test_the_uninstall_steps_leave_no_finalizer_of_the_operators(
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    kubeconfig: Path,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    tmp_path: Path,
) -> None:
    new_key_secret(cloud, kubectl, namespace, "team-key", tmp_path)
    operator = start_operator()
    apply(
        kubectl,
        namespace,
        desktop_image("deletable", credentialsRef={"name": "team-key"}),
        desktop_image("stuck", credentialsRef={"name": "team-key"}),
    )
    wait_ready(kubectl, namespace, "deletable", "stuck")
    wait_secret_held(core, namespace, "team-key")
    stuck_id = desktop_image_named(custom, namespace, "stuck")["status"]["imageId"]

    # 1-2: delete the DesktopImages while the operator runs, and wait for them to go. One cannot: by the
    # time it is deleted the cloud refuses every Delete, so its deletion never finishes on its own.
    delete_object(kubectl, namespace, "deletable")
    cloud.fault(method=DELETE, code="PERMISSION_DENIED")
    kubectl("delete", "desktopimages", "--all", "-n", namespace, "--wait=false")
    wait_until(
        lambda: reason_of(custom, namespace, "stuck") == "PermissionDenied",
        timeout=30,
        what="the stuck object to report its refused deletion",
    )
    # 3: the uninstall command; without the flag the stuck object keeps its finalizer.
    kept = uninstall(kubeconfig, "--namespace", namespace)
    assert kept.returncode == 0, kept.stderr
    assert f"DesktopImage {namespace}/stuck keeps the operator's finalizer" in kept.stdout
    released = uninstall(kubeconfig, "--namespace", namespace, "--release-desktop-images")
    assert released.returncode == 0, released.stderr
    assert f"its cloud image {stuck_id} is left in the cloud" in released.stdout
    # 4: the operator goes (helm uninstall); the CRD stays, as other tests share it.
    operator.stop()

    assert operators_finalizers_in(core, custom, namespace) == []
    assert desktop_images(custom, namespace) == []
    assert [image["id"] for image in cloud.images()] == [stuck_id]
    print(f"\n{kept.stdout}{released.stdout}")


@pytest.fixture
def two_replicas(
    crd: None, cloud: FakeCloudProcess, kubeconfig: Path, namespace: str, tmp_path: Path
) -> Iterator[Replicas]:
    """Two operator processes electing a leader on a Lease in the test's namespace."""
    settings = {**BRISK, **TIGHT_LEASE}
    replicas = Replicas([])
    try:
        for n in range(2):
            replica = Replica(
                tmp_path, cloud, kubeconfig=kubeconfig, namespace=namespace, name=f"op-{n}", settings=settings
            )
            replicas.members.append(replica)
        yield replicas
    finally:
        replicas.stop()


def create_all(kubectl: Kubectl, namespace: str, count: int, secret: str) -> None:
    """`count` objects, each copying an image with the Secret's key."""
    manifests = text(*(desktop_image(f"image-{n}", credentialsRef={"name": secret}) for n in range(count)))
    kubectl("create", "-n", namespace, "-f", "-", stdin=manifests, timeout=120)


def wait_all_looked_at(custom: client.CustomObjectsApi, namespace: str, count: int) -> None:
    """Until every object carries the operator's finalizer and a condition of its first look: deleted
    then, some are still copying (their deletion waits the copy out) and some are Ready."""

    def looked_at(image: dict[str, Any]) -> bool:
        finalized = FINALIZER in (image["metadata"].get("finalizers") or [])
        return finalized and bool((image.get("status") or {}).get("conditions"))

    def all_looked_at() -> bool:
        return sum(looked_at(image) for image in desktop_images(custom, namespace)) == count

    wait_until(all_looked_at, timeout=120, interval=1.0, what=f"{count} objects finalized and looked at")


def test_many_objects_sharing_one_secret_deleted_at_once_go_without_a_leadership_change(
    two_replicas: Replicas,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    tmp_path: Path,
) -> None:
    cloud.config(copySeconds=0.2, operationSeconds=0.1, **ROOMY_QUOTA)
    leader = two_replicas.wait_leader()
    started = time.monotonic()
    new_key_secret(cloud, kubectl, namespace, "shared-key", tmp_path)
    create_all(kubectl, namespace, MASS, "shared-key")
    wait_all_looked_at(custom, namespace, MASS)
    wait_secret_held(core, namespace, "shared-key")
    set_up, before = time.monotonic() - started, lease_transitions(kubectl, namespace)

    deleting = time.monotonic()
    kubectl("delete", "desktopimages", "--all", "-n", namespace, "--wait=false", timeout=120)
    wait_until(lambda: desktop_images(custom, namespace) == [], timeout=120, interval=0.5, what="all gone")
    took, after = time.monotonic() - deleting, lease_transitions(kubectl, namespace)
    print(
        f"\n{MASS} objects sharing one Secret: set up in {set_up:.1f} s, all deleted in {took:.1f} s; "
        f"Lease transitions {before} -> {after}"
    )
    assert after == before, "the Lease changed hands during the deletion"
    assert two_replicas.leaders() == [leader]
    assert "stopped leading" not in leader.child.logs()
    wait_until(
        lambda: secret_finalizers(core, namespace, "shared-key") == [],
        timeout=10,
        what="the shared Secret released",
    )
    assert cloud.images() == []
