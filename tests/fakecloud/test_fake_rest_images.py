"""The Cloud Desktop image API over REST: shapes, life cycle, and the cloud's rules."""

from __future__ import annotations

import httpx

from desktop_image_operator_dev.fakecloud import FakeCloud, FakeCloudConfig, seeds
from desktop_image_operator_dev.fakecloud.seeds import GIB
from tests.support.clocks import ManualClock

from .helpers import (
    IMAGES,
    assert_quota_error,
    assert_rest_error,
    copy_compute_image,
    copy_from_desktop,
    get_image,
    get_operation,
)


async def test_copy_from_desktop_life_cycle_and_json_mapping(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    operation = await copy_from_desktop(
        http, auth, cloud.stopped_desktop_id, "analysts-base", labels={"team": "a"}, description="base image"
    )
    assert operation["done"] is False
    assert operation["description"]
    assert operation["createdBy"] == cloud.service_account_id
    assert operation["createdAt"].endswith("Z")
    assert operation["modifiedAt"].endswith("Z")
    assert "error" not in operation
    assert "response" not in operation
    metadata = operation["metadata"]
    assert metadata["@type"] == "type.googleapis.com/yandex.cloud.clouddesktop.v1.api.CopyFromDesktopMetadata"
    image_id = metadata["imageId"]

    image = await get_image(http, auth, image_id)
    assert image["status"] == "CREATING"
    # int64 fields are JSON strings in the canonical mapping.
    assert image["storageSize"] == str(12 * GIB)
    assert image["minDiskSize"] == str(20 * GIB)
    assert image["folderId"] == cloud.folder_id  # defaults to the desktop's folder
    assert image["labels"] == {"team": "a"}
    assert image["description"] == "base image"
    assert image["name"] == "analysts-base"
    assert image["createdAt"].endswith("Z")

    clock.advance(9.9)
    assert (await get_operation(http, auth, operation["id"]))["done"] is False
    clock.advance(0.2)
    done = await get_operation(http, auth, operation["id"])
    assert done["done"] is True
    assert done["modifiedAt"] > done["createdAt"]
    response = done["response"]
    assert response["@type"] == "type.googleapis.com/yandex.cloud.clouddesktop.v1.api.DesktopImage"
    assert response["id"] == image_id
    assert response["status"] == "ACTIVE"
    assert response["storageSize"] == str(12 * GIB)
    assert (await get_image(http, auth, image_id))["status"] == "ACTIVE"


async def test_copy_from_compute_image(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    operation = await copy_compute_image(http, auth, cloud.second_folder_id, cloud.compute_image_id, "ubuntu")
    metadata = operation["metadata"]
    assert (
        metadata["@type"] == "type.googleapis.com/yandex.cloud.clouddesktop.v1.api.CopyDesktopImageMetadata"
    )
    image = await get_image(http, auth, metadata["imageId"])
    assert image["folderId"] == cloud.second_folder_id
    assert image["storageSize"] == str(8 * GIB)
    assert image["minDiskSize"] == str(20 * GIB)


async def test_copy_from_desktop_into_another_folder(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    operation = await copy_from_desktop(
        http, auth, cloud.stopped_desktop_id, "x", folderId=cloud.second_folder_id
    )
    image = await get_image(http, auth, operation["metadata"]["imageId"])
    assert image["folderId"] == cloud.second_folder_id


async def test_copy_from_desktop_without_name_is_allowed(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await http.post(
        f"{IMAGES}:copyFromDesktop", json={"desktopId": cloud.stopped_desktop_id}, headers=auth
    )
    assert response.status_code == 200
    image = await get_image(http, auth, response.json()["metadata"]["imageId"])
    assert "name" not in image


async def test_running_desktop_is_failed_precondition(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await http.post(
        f"{IMAGES}:copyFromDesktop", json={"desktopId": cloud.running_desktop_id, "name": "x"}, headers=auth
    )
    assert_rest_error(response, 400, 9, cloud.running_desktop_id, "ACTIVE")


async def test_unknown_sources_are_not_found(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await http.post(
        f"{IMAGES}:copyFromDesktop", json={"desktopId": "e3vnosuchdesktop0000", "name": "x"}, headers=auth
    )
    assert_rest_error(response, 404, 5, "e3vnosuchdesktop0000")
    response = await http.post(
        f"{IMAGES}:copy",
        json={"folderId": cloud.folder_id, "imageId": "fd8nosuchimage000000", "name": "x"},
        headers=auth,
    )
    assert_rest_error(response, 404, 5, "fd8nosuchimage000000")
    for method, path in (("GET", "nosuch"), ("PATCH", "nosuch"), ("DELETE", "nosuch")):
        response = await http.request(
            method, f"{IMAGES}/{path}", json={} if method == "PATCH" else None, headers=auth
        )
        assert_rest_error(response, 404, 5, "nosuch")


async def test_unknown_folder_is_permission_denied(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await http.post(
        f"{IMAGES}:copy",
        json={"folderId": "b1gnosuchfolder00000", "imageId": cloud.compute_image_id, "name": "x"},
        headers=auth,
    )
    assert_rest_error(response, 403, 7, "b1gnosuchfolder00000")
    response = await http.post(
        f"{IMAGES}:copyFromDesktop",
        json={"desktopId": cloud.stopped_desktop_id, "folderId": "b1gnosuchfolder00000"},
        headers=auth,
    )
    assert_rest_error(response, 403, 7)
    response = await http.get(IMAGES, params={"folderId": "b1gnosuchfolder00000"}, headers=auth)
    assert_rest_error(response, 403, 7)


async def test_name_is_unique_per_folder(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "same")
    response = await http.post(
        f"{IMAGES}:copy",
        json={"folderId": cloud.folder_id, "imageId": cloud.compute_image_id, "name": "same"},
        headers=auth,
    )
    assert_rest_error(response, 409, 6, "same")
    # Another folder may use the name.
    await copy_compute_image(http, auth, cloud.second_folder_id, cloud.compute_image_id, "same")


async def test_quota_of_images_per_cloud(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for index in range(8):
        folder = cloud.folder_id if index % 2 else cloud.second_folder_id  # both folders are in one cloud
        await copy_compute_image(http, auth, folder, cloud.compute_image_id, f"image-{index}")
    response = await http.post(
        f"{IMAGES}:copy",
        json={"folderId": cloud.folder_id, "imageId": cloud.compute_image_id, "name": "ninth"},
        headers=auth,
    )
    assert_quota_error(response, "vdi.desktopImages.count", seeds.CLOUD_ID, 8)
    # The quota is per cloud: a folder of another cloud still has room.
    await copy_compute_image(http, auth, cloud.other_cloud_folder_id, cloud.compute_image_id, "ninth")


async def test_quota_of_image_bytes_per_cloud(
    cloud: FakeCloud, config: FakeCloudConfig, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    config.image_size_quota = 100 * GIB
    await copy_compute_image(http, auth, cloud.folder_id, seeds.LARGE_COMPUTE_IMAGE_ID, "one")  # 48 GiB
    await copy_compute_image(http, auth, cloud.folder_id, seeds.LARGE_COMPUTE_IMAGE_ID, "two")  # 96 GiB
    response = await http.post(
        f"{IMAGES}:copy",
        json={"folderId": cloud.folder_id, "imageId": cloud.compute_image_id, "name": "three"},
        headers=auth,
    )
    assert_quota_error(response, "vdi.desktopImages.size", seeds.CLOUD_ID, 100 * GIB)


async def test_validation_names_the_field(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    base = {"folderId": cloud.folder_id, "imageId": cloud.compute_image_id, "name": "ok"}
    cases: list[tuple[dict[str, object], str]] = [
        ({**base, "name": "n" * 51}, "name"),
        ({k: v for k, v in base.items() if k != "folderId"}, "folder_id"),
        ({k: v for k, v in base.items() if k != "name"}, "name"),
        ({**base, "description": "d" * 1025}, "description"),
        ({**base, "labels": {"Team": "a"}}, "labels"),
        ({**base, "labels": {"team": "A"}}, "labels"),
        ({**base, "labels": {"k" * 64: "a"}}, "labels"),
        ({**base, "labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
        ({**base, "unknownField": 1}, "unknownField"),
        ({**base, "name": 5}, "name"),
    ]
    for body, field in cases:
        response = await http.post(f"{IMAGES}:copy", json=body, headers=auth)
        assert_rest_error(response, 400, 3, field)
    response = await http.post(f"{IMAGES}:copy", content=b"{not json", headers=auth)
    assert_rest_error(response, 400, 3)
    response = await http.post(f"{IMAGES}:copyFromDesktop", json={"name": "x"}, headers=auth)
    assert_rest_error(response, 400, 3, "desktop_id")
    # Nothing was created by the refused calls.
    listed = await http.get(IMAGES, params={"folderId": cloud.folder_id}, headers=auth)
    assert listed.json() == {}


async def test_labels_at_the_limits_are_accepted(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    labels = {f"k{i}": "v" * 63 for i in range(63)}
    labels["a" + "-" * 62] = ""
    await copy_compute_image(
        http, auth, cloud.folder_id, cloud.compute_image_id, "n" * 50, labels=labels, description="d" * 1024
    )


async def test_update_with_mask_changes_only_masked_fields(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    operation = await copy_from_desktop(
        http, auth, cloud.stopped_desktop_id, "before", labels={"a": "1"}, description="keep"
    )
    image_id = operation["metadata"]["imageId"]
    clock.advance(10)
    response = await http.patch(
        f"{IMAGES}/{image_id}",
        json={"updateMask": "name,labels", "name": "after", "labels": {"b": "2"}, "description": "ignored"},
        headers=auth,
    )
    assert response.status_code == 200, response.text
    update = response.json()
    assert update["metadata"] == {
        "@type": "type.googleapis.com/yandex.cloud.clouddesktop.v1.api.UpdateDesktopImageMetadata",
        "imageId": image_id,
    }
    assert update["done"] is False
    # Changes land when the operation ends.
    assert (await get_image(http, auth, image_id))["name"] == "before"
    clock.advance(2)
    done = await get_operation(http, auth, update["id"])
    assert done["done"] is True
    assert done["response"]["name"] == "after"
    image = await get_image(http, auth, image_id)
    assert image["name"] == "after"
    assert image["labels"] == {"b": "2"}
    assert image["description"] == "keep"
    assert image["status"] == "ACTIVE"


async def test_update_without_mask_overwrites_every_field(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    operation = await copy_from_desktop(
        http, auth, cloud.stopped_desktop_id, "before", labels={"a": "1"}, description="gone"
    )
    image_id = operation["metadata"]["imageId"]
    clock.advance(10)
    response = await http.patch(f"{IMAGES}/{image_id}", json={"name": "after"}, headers=auth)
    assert response.status_code == 200
    clock.advance(2)
    image = await get_image(http, auth, image_id)
    assert image["name"] == "after"
    assert "labels" not in image
    assert "description" not in image


async def test_update_mask_spellings_and_errors(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "img")
    image_id = operation["metadata"]["imageId"]
    # While the copy runs, the image cannot be changed.
    response = await http.patch(
        f"{IMAGES}/{image_id}", json={"updateMask": "name", "name": "x"}, headers=auth
    )
    assert_rest_error(response, 400, 9, "busy")
    clock.advance(10)
    response = await http.patch(f"{IMAGES}/{image_id}", json={"updateMask": "minDiskSize"}, headers=auth)
    assert_rest_error(response, 400, 3, "min_disk_size")
    response = await http.patch(
        f"{IMAGES}/{image_id}", json={"updateMask": "name", "name": "n" * 51}, headers=auth
    )
    assert_rest_error(response, 400, 3, "name")
    response = await http.patch(
        f"{IMAGES}/{image_id}",
        json={"updateMask": {"paths": ["description"]}, "description": "x"},
        headers=auth,
    )
    assert response.status_code == 200
    clock.advance(2)
    assert (await get_image(http, auth, image_id))["description"] == "x"


async def test_update_to_a_taken_name_conflicts(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "taken")
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "mine")
    clock.advance(10)
    image_id = operation["metadata"]["imageId"]
    response = await http.patch(
        f"{IMAGES}/{image_id}", json={"updateMask": "name", "name": "taken"}, headers=auth
    )
    assert_rest_error(response, 409, 6, "taken")


async def test_delete_life_cycle(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "doomed")
    image_id = operation["metadata"]["imageId"]
    response = await http.delete(f"{IMAGES}/{image_id}", headers=auth)
    assert_rest_error(response, 400, 9, "busy")  # a copy still running
    clock.advance(10)
    response = await http.delete(f"{IMAGES}/{image_id}", headers=auth)
    assert response.status_code == 200
    delete = response.json()
    assert delete["metadata"] == {
        "@type": "type.googleapis.com/yandex.cloud.clouddesktop.v1.api.DeleteDesktopImageMetadata",
        "imageId": image_id,
    }
    assert (await get_image(http, auth, image_id))["status"] == "DELETING"
    clock.advance(2)
    done = await get_operation(http, auth, delete["id"])
    assert done["done"] is True
    assert done["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    assert_rest_error(await http.get(f"{IMAGES}/{image_id}", headers=auth), 404, 5, image_id)


async def test_zero_second_operations_are_done_at_once(
    cloud: FakeCloud, config: FakeCloudConfig, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    config.copy_seconds = 0
    config.operation_seconds = 0
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "quick")
    assert operation["done"] is True
    assert operation["response"]["status"] == "ACTIVE"
    image_id = operation["metadata"]["imageId"]
    deleted = (await http.delete(f"{IMAGES}/{image_id}", headers=auth)).json()
    assert deleted["done"] is True
    assert (await http.get(f"{IMAGES}/{image_id}", headers=auth)).status_code == 404


async def test_request_id_is_echoed(cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await http.get(f"{IMAGES}/nosuch", headers={**auth, "X-Request-Id": "my-request-1"})
    body = assert_rest_error(response, 404, 5)
    assert body["details"][0]["requestId"] == "my-request-1"
    assert response.headers["x-request-id"] == "my-request-1"
    response = await http.get(
        IMAGES, params={"folderId": cloud.folder_id}, headers={**auth, "X-Request-Id": "r2"}
    )
    assert response.headers["x-request-id"] == "r2"
    assert response.headers["x-server-trace-id"]


async def test_unknown_path_answers_a_status(http: httpx.AsyncClient) -> None:
    response = await http.get("/cloud-desktop/v2/things")
    assert_rest_error(response, 404, 5)
