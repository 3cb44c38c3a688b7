"""The reconciler's decisions against the fake cloud: what it reads, the one action it takes, what it
writes and says, and when it asks to look again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from desktop_image_operator.api.constants import (
    OWNER_CLUSTER_LABEL,
    OWNER_NAME_LABEL,
    OWNER_NAMESPACE_LABEL,
    OWNER_UID_LABEL,
)
from desktop_image_operator.reconciler import naming
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.ownership import cluster_label
from desktop_image_operator.reconciler.reconciler import Result
from desktop_image_operator_dev.fakecloud import seeds
from tests.reconciler.harness import (
    CLUSTER_ID,
    COPY_SECONDS,
    OPERATION_SECONDS,
    OTHER_UID,
    UID,
    Crash,
    Stand,
    condition,
    manifest,
    ready,
    stand,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def s() -> AsyncIterator[Stand]:
    async with stand() as opened:
        yield opened


def another_object() -> dict[str, Any]:
    """Another object of the namespace that asks for the same cloud image name."""
    body = manifest(name="analysts-base")
    body["metadata"].update(name="someone-else", uid=OTHER_UID)
    return body


async def copy_keys(s: Stand) -> list[str]:
    return [entry["idempotencyKey"] for entry in await s.requests("CopyFromDesktop")]


async def ready_image(s: Stand, **spec: Any) -> dict[str, Any]:
    s.use(manifest(**spec))
    outcome = await s.settle()
    assert outcome.result is Result.READY, outcome
    [image] = await s.images()
    return image


# --- copy --------------------------------------------------------------------------------------------------


async def test_a_new_object_records_its_copy_as_sent_then_running_without_waiting(s: Stand) -> None:
    s.use(manifest(labels={"team": "a"}, description="base image"))
    outcome = await s.reconcile()

    assert outcome.result is Result.PROGRESSING
    assert outcome.requeue_after == 1.0
    [copy] = await s.requests("CopyFromDesktop")
    assert copy["idempotencyKey"] == naming.copy_key(UID)
    sent, _running = s.recorder.patches
    assert sent["status"]["operation"]["phase"] == "Sent"  # written before the request went out
    status = s.body["status"]
    assert status["operation"]["kind"] == "Copy"
    assert status["operation"]["phase"] == "Running"
    assert status["operation"]["id"] == status["operationId"] == copy["operationId"]
    assert "imageId" not in status  # only a read of the image confirms it
    assert ready(s.body) == ("False", r.COPYING)
    assert s.recorder.reasons() == ["CopyStarted"]
    [image] = await s.images()
    assert image["labels"] == {
        "team": "a",
        OWNER_UID_LABEL: UID,
        OWNER_CLUSTER_LABEL: cluster_label(CLUSTER_ID),
        OWNER_NAMESPACE_LABEL: "team-a",
        OWNER_NAME_LABEL: "analysts-base",
    }
    assert image["name"] == "analysts-base"  # metadata.name when spec.name is absent


async def test_polls_of_a_running_copy_write_nothing_and_slow_down_with_its_age(s: Stand) -> None:
    await s.reconcile()
    delays = []
    for _ in range(3):
        s.clock.advance(2.0)
        outcome = await s.reconcile()
        delays.append(outcome.requeue_after)
    assert len(s.recorder.patches) == 2  # Sent, then Running: the polls write nothing
    assert delays == [2.0, 4.0, 6.0]  # as long as the copy has run so far
    assert (await s.calls())["OperationService.Get"] == 3


async def test_a_finished_copy_is_ready_only_from_a_fresh_read_of_the_image(s: Stand) -> None:
    await s.reconcile()
    s.clock.advance(COPY_SECONDS)
    await s.forget_requests()
    outcome = await s.reconcile()

    assert outcome.result is Result.READY
    assert outcome.first_ready
    assert [e["method"] for e in await s.requests()] == ["OperationService.Get", "DesktopImageService.Get"]
    status = s.body["status"]
    assert "operation" not in status
    assert status["imageStatus"] == "ACTIVE"
    assert status["storageSize"] > 0
    assert status["observedGeneration"] == 1
    assert ready(s.body) == ("True", r.AVAILABLE)
    assert s.recorder.reasons() == ["CopyStarted", "ImageReady"]
    assert len(s.recorder.patches) == 3  # Sent, Running, Ready


async def test_a_compute_image_source_needs_no_desktop_look_up(s: Stand) -> None:
    await ready_image(
        s, source={"computeImageId": seeds.COMPUTE_IMAGE_ID}, folderId=seeds.FOLDER_ID, name="b"
    )
    calls = await s.calls()
    assert calls["DesktopService.Get"] == 0
    assert calls["DesktopImageService.Copy"] == 1


async def test_a_ready_object_costs_one_read_and_no_write(s: Stand) -> None:
    await ready_image(s)
    await s.forget_requests()
    writes, events = len(s.recorder.patches), len(s.recorder.events)

    outcome = await s.reconcile()
    assert outcome.result is Result.READY
    assert not outcome.first_ready
    assert outcome.requeue_after is None  # the controller's resync
    assert [e["method"] for e in await s.requests()] == ["DesktopImageService.Get"]
    assert (len(s.recorder.patches), len(s.recorder.events)) == (writes, events)


@pytest.mark.parametrize("honor", [True, False])
async def test_a_copy_whose_record_was_lost_in_a_crash_is_found_by_its_label_not_repeated(
    s: Stand, honor: bool
) -> None:
    await s.config(honorIdempotency=honor)
    s.recorder.crash_once_a_copy_is_accepted()
    with pytest.raises(Crash):
        await s.reconcile()
    s.restart()  # a new process: nothing in memory survives
    assert s.body["status"]["operation"]["phase"] == "Sent"  # the answer is unknown; the key is kept

    outcome = await s.settle()
    assert outcome.result is Result.READY
    assert len(await s.images()) == 1
    assert len(await copy_keys(s)) == 1
    assert "ImageAdopted" in s.recorder.reasons()


@pytest.mark.parametrize("honor", [True, False])
async def test_a_rename_after_an_unrecorded_copy_ends_with_one_image_of_the_new_name(
    s: Stand, honor: bool
) -> None:
    await s.config(honorIdempotency=honor)
    s.recorder.crash_once_a_copy_is_accepted()
    with pytest.raises(Crash):
        await s.reconcile()
    s.restart()  # a new process: nothing in memory survives
    s.change_spec(name="renamed")

    outcome = await s.settle()
    assert outcome.result is Result.READY
    [image] = await s.images()
    assert image["name"] == "renamed"
    assert image["labels"][OWNER_UID_LABEL] == UID


async def test_a_recorded_copy_is_followed_after_a_restart_not_repeated(s: Stand) -> None:
    await s.reconcile()
    s.use(dict(s.body))  # a new process: only the object's status remains
    s.clock.advance(COPY_SECONDS)
    assert (await s.reconcile()).result is Result.READY
    assert len(await copy_keys(s)) == 1


async def test_a_stranger_holding_our_name_is_a_conflict_and_is_left_alone(s: Stand) -> None:
    await ready_image(s)
    [stranger] = await s.images()
    s.use(another_object())

    outcome = await s.reconcile()
    assert outcome.result is Result.TERMINAL_ERROR
    assert ready(s.body) == ("False", r.NAME_CONFLICT)
    message = condition(s.body, "Ready")["message"]
    assert stranger["id"] in message
    assert "team-a/analysts-base" in message  # the owner, named
    assert len(await copy_keys(s)) == 1
    assert s.recorder.reasons() == [r.NAME_CONFLICT]


async def test_a_name_taken_by_a_copy_the_index_does_not_list_yet_is_awaited_not_a_conflict(s: Stand) -> None:
    await s.config(honorIdempotency=False, listLagSeconds=30)
    s.recorder.crash_once_a_copy_is_accepted()
    with pytest.raises(Crash):
        await s.reconcile()
    s.restart()  # a new process: nothing in memory survives

    outcome = await s.reconcile()  # List shows nothing; the copy meets ALREADY_EXISTS
    # Retried on the controller's backoff for a transient reason, not every poll.
    assert (outcome.result, outcome.reason, outcome.requeue_after) == (
        Result.TRANSIENT_ERROR,
        r.NAME_PENDING,
        None,
    )
    assert ready(s.body) == ("False", r.NAME_PENDING)
    s.clock.advance(30)
    assert (await s.settle()).result is Result.READY
    assert len(await s.images()) == 1
    assert r.NAME_CONFLICT not in s.recorder.reasons()


async def test_an_image_deleted_behind_our_back_is_reported_not_recreated(s: Stand) -> None:
    image = await ready_image(s)
    await s.delete_image(image["id"])

    outcome = await s.reconcile()
    assert outcome.result is Result.TERMINAL_ERROR
    assert ready(s.body) == ("False", r.IMAGE_NOT_FOUND)
    assert condition(s.body, "Synced")["status"] == "True"  # the cloud answered; the image is gone
    assert len(await copy_keys(s)) == 1


async def test_an_image_that_is_not_active_is_not_ready(s: Stand) -> None:
    image = await ready_image(s)
    await s.change_image(image["id"], status="CREATING")

    outcome = await s.reconcile()
    assert outcome.result is Result.PROGRESSING
    assert ready(s.body)[0] == "False"
    assert s.body["status"]["imageStatus"] == "CREATING"


async def test_a_failed_copy_waits_for_its_retry_then_copies_again_with_a_new_key(s: Stand) -> None:
    await s.fault(method="DesktopImageService.CopyFromDesktop", failOperation=True, code="INTERNAL", count=1)
    await s.reconcile()
    s.clock.advance(COPY_SECONDS)
    outcome = await s.reconcile()
    assert outcome.result is Result.TERMINAL_ERROR
    assert outcome.requeue_after == 60.0
    assert ready(s.body) == ("False", r.COPY_FAILED)
    assert s.body["status"]["operation"]["phase"] == "Failed"
    assert "imageId" not in s.body["status"]

    s.clock.advance(30)  # an unrelated wake-up before the retry is due: no new copy
    early = await s.reconcile()
    assert early.requeue_after == pytest.approx(30.0)
    assert len(await copy_keys(s)) == 1

    s.clock.advance(30)
    assert (await s.settle()).result is Result.READY
    keys = await copy_keys(s)
    assert len(keys) == 2
    assert keys[1] != keys[0]
    assert len(await s.images()) == 1


async def test_a_spec_change_retries_a_failed_copy_at_once(s: Stand) -> None:
    await s.fault(method="DesktopImageService.CopyFromDesktop", failOperation=True, code="INTERNAL", count=1)
    await s.reconcile()
    s.clock.advance(COPY_SECONDS)
    await s.reconcile()
    s.change_spec(description="try again")

    outcome = await s.reconcile()
    assert outcome.result is Result.PROGRESSING
    assert len(await copy_keys(s)) == 2


# --- update ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "mask"),
    [
        ({"labels": {"team": "b"}}, ["labels"]),
        ({"description": "new"}, ["description"]),
        ({"name": "renamed", "description": "new"}, ["name", "description"]),
    ],
)
async def test_a_spec_change_is_one_update_with_its_mask(
    s: Stand, change: dict[str, Any], mask: list[str]
) -> None:
    await ready_image(s)
    s.change_spec(**change)
    outcome = await s.reconcile()
    assert outcome.result is Result.PROGRESSING
    assert ready(s.body) == ("False", r.UPDATING)
    assert s.body["status"]["operation"]["kind"] == "Update"

    s.clock.advance(OPERATION_SECONDS)
    assert (await s.settle()).result is Result.READY
    [update] = await s.requests("Update")
    assert sorted(update["updateMask"]) == sorted(mask)
    assert s.recorder.reasons()[-2:] == ["UpdateStarted", "ImageUpdated"]


async def test_a_failed_update_is_retried_on_the_backoff_with_a_new_key_and_applied(s: Stand) -> None:
    await ready_image(s)
    await s.fault(method="DesktopImageService.Update", failOperation=True, code="INTERNAL", count=1)
    s.change_spec(labels={"team": "b"})
    await s.reconcile()
    s.clock.advance(OPERATION_SECONDS)
    failed = await s.reconcile()
    assert failed.result is Result.TRANSIENT_ERROR
    assert failed.requeue_after == 5.0
    assert ready(s.body) == ("False", r.UPDATE_FAILED)

    assert (await s.settle()).result is Result.READY
    updates = await s.requests("Update")
    assert len(updates) == 2
    assert updates[0]["idempotencyKey"] != updates[1]["idempotencyKey"]
    [image] = await s.images()
    assert image["labels"]["team"] == "b"


async def test_a_revert_of_a_revert_is_applied_each_time_with_a_new_key(s: Stand) -> None:
    await ready_image(s, labels={"team": "a"})
    for team in ("b", "a", "b"):
        s.change_spec(labels={"team": team})
        assert (await s.settle()).result is Result.READY
        [image] = await s.images()
        assert image["labels"]["team"] == team
    keys = [entry["idempotencyKey"] for entry in await s.requests("Update")]
    assert len(set(keys)) == 3


async def test_an_update_whose_record_was_lost_is_resent_with_the_same_key(s: Stand) -> None:
    await ready_image(s)
    s.change_spec(labels={"team": "b"})
    s.recorder.crash_on_write = True
    with pytest.raises(Crash):
        await s.reconcile()
    s.restart()  # a new process: nothing in memory survives
    await s.reconcile()
    updates = await s.requests("Update")
    assert len(updates) == 2
    assert updates[0]["idempotencyKey"] == updates[1]["idempotencyKey"]
    assert updates[0]["operationId"] == updates[1]["operationId"]  # the cloud returned the same operation


# --- pause, outages, errors --------------------------------------------------------------------------------


async def test_a_paused_object_makes_no_cloud_call(s: Stand) -> None:
    s.body["metadata"]["annotations"] = {"clouddesktop.yc.io/paused": "true"}
    outcome = await s.reconcile()
    assert outcome.result is Result.PAUSED
    assert await s.requests() == []
    assert condition(s.body, "Synced")["reason"] == r.RECONCILE_PAUSED


async def test_an_outage_while_copying_keeps_ready_on_copying(s: Stand) -> None:
    await s.reconcile()
    await s.fault(method="OperationService.Get", code="UNAVAILABLE")
    outcome = await s.reconcile()
    assert outcome.result is Result.TRANSIENT_ERROR
    assert ready(s.body) == ("False", r.COPYING)
    assert condition(s.body, "Synced")["reason"] == r.CLOUD_UNAVAILABLE


@pytest.mark.parametrize(
    ("code", "reason", "result"),
    [
        ("PERMISSION_DENIED", r.PERMISSION_DENIED, Result.TERMINAL_ERROR),
        ("UNAUTHENTICATED", r.CREDENTIALS_INVALID, Result.TERMINAL_ERROR),
        ("INVALID_ARGUMENT", r.INVALID_REQUEST, Result.TERMINAL_ERROR),
        ("RESOURCE_EXHAUSTED", r.THROTTLED, Result.TRANSIENT_ERROR),
        ("UNAVAILABLE", r.CLOUD_UNAVAILABLE, Result.TRANSIENT_ERROR),
    ],
)
async def test_copy_errors_become_conditions(s: Stand, code: str, reason: str, result: Result) -> None:
    await s.fault(method="DesktopImageService.CopyFromDesktop", code=code, message="quota of patience")
    outcome = await s.reconcile()
    assert (outcome.result, outcome.reason) == (result, reason)
    assert ready(s.body) == ("False", reason)
    assert condition(s.body, "Synced")["reason"] == reason


async def test_a_used_up_quota_is_told_from_throttling_by_the_cloud_s_detail(s: Stand) -> None:
    await s.config(imageQuota=0)
    outcome = await s.reconcile()
    assert (outcome.result, outcome.reason) == (Result.TERMINAL_ERROR, r.QUOTA_EXCEEDED)


async def test_a_running_desktop_is_source_not_ready(s: Stand) -> None:
    s.use(manifest(source={"desktopId": seeds.RUNNING_DESKTOP_ID}))
    outcome = await s.reconcile()
    assert outcome.reason == r.SOURCE_NOT_READY


async def test_a_missing_desktop_is_source_not_found(s: Stand) -> None:
    s.use(manifest(source={"desktopId": "e3vnosuchdesktop0000"}))
    outcome = await s.reconcile()
    assert (outcome.result, outcome.reason) == (Result.TERMINAL_ERROR, r.SOURCE_NOT_FOUND)


async def test_an_image_still_being_created_without_our_operation_is_awaited(s: Stand) -> None:
    s.recorder.crash_once_a_copy_is_accepted()
    with pytest.raises(Crash):
        await s.reconcile()
    s.restart()  # a new process: nothing in memory survives
    outcome = await s.reconcile()  # found by label, still CREATING
    assert outcome.result is Result.PROGRESSING
    assert s.recorder.reasons()[-1] == "ImageAdopted"
    s.clock.advance(COPY_SECONDS)
    assert (await s.reconcile()).result is Result.READY


# --- deletion ----------------------------------------------------------------------------------------------


async def finalize_until_released(s: Stand, steps: int = 20) -> Result:
    for _ in range(steps):
        outcome = await s.finalize()
        if outcome.result in (Result.DELETED, Result.RETAINED):
            return outcome.result
        s.clock.advance(outcome.requeue_after or 10.0)
    raise AssertionError("not released")


async def test_the_delete_policy_deletes_the_image_and_follows_the_operation(s: Stand) -> None:
    await ready_image(s)
    outcome = await s.finalize()
    assert outcome.result is Result.PROGRESSING
    assert ready(s.body) == ("False", r.DELETING)
    assert s.body["status"]["operation"]["kind"] == "Delete"
    assert await finalize_until_released(s) is Result.DELETED
    assert await s.images() == []
    assert s.recorder.reasons()[-1] == "ImageDeleted"


async def test_the_retain_policy_leaves_the_image(s: Stand) -> None:
    await ready_image(s, deletionPolicy="Retain")
    assert (await s.finalize()).result is Result.RETAINED
    assert len(await s.images()) == 1
    assert (await s.calls())["DesktopImageService.Delete"] == 0


async def test_an_image_already_gone_releases_at_once(s: Stand) -> None:
    image = await ready_image(s)
    await s.delete_image(image["id"])
    assert (await s.finalize()).result is Result.DELETED


async def test_deletion_waits_out_a_running_copy_then_deletes(s: Stand) -> None:
    await s.reconcile()
    outcome = await s.finalize()
    assert outcome.result is Result.PROGRESSING
    assert (await s.calls())["DesktopImageService.Delete"] == 0
    assert await finalize_until_released(s) is Result.DELETED
    assert await s.images() == []


async def test_deletion_finds_an_unrecorded_copy_by_its_label(s: Stand) -> None:
    s.recorder.crash_once_a_copy_is_accepted()
    with pytest.raises(Crash):
        await s.reconcile()
    s.restart()  # a new process: nothing in memory survives
    s.change_spec(name="renamed-before-the-record")
    assert await finalize_until_released(s) is Result.DELETED
    assert await s.images() == []


async def test_deletion_never_touches_a_stranger_s_image(s: Stand) -> None:
    await ready_image(s)
    s.use(another_object())
    assert (await s.finalize()).result is Result.DELETED
    assert len(await s.images()) == 1


async def test_a_failed_delete_is_retried_with_a_new_key_until_the_image_is_gone(s: Stand) -> None:
    await ready_image(s)
    await s.fault(method="DesktopImageService.Delete", failOperation=True, code="INTERNAL", count=1)
    await s.finalize()
    s.clock.advance(OPERATION_SECONDS)
    failed = await s.finalize()
    assert failed.result is Result.TRANSIENT_ERROR
    assert ready(s.body) == ("False", r.DELETE_FAILED)
    assert await finalize_until_released(s) is Result.DELETED
    deletes = await s.requests("Delete")
    assert len({entry["idempotencyKey"] for entry in deletes}) == 2
    assert await s.images() == []


async def test_a_deletion_outage_is_retried_not_released(s: Stand) -> None:
    await ready_image(s)
    await s.fault(method="DesktopImageService.Delete", code="UNAVAILABLE")
    outcome = await s.finalize()
    assert outcome.result is Result.TRANSIENT_ERROR
    assert condition(s.body, "Synced")["reason"] == r.CLOUD_UNAVAILABLE
    assert len(await s.images()) == 1


async def test_once_a_copy_was_seen_to_end_the_next_is_polled_when_it_should_end(s: Stand) -> None:
    await ready_image(s)  # learns how long a copy takes here: COPY_SECONDS
    second = manifest()
    second["metadata"].update(name="second", uid=OTHER_UID)
    s.use(second)
    started = await s.reconcile()
    assert started.requeue_after == pytest.approx(COPY_SECONDS)
    await s.forget_requests()

    s.clock.advance(started.requeue_after or 0)
    assert (await s.reconcile()).result is Result.READY
    assert (await s.calls())["OperationService.Get"] == 1  # no poll before it could have ended


async def test_a_late_operation_is_polled_after_growing_pauses(s: Stand) -> None:
    await ready_image(s)
    await s.config(copySeconds=COPY_SECONDS * 3)  # this copy takes three times as long
    second = manifest()
    second["metadata"].update(name="second", uid=OTHER_UID)
    s.use(second)
    outcome = await s.reconcile()
    pauses = []
    for _ in range(10):
        s.clock.advance(outcome.requeue_after or 0)
        outcome = await s.reconcile()
        if outcome.result is Result.READY:
            break
        pauses.append(outcome.requeue_after)
    assert outcome.result is Result.READY
    assert pauses == sorted(pauses)  # never shorter than the one before
    assert len(pauses) <= 8


async def test_a_copy_whose_status_write_failed_is_found_in_the_same_process(s: Stand) -> None:
    await s.config(honorIdempotency=False)
    await ready_image(s)  # the folder's listing is now in memory, from before the next copy
    second = manifest(name="second-image")
    second["metadata"].update(name="second", uid=OTHER_UID)
    s.use(second)
    s.recorder.crash_on_write = True  # the API server refuses the write; the process goes on
    with pytest.raises(Crash):
        await s.reconcile()

    assert (await s.settle()).result is Result.READY
    assert len(await copy_keys(s)) == 2  # one per object
    assert len(await s.images()) == 2


async def test_objects_created_together_share_one_listing_of_their_folder(s: Stand) -> None:
    for index in range(5):
        body = manifest(name=f"image-{index}")
        body["metadata"].update(name=f"object-{index}", uid=f"00000000-0000-4000-8000-00000000000{index}")
        s.use(body)
        assert (await s.reconcile()).result is Result.PROGRESSING
    assert (await s.calls())["DesktopImageService.List"] == 1
    assert len(await s.images()) == 5


# --- labels set by others ----------------------------------------------------------------------------------


async def test_a_label_added_behind_the_operator_s_back_survives_while_its_own_labels_are_restored(
    s: Stand,
) -> None:
    s.use(manifest(labels={"team": "a"}))
    assert (await s.settle()).result is Result.READY
    [image] = await s.images()
    await s.change_image(image["id"], labels={**image["labels"], "team": "b", "cost-center": "42"})

    assert (await s.settle()).result is Result.READY
    [image] = await s.images()
    assert image["labels"]["team"] == "a"  # the spec's label: restored
    assert image["labels"]["cost-center"] == "42"  # someone else's: left alone
    assert s.body["status"]["imageLabels"] == image["labels"]


async def test_a_label_dropped_from_the_spec_is_removed_only_because_the_operator_set_it(s: Stand) -> None:
    s.use(manifest(labels={"team": "a", "tier": "gold"}))
    assert (await s.settle()).result is Result.READY
    [image] = await s.images()
    await s.change_image(image["id"], labels={**image["labels"], "cost-center": "42"})
    s.change_spec(labels={"team": "a"})

    assert (await s.settle()).result is Result.READY
    [image] = await s.images()
    assert "tier" not in image["labels"]
    assert image["labels"]["cost-center"] == "42"
    assert "tier" not in s.body["status"]["appliedLabels"]
