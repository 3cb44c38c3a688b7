"""Adoption and identity against the fake cloud: existing images taken over by ID, an object re-created
after Retain getting its image back, images of live objects never taken, and observe-only objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from desktop_image_operator.api.constants import OWNER_UID_LABEL
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.annotations import ADOPT_FROM_OTHER_CLUSTER
from desktop_image_operator.reconciler.ownership import Owner
from desktop_image_operator.reconciler.reconciler import Result
from tests.reconciler.harness import CLUSTER_ID, OTHER_UID, UID, Stand, condition, manifest, ready, stand

pytestmark = pytest.mark.timeout(60)

MUTATING = {"DesktopImageService.CopyFromDesktop", "DesktopImageService.Copy", "DesktopImageService.Update",
            "DesktopImageService.Delete"}  # fmt: skip


@pytest.fixture
async def s() -> AsyncIterator[Stand]:
    async with stand() as opened:
        yield opened


def adopting(image_id: str, **spec: Any) -> dict[str, Any]:
    body = manifest(**spec)
    body["spec"]["source"] = {"imageId": image_id}
    return body


def labels_of(uid: str, namespace: str, name: str, cluster: str = CLUSTER_ID) -> dict[str, str]:
    return Owner.of(uid, cluster, namespace, name).labels()


async def mutating_calls(s: Stand) -> list[str]:
    return [entry["method"] for entry in await s.requests() if entry["method"] in MUTATING]


async def the_image(s: Stand, image_id: str) -> dict[str, Any]:
    return next(image for image in await s.images() if image["id"] == image_id)


async def test_an_image_made_by_hand_is_adopted_by_id_without_a_copy(s: Stand) -> None:
    image_id = await s.make_image("by-hand", {"team": "a"})
    s.use(adopting(image_id, name="by-hand", labels={"team": "a"}))

    assert (await s.settle()).result is Result.READY
    assert await mutating_calls(s) == ["DesktopImageService.Copy", "DesktopImageService.Update"]  # ours: 1
    image = await the_image(s, image_id)
    assert image["labels"][OWNER_UID_LABEL] == UID
    assert image["labels"]["team"] == "a"
    assert s.body["status"]["imageId"] == image_id
    assert s.body["status"]["imageStatus"] == "ACTIVE"
    assert "ImageAdopted" in s.recorder.reasons()


async def test_an_adopted_image_takes_the_spec_s_name_description_and_labels(s: Stand) -> None:
    image_id = await s.make_image("by-hand")
    s.use(adopting(image_id, name="renamed", description="now managed", labels={"tier": "gold"}))
    assert (await s.settle()).result is Result.READY
    image = await the_image(s, image_id)
    assert (image["name"], image["description"], image["labels"]["tier"]) == (
        "renamed",
        "now managed",
        "gold",
    )


async def test_an_adopted_image_is_kept_on_delete_unless_the_manifest_says_delete(s: Stand) -> None:
    image_id = await s.make_image("by-hand")
    s.use(adopting(image_id, name="by-hand"))
    await s.settle()
    assert (await s.finalize()).result is Result.RETAINED
    assert len(await s.images()) == 1

    s.use(adopting(image_id, name="by-hand", deletionPolicy="Delete"))
    await s.settle()
    for _ in range(10):
        outcome = await s.finalize()
        if outcome.result is Result.DELETED:
            break
        s.clock.advance(outcome.requeue_after or 1.0)
    assert await s.images() == []


async def test_an_image_of_a_live_object_is_never_taken_over(s: Stand) -> None:
    image_id = await s.make_image("theirs", labels_of(OTHER_UID, "team-b", "theirs"))
    s.owners.live.add(OTHER_UID)
    s.use(adopting(image_id, name="theirs"))

    outcome = await s.reconcile()
    assert (outcome.result, outcome.reason) == (Result.TERMINAL_ERROR, r.ADOPTION_CONFLICT)
    assert "DesktopImage team-b/theirs" in condition(s.body, "Ready")["message"]
    assert s.recorder.reasons() == [r.ADOPTION_CONFLICT]
    assert await mutating_calls(s) == ["DesktopImageService.Copy"]  # only the image's own making
    assert (await the_image(s, image_id))["labels"][OWNER_UID_LABEL] == OTHER_UID


async def test_an_image_whose_owner_is_gone_is_adopted(s: Stand) -> None:
    image_id = await s.make_image("theirs", labels_of(OTHER_UID, "team-b", "theirs"))
    s.use(adopting(image_id, name="theirs"))
    assert (await s.settle()).result is Result.READY
    assert [owner.uid for owner in s.owners.asked] == [OTHER_UID]
    assert (await the_image(s, image_id))["labels"][OWNER_UID_LABEL] == UID


async def test_an_object_re_created_after_retain_gets_its_image_back_without_a_copy(s: Stand) -> None:
    s.use(manifest(deletionPolicy="Retain"))
    await s.settle()
    [before] = await s.images()
    assert (await s.finalize()).result is Result.RETAINED

    recreated = manifest(deletionPolicy="Retain")
    recreated["metadata"]["uid"] = OTHER_UID  # same namespace and name, new UID
    s.use(recreated)
    assert (await s.settle()).result is Result.READY

    [after] = await s.images()
    assert after["id"] == before["id"]
    assert after["labels"][OWNER_UID_LABEL] == OTHER_UID
    assert (await s.calls())["DesktopImageService.CopyFromDesktop"] == 1
    assert s.owners.asked == []  # names are unique: no need to ask


async def test_our_name_held_by_another_cluster_s_image_says_how_to_adopt_it(s: Stand) -> None:
    image_id = await s.make_image(
        "analysts-base", labels_of(OTHER_UID, "team-a", "analysts-base", "elsewhere")
    )
    outcome = await s.reconcile()
    assert outcome.reason == r.NAME_CONFLICT
    message = condition(s.body, "Ready")["message"]
    assert "another cluster" in message
    assert f"spec.source.imageId: {image_id}" in message
    assert await mutating_calls(s) == ["DesktopImageService.Copy"]

    assert ADOPT_FROM_OTHER_CLUSTER in message
    s.use(adopting(image_id))  # without the annotation, another cluster's image is not taken
    assert (await s.reconcile()).reason == r.ADOPTION_CONFLICT
    assert ADOPT_FROM_OTHER_CLUSTER in condition(s.body, "Ready")["message"]
    body = adopting(image_id)  # done as the message says: adopted, not copied
    body["metadata"]["annotations"] = {ADOPT_FROM_OTHER_CLUSTER: "true"}
    s.use(body)
    assert (await s.settle()).result is Result.READY
    assert (await s.calls())["DesktopImageService.CopyFromDesktop"] == 0


async def test_our_name_held_by_a_hand_made_image_is_a_conflict_that_offers_adoption(s: Stand) -> None:
    image_id = await s.make_image("analysts-base")
    assert (await s.reconcile()).reason == r.NAME_CONFLICT
    assert f"spec.source.imageId: {image_id}" in condition(s.body, "Ready")["message"]


# --- observe only ------------------------------------------------------------------------------------------


async def test_observe_only_reads_mirrors_and_reports_without_a_single_change(s: Stand) -> None:
    image_id = await s.make_image("by-hand", {"team": "a"})
    s.use(adopting(image_id, managementPolicy="Observe", name="other-name", labels={"team": "b"}))
    await s.forget_requests()

    outcome = await s.settle()
    assert outcome.result is Result.READY
    assert ready(s.body) == ("True", r.AVAILABLE)
    assert "observed" in condition(s.body, "Ready")["message"]
    assert s.body["status"]["imageId"] == image_id
    assert await mutating_calls(s) == []
    image = await the_image(s, image_id)
    assert OWNER_UID_LABEL not in image["labels"]
    assert image["labels"]["team"] == "a"


async def test_observe_only_releases_at_once_on_delete_and_leaves_the_image(s: Stand) -> None:
    image_id = await s.make_image("by-hand")
    s.use(adopting(image_id, managementPolicy="Observe", deletionPolicy="Delete"))
    await s.settle()
    await s.forget_requests()
    assert (await s.finalize()).result is Result.RETAINED
    assert await s.requests() == []
    assert len(await s.images()) == 1


async def test_observe_only_reports_a_missing_image(s: Stand) -> None:
    s.use(adopting("e3vnosuchimage000000", managementPolicy="Observe"))
    assert (await s.reconcile()).reason == r.IMAGE_NOT_FOUND
    assert await mutating_calls(s) == []


async def test_switching_from_observe_to_manage_takes_the_image_over(s: Stand) -> None:
    image_id = await s.make_image("by-hand")
    s.use(adopting(image_id, name="by-hand", managementPolicy="Observe"))
    await s.settle()
    s.change_spec(managementPolicy="Manage")
    assert (await s.settle()).result is Result.READY
    assert (await the_image(s, image_id))["labels"][OWNER_UID_LABEL] == UID


async def test_an_object_refused_adoption_never_deletes_the_owner_s_image(s: Stand) -> None:
    image_id = await s.make_image("theirs", labels_of(OTHER_UID, "team-b", "theirs"))
    s.owners.live.add(OTHER_UID)
    s.use(adopting(image_id, name="theirs", deletionPolicy="Delete"))
    assert (await s.reconcile()).reason == r.ADOPTION_CONFLICT
    assert (await s.finalize()).result is Result.RETAINED
    assert await mutating_calls(s) == ["DesktopImageService.Copy"]  # only the image's own making
    assert len(await s.images()) == 1
