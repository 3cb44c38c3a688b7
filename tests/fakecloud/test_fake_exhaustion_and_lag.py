"""Throttling vs a used-up quota (Retry-After, QuotaFailure), and a List that lags behind new copies."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2_grpc as service_grpc

from desktop_image_operator_dev.fakecloud import FakeCloud, seeds
from tests.support.clocks import ManualClock

from .helpers import (
    IMAGES,
    Metadata,
    assert_quota_error,
    assert_rest_error,
    copy_compute_image,
    get_image,
    ok_json,
)

COUNT_METRIC = "vdi.desktopImages.count"


def _trailing(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    return dict(error.trailing_metadata() or ())


def _status_details(error: grpc.aio.AioRpcError) -> list[Any]:
    """The details of the google.rpc.Status in `grpc-status-details-bin`, unpacked."""
    status = status_pb2.Status.FromString(_trailing(error)["grpc-status-details-bin"])
    assert (status.code, status.message) == (error.code().value[0], error.details())
    unpacked: list[Any] = []
    for detail in status.details:
        for kind in (error_details_pb2.RequestInfo, error_details_pb2.QuotaFailure):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                unpacked.append(message)
    assert len(unpacked) == len(status.details), status
    return unpacked


async def _add_fault(http: httpx.AsyncClient, **rule: Any) -> dict[str, Any]:
    return ok_json(await http.post("/fake/faults", json=rule), 201)


def _list_request(cloud: FakeCloud, name: str = "") -> service_pb2.ListDesktopImagesRequest:
    return service_pb2.ListDesktopImagesRequest(
        folder_id=cloud.folder_id, filter=f'name="{name}"' if name else ""
    )


# Retry-After


async def test_an_injected_429_carries_retry_after_over_rest(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    rule = await _add_fault(
        http, method="DesktopImageService.List", code="RESOURCE_EXHAUSTED", retryAfterSeconds=120, count=1
    )
    assert rule["retryAfterSeconds"] == 120
    response = await http.get(IMAGES, params={"folderId": cloud.folder_id}, headers=auth)
    # Throttling, not a quota: a RequestInfo detail only.
    assert_rest_error(response, 429, 8)
    assert response.headers["retry-after"] == "120"
    after = await http.get(IMAGES, params={"folderId": cloud.folder_id}, headers=auth)
    assert after.status_code == 200
    assert "retry-after" not in after.headers


async def test_an_injected_resource_exhausted_carries_retry_after_over_grpc(
    cloud: FakeCloud, http: httpx.AsyncClient, channel: grpc.aio.Channel, grpc_auth: Metadata
) -> None:
    await _add_fault(http, method="DesktopImageService.List", code=8, retryAfterSeconds=7, count=1)
    images = service_grpc.DesktopImageServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await images.List(_list_request(cloud), metadata=grpc_auth)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _trailing(caught.value)["retry-after"] == "7"
    (info,) = _status_details(caught.value)  # no QuotaFailure: this is throttling
    assert isinstance(info, error_details_pb2.RequestInfo)
    await images.List(_list_request(cloud), metadata=grpc_auth)


async def test_a_429_without_retry_after_says_nothing_of_when(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _add_fault(http, method="DesktopImageService.Get", code="RESOURCE_EXHAUSTED", count=1)
    response = await http.get(f"{IMAGES}/e3vany", headers=auth)
    assert_rest_error(response, 429, 8)
    assert "retry-after" not in response.headers


@pytest.mark.parametrize(
    "rule",
    [
        {"code": "RESOURCE_EXHAUSTED", "retryAfterSeconds": -1},
        {"code": "RESOURCE_EXHAUSTED", "retryAfterSeconds": 1.5},
        {"code": "RESOURCE_EXHAUSTED", "retryAfterSeconds": "10"},
        {"code": "RESOURCE_EXHAUSTED", "retryAfterSeconds": True},
        {"code": "INTERNAL", "retryAfterSeconds": 10},
        {"latencyMs": 5, "retryAfterSeconds": 10},
        {"method": "DesktopImageService.Copy", "failOperation": 1, "code": 8, "retryAfterSeconds": 10},
    ],
)
async def test_retry_after_only_goes_with_an_answered_429_or_503(
    http: httpx.AsyncClient, rule: dict[str, Any]
) -> None:
    response = await http.post("/fake/faults", json={"method": "*", **rule})
    assert response.status_code == 400
    assert "retryAfterSeconds" in response.json()["error"]


async def test_an_unavailable_answer_may_carry_retry_after_too(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _add_fault(http, method="*", code="UNAVAILABLE", retryAfterSeconds=0, count=1)
    response = await http.get(f"{IMAGES}/e3vany", headers=auth)
    assert_rest_error(response, 503, 14)
    assert response.headers["retry-after"] == "0"


# QuotaFailure


async def _fill_count_quota(cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await http.post("/fake/config", json={"imageQuota": 1})
    await copy_compute_image(http, auth, cloud.folder_id, cloud.compute_image_id, "only")


async def test_a_used_up_quota_carries_quota_failure_over_rest(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _fill_count_quota(cloud, http, auth)
    body = {"folderId": cloud.folder_id, "imageId": cloud.compute_image_id, "name": "second"}
    response = await http.post(f"{IMAGES}:copy", json=body, headers=auth)
    assert_quota_error(response, COUNT_METRIC, seeds.CLOUD_ID, 1)


async def test_a_used_up_quota_carries_quota_failure_over_grpc(
    cloud: FakeCloud,
    http: httpx.AsyncClient,
    auth: dict[str, str],
    channel: grpc.aio.Channel,
    grpc_auth: Metadata,
) -> None:
    await _fill_count_quota(cloud, http, auth)
    images = service_grpc.DesktopImageServiceStub(channel)
    request = service_pb2.CopyFromDesktopRequest(desktop_id=cloud.stopped_desktop_id, name="second")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await images.CopyFromDesktop(request, metadata=grpc_auth)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "retry-after" not in _trailing(caught.value)
    info, quota = _status_details(caught.value)
    assert info.request_id == _trailing(caught.value)["x-request-id"]
    (violation,) = quota.violations
    assert (violation.subject, violation.quota_metric, violation.quota_value) == (
        seeds.CLOUD_ID,
        COUNT_METRIC,
        1,
    )
    assert COUNT_METRIC in violation.description


async def test_an_injected_resource_exhausted_carries_no_quota_failure_even_when_it_says_quota(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _add_fault(
        http, method="DesktopImageService.Copy", code=8, message="Quota of requests exceeded", count=1
    )
    body = {"folderId": cloud.folder_id, "imageId": cloud.compute_image_id, "name": "x"}
    assert_rest_error(await http.post(f"{IMAGES}:copy", json=body, headers=auth), 429, 8, "Quota")


# A List that lags behind


async def test_list_lag_is_a_config_field(http: httpx.AsyncClient) -> None:
    assert (await http.get("/fake/config")).json()["listLagSeconds"] == 0
    changed = ok_json(await http.post("/fake/config", json={"listLagSeconds": 2.5}))
    assert changed["listLagSeconds"] == 2.5
    for bad in ({"listLagSeconds": -1}, {"listLagSeconds": "soon"}, {"listLagSeconds": None}):
        assert (await http.post("/fake/config", json=bad)).status_code == 400
    assert (await http.post("/fake/reset")).status_code == 200
    assert (await http.get("/fake/config")).json()["listLagSeconds"] == 2.5


async def _listed(http: httpx.AsyncClient, auth: dict[str, str], folder_id: str, name: str = "") -> list[str]:
    params = {"folderId": folder_id, **({"filter": f'name="{name}"'} if name else {})}
    body = ok_json(await http.get(IMAGES, params=params, headers=auth))
    return [image["name"] for image in body.get("desktopImages", [])]


async def test_a_new_image_stays_out_of_list_for_the_lag_yet_holds_its_name(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    await copy_compute_image(http, auth, cloud.folder_id, cloud.compute_image_id, "old")
    clock.advance(60)
    await http.post("/fake/config", json={"listLagSeconds": 5})
    fresh = await copy_compute_image(http, auth, cloud.folder_id, cloud.compute_image_id, "fresh")
    assert await _listed(http, auth, cloud.folder_id) == ["old"]
    assert await _listed(http, auth, cloud.folder_id, "fresh") == []
    # Get finds it by id, and its name is taken.
    assert (await get_image(http, auth, fresh["metadata"]["imageId"]))["name"] == "fresh"
    body = {"folderId": cloud.folder_id, "imageId": cloud.compute_image_id, "name": "fresh"}
    assert_rest_error(await http.post(f"{IMAGES}:copy", json=body, headers=auth), 409, 6, "fresh")
    clock.advance(4.9)
    assert await _listed(http, auth, cloud.folder_id, "fresh") == []
    clock.advance(0.1)
    assert await _listed(http, auth, cloud.folder_id, "fresh") == ["fresh"]
    assert sorted(await _listed(http, auth, cloud.folder_id)) == ["fresh", "old"]


async def test_list_lags_over_grpc_too(
    cloud: FakeCloud,
    http: httpx.AsyncClient,
    channel: grpc.aio.Channel,
    grpc_auth: Metadata,
    clock: ManualClock,
) -> None:
    await http.post("/fake/config", json={"listLagSeconds": 3})
    images = service_grpc.DesktopImageServiceStub(channel)
    request = service_pb2.CopyFromDesktopRequest(desktop_id=cloud.stopped_desktop_id, name="lagging")
    await images.CopyFromDesktop(request, metadata=grpc_auth)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await images.CopyFromDesktop(request, metadata=grpc_auth)
    assert caught.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert list((await images.List(_list_request(cloud, "lagging"), metadata=grpc_auth)).desktop_images) == []
    clock.advance(3)
    listed = await images.List(_list_request(cloud, "lagging"), metadata=grpc_auth)
    assert [image.name for image in listed.desktop_images] == ["lagging"]


async def test_without_lag_a_copy_is_listed_at_once(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await copy_compute_image(http, auth, cloud.folder_id, cloud.compute_image_id, "now")
    assert await _listed(http, auth, cloud.folder_id, "now") == ["now"]
