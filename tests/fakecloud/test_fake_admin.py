"""The admin API under /fake/."""

from __future__ import annotations

import grpc
import httpx
from google.protobuf import field_mask_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2_grpc as service_grpc

from desktop_image_operator_dev.fakecloud import FakeCloud, seeds
from tests.support.clocks import ManualClock

from .helpers import (
    IMAGES,
    Metadata,
    assert_quota_error,
    assert_rest_error,
    copy_from_desktop,
    get_image,
)


async def test_health_endpoints_and_key(cloud: FakeCloud, http: httpx.AsyncClient) -> None:
    assert (await http.get("/fake/health")).json() == {"ok": True}
    endpoints = (await http.get("/fake/endpoints")).json()
    assert endpoints == cloud.endpoints()
    assert endpoints["grpc"] == f"127.0.0.1:{cloud.grpc_port}"
    assert endpoints["iamTokens"] == f"http://127.0.0.1:{cloud.port}/iam/v1/tokens"
    assert (await http.get("/fake/key")).json() == cloud.authorized_key()


async def test_requests_log_and_filters(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await http.get(f"{IMAGES}/nosuch", headers={**auth, "X-Request-Id": "req-1"})
    await http.get(IMAGES, params={"folderId": cloud.folder_id}, headers=auth)
    entries = (await http.get("/fake/requests")).json()["requests"]
    assert len(entries) == 2
    first = entries[0]
    assert set(first) == {
        "seq",
        "time",
        "transport",
        "method",
        "code",
        "requestId",
        "principal",
        "idempotencyKey",
        "operationId",
        "durationMs",
        "dropped",
        "fault",
    }
    assert first["method"] == "DesktopImageService.Get"
    assert first["code"] == "NOT_FOUND"
    assert first["transport"] == "rest"
    assert first["requestId"] == "req-1"
    assert first["principal"] == cloud.service_account_id
    assert first["time"].endswith("Z")
    only_list = (await http.get("/fake/requests", params={"method": "DesktopImageService.List"})).json()[
        "requests"
    ]
    assert [entry["code"] for entry in only_list] == ["OK"]
    assert (await http.get("/fake/requests", params={"code": "NOT_FOUND"})).json()["requests"] == [first]
    after = (await http.get("/fake/requests", params={"after": first["seq"]})).json()["requests"]
    assert after == only_list
    assert (await http.get("/fake/requests", params={"transport": "grpc"})).json()["requests"] == []
    assert (await http.delete("/fake/requests")).json() == {"deleted": 2}
    assert (await http.get("/fake/requests")).json() == {"requests": []}


async def test_request_log_is_bounded(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    assert (await http.post("/fake/config", json={"requestLogSize": 3})).status_code == 200
    for _ in range(5):
        await http.get(f"{IMAGES}/nosuch", headers=auth)
    entries = (await http.get("/fake/requests")).json()["requests"]
    assert [entry["seq"] for entry in entries] == [3, 4, 5]


async def test_stop_a_running_desktop_then_copy(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    desktops = {desktop["id"]: desktop for desktop in (await http.get("/fake/desktops")).json()["desktops"]}
    assert desktops[cloud.running_desktop_id]["status"] == "ACTIVE"
    assert desktops[cloud.stopped_desktop_id]["status"] == "STOPPED"
    assert desktops[cloud.stopped_desktop_id]["storageSize"] == 12 << 30  # admin JSON uses plain numbers
    changed = await http.post(f"/fake/desktops/{cloud.running_desktop_id}", json={"status": "STOPPED"})
    assert changed.json()["status"] == "STOPPED"
    await copy_from_desktop(http, auth, cloud.running_desktop_id, "now-possible")
    assert (
        await http.post(f"/fake/desktops/{cloud.running_desktop_id}", json={"status": "BROKEN"})
    ).status_code == 400
    assert (await http.post("/fake/desktops/nosuch", json={"status": "STOPPED"})).status_code == 404


async def test_add_sources_and_folders(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    folder = (await http.post("/fake/folders", json={"name": "bench"})).json()
    assert folder["cloudId"] not in {seeds.CLOUD_ID, seeds.OTHER_CLOUD_ID}  # a new cloud with its own quota
    listed = (await http.get("/fake/folders")).json()
    assert folder in listed["folders"]
    assert folder["cloudId"] in [item["id"] for item in listed["clouds"]]
    desktop = (await http.post("/fake/desktops", json={"folderId": folder["id"], "storageSize": 5})).json()
    assert desktop["status"] == "STOPPED"
    compute = (
        await http.post("/fake/compute-images", json={"id": "fd8custom00000000001", "minDiskSize": 7})
    ).json()
    assert compute["id"] in [
        item["id"] for item in (await http.get("/fake/compute-images")).json()["computeImages"]
    ]
    operation = await copy_from_desktop(http, auth, desktop["id"], "custom")
    image = await get_image(http, auth, operation["metadata"]["imageId"])
    assert image["folderId"] == folder["id"]
    assert image["storageSize"] == "5"
    assert (await http.post("/fake/desktops", json={"folderId": "nosuch"})).status_code == 404


async def test_images_and_operations_views(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "seen", labels={"uid": "1"})
    images = (await http.get("/fake/images")).json()["images"]
    assert images[0]["status"] == "CREATING"
    assert images[0]["storageSize"] == str(12 << 30)  # the API's own JSON
    clock.advance(10)
    assert (await http.get("/fake/images")).json()["images"][0]["status"] == "ACTIVE"
    assert (await http.get("/fake/images", params={"folderId": cloud.second_folder_id})).json() == {
        "images": []
    }
    operations = (await http.get("/fake/operations")).json()["operations"]
    assert [item["id"] for item in operations] == [operation["id"]]
    assert operations[0]["done"] is True


async def test_drift_behind_the_api(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "drifting")
    image_id = operation["metadata"]["imageId"]
    clock.advance(10)
    changed = await http.post(
        f"/fake/images/{image_id}", json={"labels": {"x": "y"}, "description": "edited"}
    )
    assert changed.status_code == 200
    assert changed.json()["labels"] == {"x": "y"}
    assert (await get_image(http, auth, image_id))["description"] == "edited"
    assert (await http.post(f"/fake/images/{image_id}", json={"status": "NOPE"})).status_code == 400
    assert (await http.delete(f"/fake/images/{image_id}")).json() == {"deleted": image_id}
    assert_rest_error(await http.get(f"{IMAGES}/{image_id}", headers=auth), 404, 5)
    assert (await http.delete(f"/fake/images/{image_id}")).status_code == 404


async def test_config_at_run_time(cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    config = (await http.get("/fake/config")).json()
    assert config["copySeconds"] == 10.0
    assert config["imageQuota"] == 8
    changed = (await http.post("/fake/config", json={"copySeconds": 0, "imageQuota": 1})).json()
    assert changed["copySeconds"] == 0
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "instant")
    assert operation["done"] is True
    response = await http.post(
        f"{IMAGES}:copyFromDesktop",
        json={"desktopId": cloud.stopped_desktop_id, "name": "second"},
        headers=auth,
    )
    assert_quota_error(response, "vdi.desktopImages.count", seeds.CLOUD_ID, 1)
    for bad in (
        {"copySeconds": -1},
        {"nope": 1},
        {"imageQuota": 1.5},
        {"copySeconds": "fast"},
        {"requestLogSize": 0},
    ):
        assert (await http.post("/fake/config", json=bad)).status_code == 400
    assert (await http.get("/fake/config")).json() == changed


async def test_service_accounts_and_plain_tokens(cloud: FakeCloud, http: httpx.AsyncClient) -> None:
    key = (await http.post("/fake/service-accounts", json={"name": "second"})).json()
    accounts = (await http.get("/fake/service-accounts")).json()["serviceAccounts"]
    assert {account["id"] for account in accounts} == {cloud.service_account_id, key["service_account_id"]}
    issued = (await http.post("/fake/tokens", json={"serviceAccountId": key["service_account_id"]})).json()
    headers = {"Authorization": f"Bearer {issued['iamToken']}"}
    assert (await http.get(IMAGES, params={"folderId": cloud.folder_id}, headers=headers)).status_code == 200
    default = (await http.post("/fake/tokens")).json()
    assert default["expiresAt"].endswith("Z")
    assert (await http.post("/fake/tokens", json={"serviceAccountId": "nosuch"})).status_code == 404


async def test_reset_forgets_work_and_keeps_identities(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    headers = {**auth, "Idempotency-Key": "before-reset"}
    body = {"desktopId": cloud.stopped_desktop_id, "name": "x"}
    first = (await http.post(f"{IMAGES}:copyFromDesktop", json=body, headers=headers)).json()
    await http.post(f"/fake/desktops/{cloud.running_desktop_id}", json={"status": "STOPPED"})
    await http.post(
        "/fake/faults", json={"method": "DesktopImageService.Get", "code": "INTERNAL", "count": 5}
    )
    await http.post("/fake/folders", json={"id": "b1gextra000000000001"})
    assert (await http.post("/fake/reset")).json() == {"reset": True}
    for path, key in (
        ("/fake/images", "images"),
        ("/fake/operations", "operations"),
        ("/fake/faults", "faults"),
    ):
        assert (await http.get(path)).json() == {key: []}
    assert (await http.get("/fake/requests")).json() == {"requests": []}
    desktops = {desktop["id"]: desktop for desktop in (await http.get("/fake/desktops")).json()["desktops"]}
    assert desktops[cloud.running_desktop_id]["status"] == "ACTIVE"  # seeds are back as they started
    assert "b1gextra000000000001" not in [
        f["id"] for f in (await http.get("/fake/folders")).json()["folders"]
    ]
    # The token still works, and the idempotency key is forgotten.
    second = await http.post(f"{IMAGES}:copyFromDesktop", json=body, headers=headers)
    assert second.status_code == 200
    assert second.json()["id"] != first["id"]
    assert (await http.get("/fake/key")).json()["id"] == cloud.key_id


async def test_admin_errors_are_json(http: httpx.AsyncClient) -> None:
    response = await http.post("/fake/faults", content=b"[1, 2")
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    response = await http.post("/fake/faults", json=[1])
    assert response.status_code == 400
    assert (await http.get("/fake/requests", params={"after": "x"})).status_code == 400


async def test_update_entries_carry_the_mask(
    cloud: FakeCloud,
    http: httpx.AsyncClient,
    auth: dict[str, str],
    clock: ManualClock,
    channel: grpc.aio.Channel,
    grpc_auth: Metadata,
) -> None:
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "masked")
    image_id = operation["metadata"]["imageId"]
    clock.advance(10)
    path = f"{IMAGES}/{image_id}"
    await http.patch(path, json={"updateMask": "labels,description", "labels": {}}, headers=auth)
    clock.advance(2)
    await http.patch(path, json={"description": "all fields"}, headers=auth)  # no mask at all
    clock.advance(2)
    await http.patch(path, json={"updateMask": "folderId"}, headers=auth)  # refused, still logged
    await http.post(
        "/fake/faults", json={"method": "DesktopImageService.Update", "code": "UNAVAILABLE", "count": 1}
    )
    await http.patch(
        path, json={"updateMask": "name", "name": "n"}, headers=auth
    )  # refused before the handler
    await http.patch(path, json={"updateMask": 7}, headers=auth)  # unreadable
    images = service_grpc.DesktopImageServiceStub(channel)
    await images.Update(
        service_pb2.UpdateDesktopImageRequest(
            image_id=image_id, update_mask=field_mask_pb2.FieldMask(paths=["name"]), name="via-grpc"
        ),
        metadata=grpc_auth,
    )
    entries = (await http.get("/fake/requests", params={"method": "DesktopImageService.Update"})).json()
    assert [(e["transport"], e["code"], e["updateMask"]) for e in entries["requests"]] == [
        ("rest", "OK", ["labels", "description"]),
        ("rest", "OK", []),
        ("rest", "INVALID_ARGUMENT", ["folder_id"]),
        ("rest", "UNAVAILABLE", ["name"]),
        ("rest", "INVALID_ARGUMENT", None),
        ("grpc", "OK", ["name"]),
    ]
    # Other methods' entries have no such field.
    others = (await http.get("/fake/requests")).json()["requests"]
    assert all("updateMask" not in e for e in others if e["method"] != "DesktopImageService.Update")
