"""The reconciler's decisions, against an in-memory cloud: what it calls, what it writes, what it says."""

from __future__ import annotations

from typing import Any

import pytest

from desktop_image_operator.api.constants import OWNER_UID_LABEL
from desktop_image_operator.cloud.errors import CloudError, Code
from desktop_image_operator.cloud.types import ImageStatus
from desktop_image_operator.reconciler import conditions as c
from desktop_image_operator.reconciler import naming
from desktop_image_operator.reconciler.reconciler import Reconciler, Result
from desktop_image_operator.reconciler.resource import Resource
from tests.reconciler.memory_cloud import COMPUTE_IMAGE, DESKTOP, FOLDER, SIZE, MemoryCloud

UID = "0b6f1a52-3c1e-4c59-9a4e-2f1d8e7c6b5a"


class Recorder:
    """Collects status patches and events; `body` applies the patches like the API server would."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []

    async def __call__(self, patch: dict[str, Any]) -> None:
        self.patches.append(patch)
        status = self.body.setdefault("status", {})
        for key, value in patch["status"].items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value

    def normal(self, reason: str, message: str) -> None:
        self.events.append(("Normal", reason, message))

    def warning(self, reason: str, message: str) -> None:
        self.events.append(("Warning", reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"source": {"desktopId": DESKTOP}}
    base.update(spec)
    return {
        "metadata": {"name": "analysts-base", "namespace": "team-a", "uid": UID, "generation": 1},
        "spec": base,
    }


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(x for x in body["status"]["conditions"] if x["type"] == kind)


async def reconcile(body: dict[str, Any], cloud: MemoryCloud, recorder: Recorder | None = None) -> Any:
    recorder = recorder or Recorder(body)
    outcome = await Reconciler().reconcile(Resource.from_body(body), cloud, recorder, recorder)
    return outcome, recorder


async def test_new_object_is_copied_once_and_mirrored() -> None:
    cloud, body = MemoryCloud(), manifest(labels={"team": "a"}, description="base image")
    outcome, recorder = await reconcile(body, cloud)

    assert outcome.result is Result.READY
    assert outcome.became_ready
    assert cloud.count("copy") == 1
    _, args = next(call for call in cloud.calls if call[0] == "copy")
    request = args["request"]
    assert args["key"] == naming.copy_key(UID)
    assert request.folder_id == FOLDER  # the desktop's folder, looked up before the copy
    assert request.labels == {"team": "a", OWNER_UID_LABEL: UID}
    assert request.name == "analysts-base"  # metadata.name when spec.name is absent

    # Two writes: the accepted copy (so a restart can resume it), then Ready.
    assert len(recorder.patches) == 2
    first = recorder.patches[0]["status"]
    assert first["operationId"]
    assert first["imageId"]
    assert condition({"status": first}, "Ready")["reason"] == c.COPYING
    status = body["status"]
    assert status["imageStatus"] == "ACTIVE"
    assert status["storageSize"] == SIZE
    assert status["minDiskSize"] == SIZE
    assert status["folderId"] == FOLDER
    assert status["observedGeneration"] == 1
    assert condition(body, "Ready")["status"] == "True"
    assert condition(body, "Synced")["status"] == "True"
    assert recorder.reasons() == ["CopyStarted", "ImageReady"]


async def test_compute_image_source_needs_no_desktop_lookup() -> None:
    cloud, body = (
        MemoryCloud(),
        manifest(source={"computeImageId": COMPUTE_IMAGE}, folderId=FOLDER, name="base"),
    )
    outcome, _ = await reconcile(body, cloud)
    assert outcome.result is Result.READY
    assert cloud.count("get_desktop_folder") == 0
    assert cloud.count("copy") == 1


async def test_ready_object_costs_one_read_and_no_write() -> None:
    cloud, body = MemoryCloud(), manifest()
    await reconcile(body, cloud)
    cloud.calls.clear()

    outcome, recorder = await reconcile(body, cloud)
    assert outcome.result is Result.READY
    assert not outcome.became_ready
    assert [name for name, _ in cloud.calls] == ["get_image"]
    assert recorder.patches == []
    assert recorder.events == []


async def test_copy_accepted_before_a_crash_is_adopted_not_repeated() -> None:
    cloud = MemoryCloud()
    cloud.add_image(
        "analysts-base", naming.ownership_labels(UID)
    )  # the copy went through, status never written
    outcome, recorder = await reconcile(manifest(), cloud)
    assert outcome.result is Result.READY
    assert cloud.count("copy") == 0
    assert "ImageAdopted" in recorder.reasons()


async def test_recorded_operation_is_resumed() -> None:
    cloud, body = MemoryCloud(instant=False), manifest()
    # The first run dies while following the copy: simulate by stopping after the first status write.
    recorder = Recorder(body)

    async def die_after_first_write(patch: dict[str, Any]) -> None:
        await recorder(patch)
        raise KeyboardInterrupt  # stands in for SIGKILL

    with pytest.raises(KeyboardInterrupt):
        await Reconciler().reconcile(Resource.from_body(body), cloud, die_after_first_write, recorder)
    assert condition(body, "Ready")["reason"] == c.COPYING

    outcome, _ = await reconcile(body, cloud)
    assert outcome.result is Result.READY
    assert cloud.count("copy") == 1
    assert cloud.count("follow_operation") == 1


async def test_foreign_image_with_our_name_is_a_conflict() -> None:
    cloud = MemoryCloud()
    cloud.add_image("analysts-base", {"team": "other"})
    outcome, recorder = await reconcile(manifest(), cloud)
    assert outcome.result is Result.TERMINAL_ERROR
    assert outcome.reason == c.NAME_CONFLICT
    assert cloud.count("copy") == 0
    assert recorder.reasons() == [c.NAME_CONFLICT]


async def test_image_deleted_behind_our_back_is_reported_not_recreated() -> None:
    cloud, body = MemoryCloud(), manifest()
    await reconcile(body, cloud)
    cloud.images.clear()

    outcome, recorder = await reconcile(body, cloud)
    assert outcome.result is Result.TERMINAL_ERROR
    assert condition(body, "Ready")["reason"] == c.IMAGE_NOT_FOUND
    assert cloud.count("copy") == 1
    assert recorder.reasons() == [c.IMAGE_NOT_FOUND]

    # Asking again changes nothing and says nothing new.
    _, again = await reconcile(body, cloud)
    assert again.events == []
    assert again.patches == []
    assert cloud.count("copy") == 1


async def test_failed_copy_is_terminal_and_retried_with_a_new_key() -> None:
    cloud, body = MemoryCloud(), manifest()
    cloud.fail_next_copy = CloudError(Code.INTERNAL, "disk snapshot failed", request_id="r-9")
    outcome, recorder = await reconcile(body, cloud)
    assert outcome.result is Result.TERMINAL_ERROR
    ready = condition(body, "Ready")
    assert ready["reason"] == c.COPY_FAILED
    assert "disk snapshot failed" in ready["message"]
    assert "r-9" in ready["message"]
    assert recorder.reasons() == ["CopyStarted", c.COPY_FAILED]
    failed_operation = body["status"]["operationId"]

    outcome, _ = await reconcile(body, cloud)
    assert outcome.result is Result.READY
    keys = [args["key"] for name, args in cloud.calls if name == "copy"]
    assert keys == [naming.copy_key(UID), naming.copy_key(UID, failed_operation)]


@pytest.mark.parametrize(
    ("spec_change", "mask"),
    [
        ({"labels": {"team": "b"}}, ["labels"]),
        ({"description": "new"}, ["description"]),
        ({"name": "renamed"}, ["name"]),
        ({"name": "renamed", "description": "new"}, ["name", "description"]),
    ],
)
async def test_spec_change_is_one_update_with_its_mask(spec_change: dict[str, Any], mask: list[str]) -> None:
    cloud, body = MemoryCloud(), manifest(labels={"team": "a"})
    await reconcile(body, cloud)
    body["spec"].update(spec_change)
    body["metadata"]["generation"] = 2

    outcome, _ = await reconcile(body, cloud)
    assert outcome.result is Result.READY
    updates = [args for name, args in cloud.calls if name == "update"]
    assert len(updates) == 1
    assert updates[0]["mask"] == mask
    assert condition(body, "Ready")["observedGeneration"] == 2
    assert body["status"]["observedGeneration"] == 2


async def test_update_interrupted_by_a_crash_is_followed_not_repeated() -> None:
    cloud, body = MemoryCloud(), manifest(labels={"team": "a"})
    await reconcile(body, cloud)
    body["spec"]["labels"] = {"team": "b"}
    body["metadata"]["generation"] = 2
    cloud.instant = False
    recorder = Recorder(body)

    async def die_after_first_write(patch: dict[str, Any]) -> None:
        await recorder(patch)
        raise KeyboardInterrupt  # stands in for SIGKILL

    with pytest.raises(KeyboardInterrupt):
        await Reconciler().reconcile(Resource.from_body(body), cloud, die_after_first_write, recorder)
    assert condition(body, "Ready")["reason"] == c.UPDATING

    outcome, _ = await reconcile(body, cloud)
    assert outcome.result is Result.READY
    assert cloud.count("update") == 1
    assert condition(body, "Ready")["observedGeneration"] == 2


async def test_paused_object_makes_no_cloud_call() -> None:
    cloud, body = MemoryCloud(), manifest()
    body["metadata"]["annotations"] = {"clouddesktop.yc.io/paused": "true"}
    outcome, _ = await reconcile(body, cloud)
    assert outcome.result is Result.PAUSED
    assert cloud.calls == []
    assert condition(body, "Synced")["reason"] == c.RECONCILE_PAUSED


async def test_outage_while_copying_keeps_ready_on_copying() -> None:
    cloud, body = MemoryCloud(instant=False), manifest()
    cloud.errors["follow_operation"] = [CloudError(Code.UNAVAILABLE, "try later")]
    outcome, _ = await reconcile(body, cloud)
    assert outcome.result is Result.TRANSIENT_ERROR
    assert condition(body, "Ready")["reason"] == c.COPYING
    assert condition(body, "Synced")["reason"] == c.CLOUD_UNAVAILABLE

    outcome, _ = await reconcile(body, cloud)
    assert outcome.result is Result.READY
    assert cloud.count("copy") == 1


TERMINAL, TRANSIENT = Result.TERMINAL_ERROR, Result.TRANSIENT_ERROR
QUOTA_MESSAGE = "Quota limit vdi.desktopImages.count exceeded"


@pytest.mark.parametrize(
    ("error", "reason", "result"),
    [
        (CloudError(Code.UNAUTHENTICATED, "bad token"), c.CREDENTIALS_INVALID, TERMINAL),
        (CloudError(Code.PERMISSION_DENIED, "no role"), c.PERMISSION_DENIED, TERMINAL),
        (CloudError(Code.FAILED_PRECONDITION, "desktop is running"), c.SOURCE_NOT_READY, TERMINAL),
        (CloudError(Code.UNAVAILABLE, "down"), c.CLOUD_UNAVAILABLE, TRANSIENT),
        (CloudError(Code.RESOURCE_EXHAUSTED, "slow down"), c.THROTTLED, TRANSIENT),
        (CloudError(Code.RESOURCE_EXHAUSTED, QUOTA_MESSAGE), c.QUOTA_EXCEEDED, TERMINAL),
        (CloudError(Code.INVALID_ARGUMENT, "bad name"), c.INVALID_REQUEST, TERMINAL),
    ],
)
async def test_copy_errors_become_conditions(error: CloudError, reason: str, result: Result) -> None:
    cloud, body = MemoryCloud(), manifest()
    cloud.errors["copy"] = [error]
    outcome, recorder = await reconcile(body, cloud)
    assert (outcome.result, outcome.reason) == (result, reason)
    assert condition(body, "Ready")["reason"] == reason
    synced = condition(body, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", reason)
    assert error.message in condition(body, "Ready")["message"]
    assert recorder.events == [("Warning", reason, condition(body, "Ready")["message"])]


async def test_missing_desktop_is_source_not_found() -> None:
    cloud, body = MemoryCloud(), manifest(source={"desktopId": "e3vmissing"})
    outcome, _ = await reconcile(body, cloud)
    assert outcome.reason == c.SOURCE_NOT_FOUND


# --- deletion -------------------------------------------------------------------------------------------


async def finalize(body: dict[str, Any], cloud: MemoryCloud) -> Any:
    recorder = Recorder(body)
    outcome = await Reconciler().finalize(Resource.from_body(body), cloud, recorder, recorder)
    return outcome, recorder


async def test_delete_policy_deletes_the_image() -> None:
    cloud, body = MemoryCloud(), manifest()
    await reconcile(body, cloud)
    outcome, recorder = await finalize(body, cloud)
    assert outcome.result is Result.DELETED
    assert cloud.images == {}
    assert cloud.count("delete") == 1
    assert "ImageDeleted" in recorder.reasons()


async def test_retain_policy_leaves_the_image() -> None:
    cloud, body = MemoryCloud(), manifest(deletionPolicy="Retain")
    await reconcile(body, cloud)
    cloud.calls.clear()
    outcome, _ = await finalize(body, cloud)
    assert outcome.result is Result.RETAINED
    assert cloud.calls == []
    assert len(cloud.images) == 1


async def test_image_already_gone_releases_at_once() -> None:
    cloud, body = MemoryCloud(), manifest()
    await reconcile(body, cloud)
    cloud.images.clear()
    outcome, _ = await finalize(body, cloud)
    assert outcome.result is Result.DELETED


async def test_delete_waits_out_a_running_copy() -> None:
    cloud, body = MemoryCloud(instant=False), manifest()
    recorder = Recorder(body)

    async def stop_after_first_write(patch: dict[str, Any]) -> None:
        await recorder(patch)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await Reconciler().reconcile(Resource.from_body(body), cloud, stop_after_first_write, recorder)
    outcome, _ = await finalize(body, cloud)
    assert outcome.result is Result.DELETED
    assert cloud.images == {}
    names = [name for name, _ in cloud.calls]
    assert names.index("follow_operation") < names.index("delete")


async def test_delete_finds_an_unrecorded_copy() -> None:
    cloud, body = MemoryCloud(), manifest()
    cloud.add_image("analysts-base", naming.ownership_labels(UID))
    outcome, _ = await finalize(body, cloud)
    assert outcome.result is Result.DELETED
    assert cloud.images == {}


async def test_delete_never_touches_a_foreign_image() -> None:
    cloud, body = MemoryCloud(), manifest()
    foreign = cloud.add_image("analysts-base", {"team": "other"})
    outcome, _ = await finalize(body, cloud)
    assert outcome.result is Result.DELETED
    assert foreign.id in cloud.images


async def test_delete_outage_is_retried_not_released() -> None:
    cloud, body = MemoryCloud(), manifest()
    await reconcile(body, cloud)
    cloud.errors["delete"] = [CloudError(Code.UNAVAILABLE, "down")]
    outcome, _ = await finalize(body, cloud)
    assert outcome.result is Result.TRANSIENT_ERROR
    outcome, _ = await finalize(body, cloud)
    assert outcome.result is Result.DELETED


async def test_adopted_image_still_creating_is_awaited() -> None:
    cloud = MemoryCloud()
    image = cloud.add_image("analysts-base", naming.ownership_labels(UID), status=ImageStatus.CREATING)
    polls = 0

    async def no_sleep(_: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 2:
            cloud.images[image.id] = cloud.images[image.id].__class__(
                **{**cloud.images[image.id].__dict__, "status": ImageStatus.ACTIVE}
            )

    body = manifest()
    recorder = Recorder(body)
    outcome = await Reconciler(sleep=no_sleep).reconcile(Resource.from_body(body), cloud, recorder, recorder)
    assert outcome.result is Result.READY
    assert polls == 2
