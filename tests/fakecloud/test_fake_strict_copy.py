"""The fake's strict copy switch: copies carrying fields the published API pages do not list are refused."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2_grpc as service_grpc

from desktop_image_operator_dev.devenv.stack import FakeCloudChild
from desktop_image_operator_dev.fakecloud import FakeCloud, FakeCloudConfig, command, methods

from .helpers import IMAGES, Metadata, assert_rest_error, ok_json

COPY_METHODS = (methods.COPY, methods.COPY_FROM_DESKTOP)


@pytest.fixture
def config() -> FakeCloudConfig:
    return FakeCloudConfig(copy_seconds=10.0, operation_seconds=2.0, strict_copy_fields=True)


def _rest_copy(cloud: FakeCloud, source: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    """The path and body of a copy from a desktop or from a compute image, with `extra` fields."""
    if source == "desktop":
        body = {"desktopId": cloud.stopped_desktop_id, "folderId": cloud.folder_id, "name": "strict"}
        return f"{IMAGES}:copyFromDesktop", {**body, **extra}
    body = {"imageId": cloud.compute_image_id, "folderId": cloud.folder_id, "name": "strict"}
    return f"{IMAGES}:copy", {**body, **extra}


def _grpc_copy(
    images: service_grpc.DesktopImageServiceStub,
    cloud: FakeCloud,
    source: str,
    metadata: Metadata,
    **extra: Any,
) -> Any:
    if source == "desktop":
        request = service_pb2.CopyFromDesktopRequest(
            desktop_id=cloud.stopped_desktop_id, folder_id=cloud.folder_id, name="strict", **extra
        )
        return images.CopyFromDesktop(request, metadata=metadata)
    return images.Copy(
        service_pb2.CopyDesktopImageRequest(
            image_id=cloud.compute_image_id, folder_id=cloud.folder_id, name="strict", **extra
        ),
        metadata=metadata,
    )


def _nothing_created(cloud: FakeCloud) -> bool:
    return not cloud.state.images and not cloud.state.operations and not cloud.state.idempotency


@pytest.mark.parametrize("source", ["desktop", "compute-image"])
@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"labels": {"owner": "uid-1"}}, ["labels"]),
        ({"labels": {}}, ["labels"]),
        ({"description": "d"}, ["description"]),
        ({"description": ""}, ["description"]),
        ({"labels": {"a": "b"}, "description": "d"}, ["description, labels"]),
    ],
)
async def test_a_strict_fake_refuses_a_rest_copy_naming_each_unlisted_field_and_creates_nothing(
    cloud: FakeCloud,
    http: httpx.AsyncClient,
    auth: dict[str, str],
    source: str,
    extra: dict[str, Any],
    named: list[str],
) -> None:
    path, body = _rest_copy(cloud, source, **extra)
    response = await http.post(path, json=body, headers={**auth, "Idempotency-Key": "k-1"})
    assert_rest_error(response, 400, 3, "Request validation error", "unknown field", *named)
    assert _nothing_created(cloud)
    (entry,) = cloud.state.requests.entries()[-1:]
    assert (entry["code"], entry["operationId"]) == ("INVALID_ARGUMENT", None)


@pytest.mark.parametrize("source", ["desktop", "compute-image"])
async def test_a_strict_fake_accepts_a_rest_copy_with_the_listed_fields_in_either_spelling(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], source: str
) -> None:
    path, body = _rest_copy(cloud, source)
    operation = ok_json(await http.post(path, json=body, headers=auth))
    assert not operation["done"]
    snake = {"folder_id": cloud.folder_id, "name": "snake"}
    snake |= (
        {"desktop_id": cloud.stopped_desktop_id}
        if source == "desktop"
        else {"image_id": cloud.compute_image_id}
    )
    ok_json(await http.post(path, json=snake, headers=auth))
    assert len(cloud.state.images) == 2


@pytest.mark.parametrize("source", ["desktop", "compute-image"])
@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"labels": {"owner": "uid-1"}}, "labels"),
        ({"description": "d"}, "description"),
        ({"labels": {"a": "b"}, "description": "d"}, "description, labels"),
    ],
)
async def test_a_strict_fake_refuses_a_grpc_copy_carrying_labels_or_a_description(
    cloud: FakeCloud,
    channel: grpc.aio.Channel,
    grpc_auth: Metadata,
    source: str,
    extra: dict[str, Any],
    named: str,
) -> None:
    images = service_grpc.DesktopImageServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _grpc_copy(images, cloud, source, grpc_auth, **extra)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (error.details() or "")
    trailing = dict(error.trailing_metadata() or ())
    status = status_pb2.Status()
    status.ParseFromString(trailing["grpc-status-details-bin"])
    assert (status.code, status.message) == (3, error.details())
    info = error_details_pb2.RequestInfo()
    assert status.details[0].Unpack(info)
    assert info.request_id == trailing["x-request-id"]
    assert _nothing_created(cloud)


@pytest.mark.parametrize("source", ["desktop", "compute-image"])
async def test_a_strict_fake_accepts_a_grpc_copy_whose_labels_and_description_are_empty(
    cloud: FakeCloud, channel: grpc.aio.Channel, grpc_auth: Metadata, source: str
) -> None:
    # Over gRPC an empty map or string is not sent at all: the copy is a bare one.
    images = service_grpc.DesktopImageServiceStub(channel)
    operation = await _grpc_copy(images, cloud, source, grpc_auth, labels={}, description="")
    assert not operation.done
    assert len(cloud.state.images) == 1


async def test_the_switch_is_off_by_default_and_turns_at_run_time_through_the_admin_api(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    assert FakeCloudConfig().strict_copy_fields is False
    path, body = _rest_copy(cloud, "desktop", labels={"owner": "uid-1"})
    assert (await http.get("/fake/config")).json()["strictCopyFields"] is True
    assert (await http.post(path, json=body, headers=auth)).status_code == 400
    relaxed = ok_json(await http.post("/fake/config", json={"strictCopyFields": False}))
    assert relaxed["strictCopyFields"] is False
    ok_json(await http.post(path, json=body, headers=auth))
    (image,) = cloud.state.images.values()
    assert image.labels == {"owner": "uid-1"}
    assert (await http.post("/fake/config", json={"strictCopyFields": "yes"})).status_code == 400
    ok_json(await http.post("/fake/config", json={"strictCopyFields": True}))
    assert (await http.post(path, json={**body, "name": "again"}, headers=auth)).status_code == 400


async def test_a_refused_copy_leaves_its_idempotency_key_free_for_a_bare_one(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    path, body = _rest_copy(cloud, "desktop", labels={"owner": "uid-1"})
    headers = {**auth, "Idempotency-Key": "same-key"}
    assert (await http.post(path, json=body, headers=headers)).status_code == 400
    bare = {key: value for key, value in body.items() if key != "labels"}
    operation = ok_json(await http.post(path, json=bare, headers=headers))
    codes = [entry["code"] for entry in cloud.state.requests.entries() if entry["method"] in COPY_METHODS]
    assert codes == ["INVALID_ARGUMENT", "OK"]
    assert cloud.state.operations.keys() == {operation["id"]}


def test_the_command_line_flag_turns_the_switch_on() -> None:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert parser.parse_args(["--strict-copy-fields"]).strict_copy_fields is True
    assert parser.parse_args([]).strict_copy_fields is False


@pytest.mark.timeout(60)
def test_the_stack_starts_a_strict_fake_when_asked(tmp_path: Path) -> None:
    fake = FakeCloudChild(tmp_path, strict_copy_fields=True)
    try:
        assert fake.config()["strictCopyFields"] is True
    finally:
        fake.stop()
