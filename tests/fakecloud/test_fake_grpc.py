"""The same API over gRPC with the official stubs, sharing state with REST."""

from __future__ import annotations

import grpc
import httpx
import pytest
from google.protobuf import empty_pb2, field_mask_pb2
from google.rpc import error_details_pb2, status_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2_grpc as service_grpc
from yandex.cloud.iam.v1 import iam_token_service_pb2, iam_token_service_pb2_grpc
from yandex.cloud.operation import operation_service_pb2, operation_service_pb2_grpc

from desktop_image_operator_dev.fakecloud import FakeCloud
from desktop_image_operator_dev.fakecloud.seeds import GIB
from tests.support.clocks import ManualClock

from .helpers import Metadata, make_jwt


def _status_details(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    trailing = dict(error.trailing_metadata() or ())
    details = status_pb2.Status()
    details.ParseFromString(trailing["grpc-status-details-bin"])
    return details


async def test_full_life_cycle_over_grpc(
    cloud: FakeCloud, channel: grpc.aio.Channel, grpc_auth: Metadata, clock: ManualClock
) -> None:
    images = service_grpc.DesktopImageServiceStub(channel)
    operations = operation_service_pb2_grpc.OperationServiceStub(channel)

    operation = await images.CopyFromDesktop(
        service_pb2.CopyFromDesktopRequest(
            desktop_id=cloud.stopped_desktop_id, name="grpc-image", labels={"a": "b"}
        ),
        metadata=grpc_auth,
    )
    assert not operation.done
    assert operation.created_by == cloud.service_account_id
    metadata = service_pb2.CopyFromDesktopMetadata()
    assert operation.metadata.Unpack(metadata)
    image_id = metadata.image_id

    image = await images.Get(service_pb2.GetDesktopImageRequest(image_id=image_id), metadata=grpc_auth)
    assert image.status == desktop_image_pb2.DesktopImage.CREATING
    assert image.storage_size == 12 * GIB  # a real integer over gRPC
    assert isinstance(image.min_disk_size, int)
    assert image.min_disk_size == 20 * GIB

    clock.advance(10)
    done = await operations.Get(
        operation_service_pb2.GetOperationRequest(operation_id=operation.id), metadata=grpc_auth
    )
    assert done.done
    response = desktop_image_pb2.DesktopImage()
    assert done.response.Unpack(response)
    assert response.status == desktop_image_pb2.DesktopImage.ACTIVE

    listed = await images.List(
        service_pb2.ListDesktopImagesRequest(folder_id=cloud.folder_id, filter='name="grpc-image"'),
        metadata=grpc_auth,
    )
    assert [item.id for item in listed.desktop_images] == [image_id]

    update = await images.Update(
        service_pb2.UpdateDesktopImageRequest(
            image_id=image_id,
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            description="via grpc",
        ),
        metadata=grpc_auth,
    )
    update_metadata = service_pb2.UpdateDesktopImageMetadata()
    assert update.metadata.Unpack(update_metadata)
    assert update_metadata.image_id == image_id
    clock.advance(2)
    image = await images.Get(service_pb2.GetDesktopImageRequest(image_id=image_id), metadata=grpc_auth)
    assert image.description == "via grpc"
    assert image.name == "grpc-image"

    delete = await images.Delete(service_pb2.DeleteDesktopImageRequest(image_id=image_id), metadata=grpc_auth)
    clock.advance(2)
    done = await operations.Get(
        operation_service_pb2.GetOperationRequest(operation_id=delete.id), metadata=grpc_auth
    )
    assert done.response.Is(empty_pb2.Empty.DESCRIPTOR)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await images.Get(service_pb2.GetDesktopImageRequest(image_id=image_id), metadata=grpc_auth)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_copy_from_compute_image_and_cancel_over_grpc(
    cloud: FakeCloud, channel: grpc.aio.Channel, grpc_auth: Metadata
) -> None:
    images = service_grpc.DesktopImageServiceStub(channel)
    operations = operation_service_pb2_grpc.OperationServiceStub(channel)
    operation = await images.Copy(
        service_pb2.CopyDesktopImageRequest(
            folder_id=cloud.folder_id, image_id=cloud.compute_image_id, name="c"
        ),
        metadata=grpc_auth,
    )
    assert (
        operation.metadata.type_url
        == "type.googleapis.com/yandex.cloud.clouddesktop.v1.api.CopyDesktopImageMetadata"
    )
    cancelled = await operations.Cancel(
        operation_service_pb2.CancelOperationRequest(operation_id=operation.id), metadata=grpc_auth
    )
    assert cancelled.done
    assert cancelled.error.code == grpc.StatusCode.CANCELLED.value[0]


async def test_grpc_and_rest_share_one_state(
    cloud: FakeCloud,
    channel: grpc.aio.Channel,
    grpc_auth: Metadata,
    http: httpx.AsyncClient,
    auth: dict[str, str],
) -> None:
    images = service_grpc.DesktopImageServiceStub(channel)
    operation = await images.Copy(
        service_pb2.CopyDesktopImageRequest(
            folder_id=cloud.folder_id, image_id=cloud.compute_image_id, name="shared"
        ),
        metadata=grpc_auth,
    )
    rest = await http.get(f"/operations/{operation.id}", headers=auth)
    assert rest.status_code == 200
    assert rest.json()["metadata"]["@type"].endswith("CopyDesktopImageMetadata")


async def test_errors_carry_code_message_and_status_details(
    cloud: FakeCloud, channel: grpc.aio.Channel, grpc_auth: Metadata
) -> None:
    images = service_grpc.DesktopImageServiceStub(channel)
    cases = [
        (
            images.Get(service_pb2.GetDesktopImageRequest(image_id="nosuch"), metadata=grpc_auth),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            images.Get(service_pb2.GetDesktopImageRequest(), metadata=grpc_auth),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            images.CopyFromDesktop(
                service_pb2.CopyFromDesktopRequest(desktop_id=cloud.running_desktop_id), metadata=grpc_auth
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (
            images.List(service_pb2.ListDesktopImagesRequest(folder_id="b1gnosuch"), metadata=grpc_auth),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            images.List(
                service_pb2.ListDesktopImagesRequest(folder_id=cloud.folder_id, page_size=1001),
                metadata=grpc_auth,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            images.List(service_pb2.ListDesktopImagesRequest(folder_id=cloud.folder_id)),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
    ]
    for call, expected in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        error = caught.value
        assert error.code() == expected
        details = _status_details(error)
        assert details.code == expected.value[0]
        assert details.message == error.details()
        info = error_details_pb2.RequestInfo()
        assert details.details[0].Unpack(info)
        assert info.request_id == dict(error.trailing_metadata() or ())["x-request-id"]


async def test_request_id_and_idempotency_metadata(
    cloud: FakeCloud, channel: grpc.aio.Channel, grpc_auth: Metadata, http: httpx.AsyncClient
) -> None:
    images = service_grpc.DesktopImageServiceStub(channel)
    request = service_pb2.CopyDesktopImageRequest(
        folder_id=cloud.folder_id, image_id=cloud.compute_image_id, name="k"
    )
    metadata = (*grpc_auth, ("idempotency-key", "grpc-key-1"), ("x-request-id", "grpc-request-1"))
    call = images.Copy(request, metadata=metadata)
    first = await call
    initial = dict(await call.initial_metadata())
    assert initial["x-request-id"] == "grpc-request-1"
    assert initial["x-server-trace-id"]
    second = await images.Copy(request, metadata=metadata)
    assert second.id == first.id
    assert len((await http.get("/fake/images")).json()["images"]) == 1
    log = (await http.get("/fake/requests", params={"method": "DesktopImageService.Copy"})).json()["requests"]
    assert [(entry["transport"], entry["idempotencyKey"], entry["requestId"]) for entry in log] == [
        ("grpc", "grpc-key-1", "grpc-request-1")
    ] * 2


async def test_iam_token_over_grpc(cloud: FakeCloud, channel: grpc.aio.Channel) -> None:
    stub = iam_token_service_pb2_grpc.IamTokenServiceStub(channel)
    response = await stub.Create(
        iam_token_service_pb2.CreateIamTokenRequest(jwt=make_jwt(cloud.authorized_key()))
    )
    assert response.iam_token.startswith("t1.")
    images = service_grpc.DesktopImageServiceStub(channel)
    listed = await images.List(
        service_pb2.ListDesktopImagesRequest(folder_id=cloud.folder_id),
        metadata=(("authorization", f"Bearer {response.iam_token}"),),
    )
    assert list(listed.desktop_images) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Create(
            iam_token_service_pb2.CreateIamTokenRequest(
                jwt=make_jwt(cloud.authorized_key(), algorithm="RS256")
            )
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "PS256" in (caught.value.details() or "")
