"""Idempotency-Key: a repeat returns the first operation and starts nothing (unless switched off)."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2_grpc as service_grpc
from yandex.cloud.operation import operation_pb2

from desktop_image_operator_dev.fakecloud import FakeCloud
from tests.support.clocks import ManualClock

from .helpers import IMAGES, Metadata, assert_rest_error, ok_json


async def _images(http: httpx.AsyncClient) -> list[dict[str, object]]:
    images: list[dict[str, object]] = (await http.get("/fake/images")).json()["images"]
    return images


async def test_same_key_same_operation_one_image(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    headers = {**auth, "Idempotency-Key": "0b9e7a52-5f7c-4a55-9f3e-1d2c3b4a5f60"}
    body = {"desktopId": cloud.stopped_desktop_id, "name": "once"}
    first = (await http.post(f"{IMAGES}:copyFromDesktop", json=body, headers=headers)).json()
    clock.advance(3)
    second = await http.post(f"{IMAGES}:copyFromDesktop", json=body, headers=headers)
    assert second.status_code == 200  # not ALREADY_EXISTS: it is the same call
    assert second.json()["id"] == first["id"]
    assert second.json()["metadata"] == first["metadata"]
    assert len(await _images(http)) == 1
    clock.advance(10)
    third = (await http.post(f"{IMAGES}:copyFromDesktop", json=body, headers=headers)).json()
    assert third["id"] == first["id"]
    assert third["done"] is True  # the repeat shows the operation as it is now
    log = (await http.get("/fake/requests", params={"method": "DesktopImageService.CopyFromDesktop"})).json()
    assert [entry["idempotencyKey"] for entry in log["requests"]] == [headers["Idempotency-Key"]] * 3
    assert {entry["operationId"] for entry in log["requests"]} == {first["id"]}


async def test_other_key_or_no_key_starts_a_new_operation(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"folderId": cloud.folder_id, "imageId": cloud.compute_image_id, "name": "one"}
    first = (await http.post(f"{IMAGES}:copy", json=body, headers={**auth, "Idempotency-Key": "k1"})).json()
    other = await http.post(
        f"{IMAGES}:copy", json={**body, "name": "two"}, headers={**auth, "Idempotency-Key": "k2"}
    )
    assert other.json()["id"] != first["id"]
    # The key is scoped to the method: the same key on CopyFromDesktop is a different call.
    from_desktop = await http.post(
        f"{IMAGES}:copyFromDesktop",
        json={"desktopId": cloud.stopped_desktop_id, "name": "three"},
        headers={**auth, "Idempotency-Key": "k1"},
    )
    assert from_desktop.json()["id"] != first["id"]
    assert len(await _images(http)) == 3


async def test_key_is_scoped_to_the_principal(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    other_key = cloud.create_service_account("other")
    other_auth = {"Authorization": f"Bearer {cloud.issue_token(other_key['service_account_id'])}"}
    body = {"folderId": cloud.folder_id, "imageId": cloud.compute_image_id}
    first = await http.post(
        f"{IMAGES}:copy", json={**body, "name": "a"}, headers={**auth, "Idempotency-Key": "k"}
    )
    second = await http.post(
        f"{IMAGES}:copy", json={**body, "name": "b"}, headers={**other_auth, "Idempotency-Key": "k"}
    )
    assert second.json()["id"] != first.json()["id"]
    assert second.json()["createdBy"] == other_key["service_account_id"]


async def test_update_and_delete_honour_the_key(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    copy = (
        await http.post(
            f"{IMAGES}:copyFromDesktop",
            json={"desktopId": cloud.stopped_desktop_id, "name": "i"},
            headers=auth,
        )
    ).json()
    image_id = copy["metadata"]["imageId"]
    clock.advance(10)
    headers = {**auth, "Idempotency-Key": "update-1"}
    update = {"updateMask": "description", "description": "d"}
    first = (await http.patch(f"{IMAGES}/{image_id}", json=update, headers=headers)).json()
    # Without the key the image is busy; with it the first operation comes back.
    second = await http.patch(f"{IMAGES}/{image_id}", json=update, headers=headers)
    assert second.status_code == 200
    assert second.json()["id"] == first["id"]
    clock.advance(2)
    headers = {**auth, "Idempotency-Key": "delete-1"}
    delete = (await http.delete(f"{IMAGES}/{image_id}", headers=headers)).json()
    clock.advance(2)
    again = await http.delete(f"{IMAGES}/{image_id}", headers=headers)
    assert again.status_code == 200  # the image is gone, yet the repeat answers the finished operation
    assert again.json()["id"] == delete["id"]
    assert again.json()["done"] is True


async def test_a_refused_call_records_no_key(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    headers = {**auth, "Idempotency-Key": "k"}
    refused = await http.post(
        f"{IMAGES}:copyFromDesktop",
        json={"desktopId": cloud.running_desktop_id, "name": "x"},
        headers=headers,
    )
    assert refused.status_code == 400
    await http.post(f"/fake/desktops/{cloud.running_desktop_id}", json={"status": "STOPPED"})
    accepted = await http.post(
        f"{IMAGES}:copyFromDesktop",
        json={"desktopId": cloud.running_desktop_id, "name": "x"},
        headers=headers,
    )
    assert accepted.status_code == 200
    # A new operation with its own image, not a replay of the refused call.
    assert [image["id"] for image in await _images(http)] == [accepted.json()["metadata"]["imageId"]]
    assert accepted.json()["done"] is False


async def test_keys_can_be_ignored_and_the_switch_survives_reset(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    assert (await http.get("/fake/config")).json()["honorIdempotency"] is True
    changed = await http.post("/fake/config", json={"honorIdempotency": False})
    assert changed.json()["honorIdempotency"] is False
    headers = {**auth, "Idempotency-Key": "k-ignored"}
    body = {"folderId": cloud.folder_id, "imageId": cloud.compute_image_id, "name": "taken"}
    first = await http.post(f"{IMAGES}:copy", json=body, headers=headers)
    assert first.status_code == 200
    # The repeat does new work: the name is taken now.
    assert_rest_error(await http.post(f"{IMAGES}:copy", json=body, headers=headers), 409, 6, "taken")
    # A new name with the same key starts a second operation instead of replaying the first.
    other = await http.post(f"{IMAGES}:copy", json={**body, "name": "other"}, headers=headers)
    assert other.json()["id"] != first.json()["id"]
    assert len(await _images(http)) == 2
    log = (await http.get("/fake/requests", params={"method": "DesktopImageService.Copy"})).json()["requests"]
    assert [(entry["code"], entry["idempotencyKey"]) for entry in log] == [
        ("OK", "k-ignored"),
        ("ALREADY_EXISTS", "k-ignored"),
        ("OK", "k-ignored"),
    ]
    assert (await http.post("/fake/reset")).status_code == 200
    assert (await http.get("/fake/config")).json()["honorIdempotency"] is False
    for bad in ({"honorIdempotency": "no"}, {"honorIdempotency": 0}, {"honorIdempotency": None}):
        assert (await http.post("/fake/config", json=bad)).status_code == 400
    # Back on, keys replay again.
    await http.post("/fake/config", json={"honorIdempotency": True})
    again = (await http.post(f"{IMAGES}:copy", json=body, headers=headers)).json()
    assert (await http.post(f"{IMAGES}:copy", json=body, headers=headers)).json()["id"] == again["id"]


async def test_ignored_keys_over_grpc(
    cloud: FakeCloud,
    http: httpx.AsyncClient,
    channel: grpc.aio.Channel,
    grpc_auth: Metadata,
) -> None:
    await http.post("/fake/config", json={"honorIdempotency": False})
    images = service_grpc.DesktopImageServiceStub(channel)
    request = service_pb2.CopyFromDesktopRequest(desktop_id=cloud.stopped_desktop_id, name="grpc-once")
    metadata = (*grpc_auth, ("idempotency-key", "k-grpc"))
    await images.CopyFromDesktop(request, metadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await images.CopyFromDesktop(request, metadata=metadata)
    assert caught.value.code() is grpc.StatusCode.ALREADY_EXISTS
    log = (await http.get("/fake/requests", params={"transport": "grpc"})).json()["requests"]
    assert [entry["idempotencyKey"] for entry in log] == ["k-grpc", "k-grpc"]


async def _active_image(
    http: httpx.AsyncClient, auth: dict[str, str], desktop_id: str, clock: ManualClock
) -> str:
    copy = await http.post(
        f"{IMAGES}:copyFromDesktop", json={"desktopId": desktop_id, "name": "i"}, headers=auth
    )
    clock.advance(10)
    image_id: str = copy.json()["metadata"]["imageId"]
    return image_id


async def _fail_next_operation(http: httpx.AsyncClient, method: str) -> None:
    rule = {"method": method, "failOperation": 1, "code": "INTERNAL", "message": "storage hiccup"}
    assert (await http.post("/fake/faults", json=rule)).status_code == 201


async def _fault_spent_once(http: httpx.AsyncClient) -> None:
    (rule,) = (await http.get("/fake/faults")).json()["faults"]
    assert (rule["remaining"], rule["fired"]) == (0, 1)


@pytest.mark.parametrize("method", ["DesktopImageService.Update", "DesktopImageService.Delete"])
async def test_a_failed_update_or_delete_is_replayed_by_its_key_and_a_new_key_starts_over(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock, method: str
) -> None:
    image_id = await _active_image(http, auth, cloud.stopped_desktop_id, clock)
    await _fail_next_operation(http, method)

    async def send(key: str) -> dict[str, Any]:
        headers = {**auth, "Idempotency-Key": key}
        if method == "DesktopImageService.Update":
            body = {"updateMask": "description", "description": "new"}
            return ok_json(await http.patch(f"{IMAGES}/{image_id}", json=body, headers=headers))
        return ok_json(await http.delete(f"{IMAGES}/{image_id}", headers=headers))

    failed = await send("attempt-1")
    clock.advance(2)
    repeated = await send("attempt-1")
    assert repeated["id"] == failed["id"]
    assert (repeated["done"], repeated["error"]) == (True, {"code": 13, "message": "storage hiccup"})
    image = ok_json(await http.get(f"{IMAGES}/{image_id}", headers=auth))
    assert (image["status"], image.get("description")) == ("ACTIVE", None)  # nothing was applied
    retried = await send("attempt-2")
    assert retried["id"] != failed["id"]
    clock.advance(2)
    done = ok_json(await http.get(f"/operations/{retried['id']}", headers=auth))
    assert done["done"] is True
    assert "error" not in done
    after = await http.get(f"{IMAGES}/{image_id}", headers=auth)
    if method == "DesktopImageService.Update":
        assert after.json()["description"] == "new"
    else:
        assert after.status_code == 404
    await _fault_spent_once(http)
    log = (await http.get("/fake/requests", params={"method": method})).json()["requests"]
    assert [entry["operationId"] for entry in log] == [failed["id"], failed["id"], retried["id"]]


@pytest.mark.parametrize("method", ["DesktopImageService.Update", "DesktopImageService.Delete"])
async def test_a_failed_update_or_delete_is_replayed_by_its_key_over_grpc(
    cloud: FakeCloud,
    http: httpx.AsyncClient,
    auth: dict[str, str],
    channel: grpc.aio.Channel,
    grpc_auth: Metadata,
    clock: ManualClock,
    method: str,
) -> None:
    image_id = await _active_image(http, auth, cloud.stopped_desktop_id, clock)
    await _fail_next_operation(http, method)
    images = service_grpc.DesktopImageServiceStub(channel)

    async def send(key: str) -> operation_pb2.Operation:
        metadata = (*grpc_auth, ("idempotency-key", key))
        if method == "DesktopImageService.Update":
            mask = field_mask_pb2.FieldMask(paths=["description"])
            request = service_pb2.UpdateDesktopImageRequest(
                image_id=image_id, update_mask=mask, description="new"
            )
            updated: operation_pb2.Operation = await images.Update(request, metadata=metadata)
            return updated
        deleted: operation_pb2.Operation = await images.Delete(
            service_pb2.DeleteDesktopImageRequest(image_id=image_id), metadata=metadata
        )
        return deleted

    failed = await send("attempt-1")
    clock.advance(2)
    repeated = await send("attempt-1")
    assert repeated.id == failed.id
    assert repeated.done
    assert (repeated.error.code, repeated.error.message) == (13, "storage hiccup")
    retried = await send("attempt-2")
    assert retried.id != failed.id
    clock.advance(2)
    again = await send("attempt-2")
    assert again.done
    assert again.WhichOneof("result") == "response"
    await _fault_spent_once(http)
