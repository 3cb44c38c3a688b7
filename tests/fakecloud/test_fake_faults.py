"""Fault injection: errors by count and rate, latency, failed operations, dropped responses."""

from __future__ import annotations

import time
from typing import Any

import grpc
import httpx
import pytest
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2_grpc as service_grpc

from desktop_image_operator_dev.fakecloud import FakeCloud
from tests.support.clocks import ManualClock

from .helpers import (
    IMAGES,
    METADATA_TOKEN,
    TOKENS,
    Metadata,
    assert_rest_error,
    copy_from_desktop,
    get_image,
    get_operation,
    make_jwt,
    ok_json,
)


async def _add_fault(http: httpx.AsyncClient, **rule: Any) -> dict[str, Any]:
    return ok_json(await http.post("/fake/faults", json=rule), 201)


async def _list_status(http: httpx.AsyncClient, auth: dict[str, str], folder_id: str) -> int:
    return (await http.get(IMAGES, params={"folderId": folder_id}, headers=auth)).status_code


async def test_error_for_the_first_n_calls(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    rule = await _add_fault(http, method="DesktopImageService.List", code="UNAVAILABLE", count=2)
    assert rule["remaining"] == 2
    first = await http.get(IMAGES, params={"folderId": cloud.folder_id}, headers=auth)
    assert_rest_error(first, 503, 14)
    assert await _list_status(http, auth, cloud.folder_id) == 503
    assert await _list_status(http, auth, cloud.folder_id) == 200
    # Other methods are not affected.
    assert (await http.get(f"{IMAGES}/nosuch", headers=auth)).status_code == 404
    faults = (await http.get("/fake/faults")).json()["faults"]
    assert faults[0]["remaining"] == 0
    assert faults[0]["fired"] == 2
    log = (await http.get("/fake/requests", params={"method": "DesktopImageService.List"})).json()["requests"]
    assert [(entry["code"], entry["fault"]) for entry in log] == [
        ("UNAVAILABLE", "error"),
        ("UNAVAILABLE", "error"),
        ("OK", None),
    ]


async def test_error_code_by_number_with_message(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _add_fault(http, method="DesktopImageService.CopyFromDesktop", code=8, message="slow down", count=1)
    response = await http.post(
        f"{IMAGES}:copyFromDesktop", json={"desktopId": cloud.stopped_desktop_id, "name": "x"}, headers=auth
    )
    assert_rest_error(response, 429, 8, "slow down")
    assert (await http.get("/fake/images")).json()["images"] == []  # no work was done


async def test_error_by_rate(cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    rule = await _add_fault(http, method="DesktopImageService.List", code="INTERNAL", rate=0.5, seed=7)
    statuses = [await _list_status(http, auth, cloud.folder_id) for _ in range(200)]
    failed = statuses.count(500)
    assert failed + statuses.count(200) == 200
    assert 60 <= failed <= 140
    await http.delete(f"/fake/faults/{rule['id']}")
    await _add_fault(http, method="*", code="INTERNAL", rate=0.0)
    assert {await _list_status(http, auth, cloud.folder_id) for _ in range(20)} == {200}
    await http.delete("/fake/faults")
    await _add_fault(http, method="DesktopImageService.*", code="INTERNAL", rate=1.0)
    assert {await _list_status(http, auth, cloud.folder_id) for _ in range(20)} == {500}


async def test_same_seed_same_sequence(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    runs = []
    for _ in range(2):
        await http.delete("/fake/faults")
        await _add_fault(http, method="DesktopImageService.List", code="INTERNAL", rate=0.3, seed=42)
        runs.append([await _list_status(http, auth, cloud.folder_id) for _ in range(30)])
    assert runs[0] == runs[1]


async def test_latency(cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await _add_fault(http, method="DesktopImageService.List", latencyMs=300, count=1)
    started = time.perf_counter()
    assert await _list_status(http, auth, cloud.folder_id) == 200
    assert time.perf_counter() - started >= 0.3
    assert await _list_status(http, auth, cloud.folder_id) == 200
    slow, fast = (await http.get("/fake/requests")).json()["requests"]
    assert slow["fault"] == "latency"
    assert slow["durationMs"] >= 300
    assert fast["fault"] is None
    assert fast["durationMs"] < 300


async def test_fail_operation(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    await _add_fault(
        http,
        method="DesktopImageService.CopyFromDesktop",
        failOperation=1,
        code="INTERNAL",
        message="disk copy failed",
    )
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "fails")
    image_id = operation["metadata"]["imageId"]
    assert operation["done"] is False
    assert (await get_image(http, auth, image_id))["status"] == "CREATING"
    clock.advance(10)
    done = await get_operation(http, auth, operation["id"])
    assert done["done"] is True
    assert done["error"] == {"code": 13, "message": "disk copy failed"}
    assert "response" not in done
    assert (await http.get(f"{IMAGES}/{image_id}", headers=auth)).status_code == 404
    # Only the next one failed.
    second = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "fails")
    clock.advance(10)
    assert "response" in await get_operation(http, auth, second["id"])


async def test_fail_operation_of_a_delete_keeps_the_image(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "stays")
    image_id = operation["metadata"]["imageId"]
    clock.advance(10)
    await _add_fault(http, method="DesktopImageService.Delete", failOperation=True, count=1)
    delete = (await http.delete(f"{IMAGES}/{image_id}", headers=auth)).json()
    clock.advance(2)
    done = await get_operation(http, auth, delete["id"])
    assert done["error"]["code"] == 13
    assert (await get_image(http, auth, image_id))["status"] == "ACTIVE"


async def test_drop_response_over_rest_does_the_work(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _add_fault(http, method="DesktopImageService.CopyFromDesktop", dropResponse=1)
    headers = {**auth, "Idempotency-Key": "retry-me"}
    body = {"desktopId": cloud.stopped_desktop_id, "name": "dropped"}
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post(f"{IMAGES}:copyFromDesktop", json=body, headers=headers)
    images = (await http.get("/fake/images")).json()["images"]
    assert [image["name"] for image in images] == ["dropped"]
    # The client retries with the same key and learns about the operation it started.
    retried = await http.post(f"{IMAGES}:copyFromDesktop", json=body, headers=headers)
    assert retried.status_code == 200
    assert retried.json()["metadata"]["imageId"] == images[0]["id"]
    log = (await http.get("/fake/requests", params={"method": "DesktopImageService.CopyFromDesktop"})).json()
    assert [(entry["dropped"], entry["operationId"]) for entry in log["requests"]] == [
        (True, retried.json()["id"]),
        (False, retried.json()["id"]),
    ]


async def test_drop_response_over_grpc_is_unavailable(
    cloud: FakeCloud, http: httpx.AsyncClient, channel: grpc.aio.Channel, grpc_auth: Metadata
) -> None:
    await _add_fault(http, method="DesktopImageService.Copy", transport="grpc", dropResponse=True, count=1)
    images = service_grpc.DesktopImageServiceStub(channel)
    request = service_pb2.CopyDesktopImageRequest(
        folder_id=cloud.folder_id, image_id=cloud.compute_image_id, name="g"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await images.Copy(request, metadata=grpc_auth)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len((await http.get("/fake/images")).json()["images"]) == 1


async def test_transport_filter(
    cloud: FakeCloud,
    http: httpx.AsyncClient,
    auth: dict[str, str],
    channel: grpc.aio.Channel,
    grpc_auth: Metadata,
) -> None:
    await _add_fault(http, method="*", transport="grpc", code="UNAVAILABLE")
    assert await _list_status(http, auth, cloud.folder_id) == 200
    images = service_grpc.DesktopImageServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await images.List(service_pb2.ListDesktopImagesRequest(folder_id=cloud.folder_id), metadata=grpc_auth)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_faults_on_the_token_endpoints(cloud: FakeCloud, http: httpx.AsyncClient) -> None:
    await _add_fault(http, method="IamTokenService.Create", code="UNAVAILABLE", count=1)
    await _add_fault(http, method="Metadata.Token", code="UNAVAILABLE", count=1)
    key = cloud.authorized_key()
    assert (await http.post(TOKENS, json={"jwt": make_jwt(key)})).status_code == 503
    assert (await http.post(TOKENS, json={"jwt": make_jwt(key)})).status_code == 200
    assert (await http.get(METADATA_TOKEN, headers={"Metadata-Flavor": "Google"})).status_code == 503
    assert (await http.get(METADATA_TOKEN, headers={"Metadata-Flavor": "Google"})).status_code == 200


@pytest.mark.parametrize(
    "rule",
    [
        {"method": "DesktopImageService.Nope", "code": "INTERNAL"},
        {"method": "*", "code": "NOPE"},
        {"method": "*", "code": 0},
        {"method": "*", "code": "INTERNAL", "rate": 1.5},
        {"method": "*", "code": "INTERNAL", "count": 0},
        {"method": "*"},
        {"method": "*", "dropResponse": True, "code": "INTERNAL"},
        {"method": "*", "dropResponse": True, "failOperation": True},
        {"method": "DesktopImageService.Get", "failOperation": True},
        {"method": "*", "latencyMs": -1},
        {"method": "*", "code": "INTERNAL", "surprise": 1},
    ],
)
async def test_invalid_rules_are_refused(http: httpx.AsyncClient, rule: dict[str, Any]) -> None:
    response = await http.post("/fake/faults", json=rule)
    assert response.status_code == 400
    assert response.json()["error"]


async def test_fault_listing_and_removal(http: httpx.AsyncClient) -> None:
    first = await _add_fault(http, method="*", latencyMs=1)
    second = await _add_fault(http, method="OperationService.Get", code=14, rate=0.25)
    assert second["code"] == "UNAVAILABLE"
    assert [rule["id"] for rule in (await http.get("/fake/faults")).json()["faults"]] == [
        first["id"],
        second["id"],
    ]
    assert (await http.delete(f"/fake/faults/{first['id']}")).json() == {"deleted": 1}
    assert (await http.delete(f"/fake/faults/{first['id']}")).status_code == 404
    assert (await http.delete("/fake/faults")).json() == {"deleted": 1}
    assert (await http.get("/fake/faults")).json() == {"faults": []}


async def test_a_refused_call_does_not_use_up_fail_operation_or_drop(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    await _add_fault(http, method="DesktopImageService.CopyFromDesktop", failOperation=1)
    await _add_fault(http, method="DesktopImageService.Get", dropResponse=1)
    refused = await http.post(
        f"{IMAGES}:copyFromDesktop", json={"desktopId": cloud.running_desktop_id, "name": "x"}, headers=auth
    )
    assert_rest_error(refused, 400, 9)
    # A failing Get answers its error; the drop waits for a Get that succeeds.
    assert_rest_error(await http.get(f"{IMAGES}/nosuch", headers=auth), 404, 5)
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "x")
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(f"{IMAGES}/{operation['metadata']['imageId']}", headers=auth)
    clock.advance(10)
    assert (await get_operation(http, auth, operation["id"]))["error"]["code"] == 13
    faults = (await http.get("/fake/faults")).json()["faults"]
    assert [(rule["remaining"], rule["fired"]) for rule in faults] == [(0, 1), (0, 1)]
    log = (await http.get("/fake/requests")).json()["requests"]
    assert [entry["fault"] for entry in log[:2]] == [None, None]
