"""Where one object's image ends and another's begins, end to end: the operator as its own process, the local
control plane and the fake cloud, driven through kubectl and the fake's admin API.

Two objects naming one image, an image of another cluster, an object deleted and re-created under the same
name, a copy whose answer is lost while the cloud's listing lags, a name held by an image the listing does
not show yet. Each test ends by comparing the cloud (its images, their labels, the mutating calls in its
request log) with the spec. Every wait is bounded.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from desktop_image_operator.api.constants import (
    OWNER_CLUSTER_LABEL,
    OWNER_NAME_LABEL,
    OWNER_NAMESPACE_LABEL,
    OWNER_UID_LABEL,
)
from desktop_image_operator.commands.run import ENV_PREFIX
from desktop_image_operator.reconciler.ownership import Owner
from tests.support.images import make_image
from tests.support.kube import (
    WAIT,
    Kubectl,
    StartOperator,
    apply,
    condition,
    delete_object,
    get,
    is_ready_at,
    kubectl_json,
    patch_spec,
)
from tests.support.manifests import API_VERSION, desktop_image, text
from tests.support.processes import FakeCloudProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

COPY = "DesktopImageService.CopyFromDesktop"
COPIES = ("DesktopImageService.Copy", COPY)
LIST = "DesktopImageService.List"
UPDATE = "DesktopImageService.Update"
DELETE = "DesktopImageService.Delete"
MUTATING = frozenset({*COPIES, UPDATE, DELETE})
OWNERSHIP_LABELS = (OWNER_UID_LABEL, OWNER_CLUSTER_LABEL, OWNER_NAMESPACE_LABEL, OWNER_NAME_LABEL)
ADOPT_FROM_OTHER_CLUSTER = "clouddesktop.yc.io/adopt-from-other-cluster"
IMAGES_PATH = "/cloud-desktop/v1/images"

# A short drift check and quick retries of refusals: a conflict that is not settled shows within seconds.
RESYNC_SECONDS = 5.0
QUICK_LOOKS = {
    ENV_PREFIX + "RESYNC_SECONDS": str(RESYNC_SECONDS),
    ENV_PREFIX + "TERMINAL_RETRY_SECONDS": "1",
}
# One resync period, lengthened by its jitter (at most a tenth), plus room for a 0.5 s operation and kubectl.
ONE_RESYNC = RESYNC_SECONDS * 1.1 + 5


# -- images made outside the operator -----------------------------------------------------------------------


def made_active(
    cloud: FakeCloudProcess, name: str, *, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """An image made by hand, once ACTIVE."""
    image_id = make_image(cloud, name, labels=labels)
    image: dict[str, Any] = wait_until(
        lambda: next((i for i in cloud.images() if i["id"] == image_id and i["status"] == "ACTIVE"), None),
        timeout=WAIT,
        what=f"image {image_id} ACTIVE",
    )
    return image


def image_of(cloud: FakeCloudProcess, image_id: str) -> dict[str, Any] | None:
    return next((image for image in cloud.images() if image["id"] == image_id), None)


def named(cloud: FakeCloudProcess, name: str) -> list[dict[str, Any]]:
    return [image for image in cloud.images() if image["name"] == name]


def ownership(image: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = image.get("labels", {})
    return {key: value for key, value in labels.items() if key in OWNERSHIP_LABELS}


def owner_labels(obj: dict[str, Any], cluster: str) -> dict[str, str]:
    metadata = obj["metadata"]
    return Owner.of(metadata["uid"], cluster, metadata["namespace"], metadata["name"]).labels()


def assert_owned_by(image: dict[str, Any] | None, obj: dict[str, Any], cluster: str) -> None:
    assert image is not None, f"the image of {obj['metadata']['name']} is gone"
    assert ownership(image) == owner_labels(obj, cluster), f"owned by another than {obj['metadata']['name']}"


def cluster_id(kubectl: Kubectl) -> str:
    """This cluster's identity as the operator reads it by default: the UID of kube-system."""
    return str(kubectl_json(kubectl, "get", "namespace", "kube-system")["metadata"]["uid"])


# -- what the operator did ----------------------------------------------------------------------------------


def mark(cloud: FakeCloudProcess) -> int:
    """The sequence number of the last logged call: calls after it are the ones under test."""
    return max((entry["seq"] for entry in cloud.requests()), default=0)


def calls_since(cloud: FakeCloudProcess, seq: int) -> Counter[str]:
    return Counter(entry["method"] for entry in cloud.requests(after=seq))


def mutating(calls: Counter[str]) -> dict[str, int]:
    return {method: count for method, count in calls.items() if method in MUTATING}


def copies(calls: Counter[str]) -> int:
    return sum(calls[method] for method in COPIES)


# -- the objects --------------------------------------------------------------------------------------------


def adopting(object_name: str, image_id: str, /, **spec: Any) -> dict[str, Any]:
    body = {"source": {"imageId": image_id}, **spec}
    return {
        "apiVersion": API_VERSION,
        "kind": "DesktopImage",
        "metadata": {"name": object_name},
        "spec": body,
    }


def wait_for(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    accept: Callable[[dict[str, Any]], bool],
    what: str,
    *,
    timeout: float = WAIT,
) -> dict[str, Any]:
    """The object once `accept` says so; on timeout, an error that shows its last Ready condition."""
    last: dict[str, Any] = {}

    def accepted() -> dict[str, Any] | None:
        nonlocal last
        obj = get(kubectl, namespace, name)
        last = condition(obj)
        return obj if accept(obj) else None

    try:
        found: dict[str, Any] = wait_until(accepted, timeout=timeout, what=what)
    except TimeoutError:
        raise AssertionError(
            f"{name}: no {what} within {timeout:.0f} s; last Ready condition: {last}"
        ) from None
    return found


def ready_at(kubectl: Kubectl, namespace: str, name: str, generation: int = 1) -> dict[str, Any]:
    return wait_for(
        kubectl, namespace, name, lambda obj: is_ready_at(obj, generation), f"Ready at {generation}"
    )


def verdict(
    kubectl: Kubectl, namespace: str, name: str, reason: str, *, generation: int = 1
) -> dict[str, Any]:
    """The object once its Ready condition for `generation` says `reason` or Ready=True, whichever comes
    first, for the caller to assert on."""

    def decided(obj: dict[str, Any]) -> bool:
        ready = condition(obj)
        at = ready.get("observedGeneration") == generation
        return at and (ready.get("reason") == reason or is_ready_at(obj, generation))

    return wait_for(kubectl, namespace, name, decided, f"{reason} or Ready at {generation}")


def assert_reason(obj: dict[str, Any], reason: str) -> dict[str, Any]:
    ready = condition(obj)
    assert (ready.get("status"), ready.get("reason")) == ("False", reason), ready
    return ready


def assert_still_ready(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    obj = get(kubectl, namespace, name)
    assert is_ready_at(obj, int(obj["metadata"]["generation"])), condition(obj)
    return obj


def watch_for(seconds: float, check: Callable[[], None], *, samples: int = 4) -> None:
    """Run `check` now and at `samples` even steps over the next `seconds`."""
    for step in range(samples + 1):
        if step:
            time.sleep(seconds / samples)
        check()


# -- 1. Observe, then Manage ---------------------------------------------------------------------------------


def test_an_observer_switched_to_manage_gets_an_adoption_conflict_and_never_takes_nor_deletes_the_image(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator(extra_env=QUICK_LOOKS)
    apply(kubectl, namespace, desktop_image("owner-a"))
    owner = ready_at(kubectl, namespace, "owner-a", 1)
    image_id = owner["status"]["imageId"]
    cluster = cluster_id(kubectl)
    # Same name as the image: only ownership may differ, whatever the policy.
    apply(
        kubectl,
        namespace,
        adopting("observer-b", image_id, name="owner-a", managementPolicy="Observe", deletionPolicy="Delete"),
    )
    assert ready_at(kubectl, namespace, "observer-b", 1)["status"]["imageId"] == image_id
    seq = mark(cloud)

    generation = patch_spec(kubectl, namespace, "observer-b", managementPolicy="Manage")
    assert_reason(
        verdict(kubectl, namespace, "observer-b", "AdoptionConflict", generation=generation),
        "AdoptionConflict",
    )

    def still_a_s() -> None:
        assert_owned_by(image_of(cloud, image_id), owner, cluster)

    watch_for(30, still_a_s)
    calls = calls_since(cloud, seq)
    assert calls[UPDATE] <= 2, f"{calls[UPDATE]} Update calls on an image another object owns"
    assert (copies(calls), calls[DELETE]) == (0, 0), calls

    delete_object(kubectl, namespace, "observer-b")
    assert calls_since(cloud, seq)[DELETE] == 0, "an image of a live object was deleted"
    [image] = cloud.images()
    assert (image["id"], image["status"]) == (image_id, "ACTIVE"), image
    assert_owned_by(image, owner, cluster)
    assert_still_ready(kubectl, namespace, "owner-a")


# -- 2. two claims on one image at once ---------------------------------------------------------------------


def test_two_objects_applied_together_with_one_image_id_end_with_one_owner_and_no_relabel_war(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    image_id = made_active(cloud, "shared")["id"]
    start_operator(extra_env=QUICK_LOOKS)
    seq = mark(cloud)
    claims = ("claim-a", "claim-b")
    both = [adopting(name, image_id, name="shared", deletionPolicy="Delete") for name in claims]
    apply(kubectl, namespace, *both)
    cluster = cluster_id(kubectl)

    last: dict[str, Any] = {}

    def settled() -> tuple[dict[str, Any], dict[str, Any]] | None:
        objs = {name: get(kubectl, namespace, name) for name in claims}
        last.update({name: condition(obj) for name, obj in objs.items()})
        ready = [obj for obj in objs.values() if is_ready_at(obj, 1)]
        refused = [obj for obj in objs.values() if condition(obj).get("reason") == "AdoptionConflict"]
        return (ready[0], refused[0]) if len(ready) == len(refused) == 1 else None

    try:
        winner, loser = wait_until(settled, timeout=ONE_RESYNC, what="one owner and one AdoptionConflict")
    except TimeoutError:
        raise AssertionError(
            f"not settled within one resync period: {last}, image {image_of(cloud, image_id)}"
        ) from None
    assert_owned_by(image_of(cloud, image_id), winner, cluster)

    updates = calls_since(cloud, seq)[UPDATE]
    time.sleep(15)
    more = calls_since(cloud, seq)[UPDATE] - updates
    assert more <= 1, f"{more} more Update calls on the shared image in 15 s: the two objects fight over it"
    loser_name = loser["metadata"]["name"]
    assert condition(get(kubectl, namespace, loser_name)).get("reason") == "AdoptionConflict"
    assert_owned_by(image_of(cloud, image_id), winner, cluster)

    delete_object(kubectl, namespace, loser_name)
    calls = calls_since(cloud, seq)
    assert (copies(calls), calls[DELETE]) == (0, 0), calls
    [image] = cloud.images()
    assert (image["id"], image["status"]) == (image_id, "ACTIVE"), image
    assert_owned_by(image, winner, cluster)
    assert_still_ready(kubectl, namespace, winner["metadata"]["name"])


# -- 3. an image of another cluster -------------------------------------------------------------------------


def test_an_image_of_another_cluster_s_object_is_adopted_only_with_the_opt_in_annotation(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    # Stamped by an operator elsewhere for an object of the same namespace and name as ours.
    elsewhere = Owner.of(str(uuid.uuid4()), "another-cluster", namespace, "far-image").labels()
    before = made_active(cloud, "far-image", labels={**elsewhere, "team": "a"})
    image_id = before["id"]
    start_operator(extra_env=QUICK_LOOKS)
    seq = mark(cloud)

    apply(kubectl, namespace, adopting("far-image", image_id, labels={"team": "a"}))
    refused = verdict(kubectl, namespace, "far-image", "AdoptionConflict")
    message = assert_reason(refused, "AdoptionConflict")["message"]
    assert ADOPT_FROM_OTHER_CLUSTER in message, message
    assert mutating(calls_since(cloud, seq)) == {}
    assert image_of(cloud, image_id) == before

    kubectl("annotate", "-n", namespace, "desktopimage", "far-image", f"{ADOPT_FROM_OTHER_CLUSTER}=true")
    adopted = ready_at(kubectl, namespace, "far-image", 1)
    assert adopted["status"]["imageId"] == image_id
    [image] = cloud.images()
    assert_owned_by(image, adopted, cluster_id(kubectl))
    assert (image["id"], image["name"], image["labels"]["team"]) == (image_id, "far-image", "a")
    calls = calls_since(cloud, seq)
    assert (copies(calls), calls[DELETE]) == (0, 0), calls


# -- 4. deleted and re-created at once ----------------------------------------------------------------------


def test_an_object_deleted_and_re_created_within_seconds_ends_ready_on_one_image_of_its_own(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator()
    manifest = desktop_image("again", deletionPolicy="Delete", labels={"team": "a"})
    apply(kubectl, namespace, manifest)
    first = ready_at(kubectl, namespace, "again", 1)

    # As `kubectl replace --force` does it: delete, then create the same manifest once the name is free.
    deleted_at = time.monotonic()
    kubectl("delete", "-n", namespace, "desktopimage", "again", "--wait=false")
    created = wait_until(
        lambda: (
            kubectl("create", "-n", namespace, "-f", "-", stdin=text(manifest), check=False).returncode == 0
        ),
        timeout=max(5 - (time.monotonic() - deleted_at), 0.1),
        interval=0.1,
        what="the name free again for the new object",
    )
    assert created
    second = ready_at(kubectl, namespace, "again", 1)
    assert second["metadata"]["uid"] != first["metadata"]["uid"]

    image = image_of(cloud, second["status"]["imageId"])
    assert image is not None, (
        f"status names image {second['status']['imageId']}, which the cloud does not have"
    )
    assert image["status"] == "ACTIVE", image
    assert image["labels"].get(OWNER_UID_LABEL) == second["metadata"]["uid"], image
    assert image["labels"].get("team") == "a", image
    live = [i for i in named(cloud, "again") if i["status"] != "DELETING"]
    assert len(live) == 1, live
    # One copy accepted per object, and the first object's image deleted once.
    accepted = [entry for entry in cloud.requests(COPY) if entry["code"] == "OK"]
    assert len(accepted) == 2, accepted
    assert [entry["code"] for entry in cloud.requests(DELETE)] == ["OK"]


# -- 5. a lost copy answer, a lagging listing, and a deletion -----------------------------------------------


def test_an_object_deleted_while_its_unanswered_copy_runs_leaves_no_image_behind_despite_list_lag(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    # Every answer to the copy is lost after the work is done, and List shows an image only 20 s after it.
    cloud.config(copySeconds=5, listLagSeconds=20)
    cloud.fault(method=COPY, dropResponse=True)
    start_operator()
    apply(kubectl, namespace, desktop_image("unanswered", deletionPolicy="Delete"))
    [copy, *_] = wait_until(lambda: cloud.requests(COPY), timeout=WAIT, interval=0.05, what="the copy call")
    assert copy["dropped"], copy

    kubectl("delete", "-n", namespace, "desktopimage", "unanswered", "--wait=false")
    gone = ("wait", "-n", namespace, "--for=delete", "desktopimage/unanswered", "--timeout=60s")
    kubectl(*gone, timeout=70)

    def copy_done() -> bool:
        operations = cloud.http.get("/operations").json()["operations"]
        return any(op["id"] == copy["operationId"] and op["done"] for op in operations)

    wait_until(copy_done, timeout=WAIT, what="the copy operation done")
    # A Delete of ours may still be finishing; an image the operator forgot stays for good.
    try:
        wait_until(lambda: not named(cloud, "unanswered"), timeout=5, what="no image left")
    except TimeoutError:
        pytest.fail(f"the object is gone but its image was left behind: {named(cloud, 'unanswered')}")
    assert cloud.images() == []
    # Every re-send of the copy whose answer was lost is the same attempt: one idempotency key.
    assert len({entry["idempotencyKey"] for entry in cloud.requests(COPY)}) == 1, cloud.requests(COPY)


# -- 6. a holder the listing does not show ------------------------------------------------------------------


def test_a_name_held_by_an_image_the_listing_does_not_show_is_retried_on_a_backoff_not_in_a_loop(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    cloud.config(listLagSeconds=120)  # the holder stays out of List for the whole test
    holder = made_active(cloud, "held")
    start_operator()
    seq = mark(cloud)

    apply(kubectl, namespace, desktop_image("held"))
    wait_until(
        lambda: cloud.requests(COPY, after=seq), timeout=WAIT, interval=0.05, what="the first copy call"
    )
    time.sleep(20)

    calls = calls_since(cloud, seq)
    print(f"cloud calls in 20 s: {json.dumps(dict(sorted(calls.items())))}")
    assert 1 <= calls[COPY] <= 8, f"{calls[COPY]} Copy calls in 20 s for a name that stays taken"
    assert calls[LIST] <= 16, f"{calls[LIST]} List calls in 20 s"
    ready = condition(get(kubectl, namespace, "held"))
    assert ready.get("status") == "False", ready
    assert ready.get("reason"), ready
    assert calls[UPDATE] == calls[DELETE] == 0, calls
    assert cloud.images() == [holder]
