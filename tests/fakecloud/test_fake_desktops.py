"""DesktopService.Get over REST and gRPC: a desktop's folder, the same auth, faults and log as the rest."""

from __future__ import annotations

import grpc
import httpx
import pytest
from yandex.cloud.clouddesktop.v1 import desktop_pb2, desktop_service_pb2, desktop_service_pb2_grpc

from desktop_image_operator_dev.fakecloud import FakeCloud, seeds
from tests.support.clocks import ManualClock

from .helpers import Metadata, assert_rest_error

DESKTOPS = "/cloud-desktop/v1/desktops"


async def test_get_answers_the_desktop_in_proto3_json(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await http.get(f"{DESKTOPS}/{cloud.stopped_desktop_id}", headers=auth)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": cloud.stopped_desktop_id,
        "folderId": cloud.folder_id,
        "createdAt": "2024-01-01T00:00:00Z",
        "status": "STOPPED",
        "name": "analyst-1",
    }
    assert response.headers["x-request-id"]
    other = (await http.get(f"{DESKTOPS}/{seeds.SECOND_FOLDER_DESKTOP_ID}", headers=auth)).json()
    assert other["folderId"] == cloud.second_folder_id
    running = (await http.get(f"{DESKTOPS}/{cloud.running_desktop_id}", headers=auth)).json()
    assert running["status"] == "ACTIVE"


async def test_admin_changes_show_through_get(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    added = (
        await http.post("/fake/desktops", json={"folderId": cloud.second_folder_id, "name": "new"})
    ).json()
    await http.post(f"/fake/desktops/{added['id']}", json={"status": "ACTIVE"})
    desktop = (await http.get(f"{DESKTOPS}/{added['id']}", headers=auth)).json()
    assert (desktop["folderId"], desktop["name"], desktop["status"]) == (
        cloud.second_folder_id,
        "new",
        "ACTIVE",
    )
    assert desktop["createdAt"] == added["createdAt"]
    assert added["createdAt"].endswith("Z")


async def test_get_refusals(cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert_rest_error(await http.get(f"{DESKTOPS}/e3vnosuchdesktop0001", headers=auth), 404, 5, "e3vnosuch")
    assert_rest_error(await http.get(f"{DESKTOPS}/{'x' * 51}", headers=auth), 400, 3, "desktop_id")
    assert_rest_error(await http.get(f"{DESKTOPS}/{cloud.stopped_desktop_id}"), 401, 16)
    entries = (await http.get("/fake/requests", params={"method": "DesktopService.Get"})).json()["requests"]
    assert [entry["code"] for entry in entries] == ["NOT_FOUND", "INVALID_ARGUMENT", "UNAUTHENTICATED"]
    assert {entry["transport"] for entry in entries} == {"rest"}


@pytest.mark.parametrize("method", ["DesktopService.Get", "DesktopService.*"])
async def test_faults_reach_get(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], method: str
) -> None:
    rule = await http.post("/fake/faults", json={"method": method, "code": "UNAVAILABLE", "count": 1})
    assert rule.status_code == 201, rule.text
    # A fault on the image service leaves desktops alone.
    await http.post("/fake/faults", json={"method": "DesktopImageService.*", "code": "INTERNAL"})
    assert_rest_error(await http.get(f"{DESKTOPS}/{cloud.stopped_desktop_id}", headers=auth), 503, 14)
    assert (await http.get(f"{DESKTOPS}/{cloud.stopped_desktop_id}", headers=auth)).status_code == 200
    entries = (await http.get("/fake/requests", params={"method": "DesktopService.Get"})).json()["requests"]
    assert [(entry["code"], entry["fault"]) for entry in entries] == [("UNAVAILABLE", "error"), ("OK", None)]


async def test_get_over_grpc(
    cloud: FakeCloud, channel: grpc.aio.Channel, grpc_auth: Metadata, http: httpx.AsyncClient
) -> None:
    desktops = desktop_service_pb2_grpc.DesktopServiceStub(channel)
    desktop = await desktops.Get(
        desktop_service_pb2.GetDesktopRequest(desktop_id=cloud.stopped_desktop_id),
        metadata=(*grpc_auth, ("x-request-id", "req-desk")),
    )
    assert desktop.folder_id == cloud.folder_id
    assert desktop.status == desktop_pb2.Desktop.Status.STOPPED
    assert desktop.name == "analyst-1"
    assert desktop.created_at.seconds == int(seeds.SEEDED_AT)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await desktops.Get(desktop_service_pb2.GetDesktopRequest(desktop_id="e3vnosuch"), metadata=grpc_auth)
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await desktops.Get(desktop_service_pb2.GetDesktopRequest(desktop_id=cloud.stopped_desktop_id))
    assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
    # Only Get is served; the rest of the service answers UNIMPLEMENTED.
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await desktops.Stop(
            desktop_service_pb2.StopRequest(desktop_id=cloud.running_desktop_id), metadata=grpc_auth
        )
    assert other.value.code() is grpc.StatusCode.UNIMPLEMENTED
    entries = (await http.get("/fake/requests", params={"method": "DesktopService.Get"})).json()["requests"]
    assert [(entry["transport"], entry["code"]) for entry in entries] == [
        ("grpc", "OK"),
        ("grpc", "NOT_FOUND"),
        ("grpc", "UNAUTHENTICATED"),
    ]
    assert entries[0]["requestId"] == "req-desk"
