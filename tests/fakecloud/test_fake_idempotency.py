"""Idempotency-Key: a repeat returns the first operation and starts nothing."""

from __future__ import annotations

import httpx

from desktop_image_operator.fakecloud import FakeCloud

from .conftest import ManualClock
from .helpers import IMAGES


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
