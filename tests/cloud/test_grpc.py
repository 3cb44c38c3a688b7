"""The gRPC transport against a tiny in-process servicer on loopback, and the protobuf adapter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2, empty_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from yandex.cloud.clouddesktop.v1 import (
    desktop_image_pb2,
    desktop_image_service_pb2,
    desktop_image_service_pb2_grpc,
    desktop_pb2,
    desktop_service_pb2_grpc,
)
from yandex.cloud.operation import operation_pb2, operation_service_pb2_grpc

from desktop_image_operator.cloud import CloudSettings, Code, CopyRequest, ImageStatus, open_cloud
from desktop_image_operator.cloud.errors import CloudError, QuotaViolation
from desktop_image_operator.cloud.transport import CallContext
from desktop_image_operator.cloud.transports.grpc import GrpcTransport, open_channel
from desktop_image_operator.cloud.transports.grpc_wire import operation_from_proto


def packed(message: Any) -> any_pb2.Any:
    value = any_pb2.Any()
    value.Pack(message)
    return value


def image_message(image_id: str = "img-1") -> desktop_image_pb2.DesktopImage:
    return desktop_image_pb2.DesktopImage(
        id=image_id,
        folder_id="folder-1",
        created_at=timestamp_pb2.Timestamp(seconds=1_700_000_000),
        status=desktop_image_pb2.DesktopImage.Status.ACTIVE,
        name="base",
        labels={"team": "a"},
        description="d",
        storage_size=21474836480,
        min_disk_size=32212254720,
    )


def status_details(
    code: int, message: str, request_id: str, retry_seconds: int | None = None, *more: Any
) -> bytes:
    status = status_pb2.Status(code=code, message=message)
    status.details.append(packed(error_details_pb2.RequestInfo(request_id=request_id)))
    if retry_seconds is not None:
        status.details.append(
            packed(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_seconds)))
        )
    status.details.extend(packed(detail) for detail in more)
    return bytes(status.SerializeToString())


def count_quota_failure() -> error_details_pb2.QuotaFailure:
    violation = error_details_pb2.QuotaFailure.Violation(
        subject="b1gcloud", description="limit 8, used 8", quota_metric="vdi.desktopImages.count"
    )
    return error_details_pb2.QuotaFailure(violations=[violation])


@dataclass
class Seen:
    metadata: list[dict[str, str]] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    fail_get: list[tuple[grpc.StatusCode, bytes | None]] = field(default_factory=list)
    # More trailing metadata for every failed Get.
    fail_get_trailing: tuple[tuple[str, str], ...] = ()


class Images(desktop_image_service_pb2_grpc.DesktopImageServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def _record(self, request: Any, context: Any) -> None:
        self.seen.requests.append(request)
        self.seen.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})

    async def Get(self, request: Any, context: Any) -> Any:
        self._record(request, context)
        if self.seen.fail_get:
            code, details = self.seen.fail_get.pop(0)
            trailing = (("grpc-status-details-bin", details),) if details else ()
            await context.abort(
                code, "Desktop image not found", trailing_metadata=trailing + self.seen.fail_get_trailing
            )
        return image_message(request.image_id)

    async def CopyFromDesktop(self, request: Any, context: Any) -> Any:
        self._record(request, context)
        metadata = desktop_image_service_pb2.CopyFromDesktopMetadata(image_id="img-new")
        return operation_pb2.Operation(id="op-1", done=False, metadata=packed(metadata))

    async def Update(self, request: Any, context: Any) -> Any:
        self._record(request, context)
        return operation_pb2.Operation(
            id="op-2",
            done=True,
            metadata=packed(desktop_image_service_pb2.UpdateDesktopImageMetadata(image_id=request.image_id)),
            response=packed(image_message(request.image_id)),
        )

    async def List(self, request: Any, context: Any) -> Any:
        self._record(request, context)
        return desktop_image_service_pb2.ListDesktopImagesResponse(desktop_images=[image_message()])

    async def Copy(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")

    async def Delete(self, request: Any, context: Any) -> Any:
        await asyncio.sleep(10)  # slower than any deadline in these tests
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")


class Desktops(desktop_service_pb2_grpc.DesktopServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def Get(self, request: Any, context: Any) -> Any:
        self.seen.requests.append(request)
        self.seen.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        folder_id = "" if request.desktop_id == "no-folder" else "folder-7"
        return desktop_pb2.Desktop(
            id=request.desktop_id, folder_id=folder_id, status=desktop_pb2.Desktop.Status.STOPPED
        )


class Operations(operation_service_pb2_grpc.OperationServiceServicer):
    async def Get(self, request: Any, context: Any) -> Any:
        return operation_pb2.Operation(id=request.operation_id, done=True, response=packed(empty_pb2.Empty()))

    async def Cancel(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test")


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()
    server = grpc.aio.server()
    desktop_image_service_pb2_grpc.add_DesktopImageServiceServicer_to_server(Images(seen), server)
    operation_service_pb2_grpc.add_OperationServiceServicer_to_server(Operations(), server)
    # Only Get is served; the typing stubs declare every other method abstract, the runtime class does not.
    desktops = Desktops(seen)  # type: ignore[abstract]
    desktop_service_pb2_grpc.add_DesktopServiceServicer_to_server(desktops, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", seen
    finally:
        await server.stop(None)


def ctx(key: str | None = None) -> CallContext:
    return CallContext(token="t1.grpc", request_id="req-1", trace_id="trace-1", idempotency_key=key)


async def test_calls_carry_token_tracing_and_idempotency_metadata(server: tuple[str, Seen]) -> None:
    target, seen = server
    channel = open_channel(target, insecure=True)
    try:
        transport = GrpcTransport(channel, channel)
        image = await transport.get_image(ctx(), "img-1")
        operation = await transport.copy(
            ctx("key-1"), CopyRequest(desktop_id="desk-1", name="base", labels={"a": "b"})
        )
    finally:
        await channel.close()
    assert image.storage_size == 21474836480
    assert image.status is ImageStatus.ACTIVE
    assert image.created_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert operation.image_id == "img-new"
    get_md, copy_md = seen.metadata
    assert get_md["authorization"] == "Bearer t1.grpc"
    assert get_md["x-request-id"] == "req-1"
    assert get_md["x-client-trace-id"] == "trace-1"
    assert "idempotency-key" not in get_md
    assert copy_md["idempotency-key"] == "key-1"
    copy_request = seen.requests[1]
    assert copy_request.desktop_id == "desk-1"
    assert dict(copy_request.labels) == {"a": "b"}


async def test_update_sends_a_field_mask(server: tuple[str, Seen]) -> None:
    target, seen = server
    channel = open_channel(target, insecure=True)
    try:
        operation = await GrpcTransport(channel, channel).update(
            ctx("k"), "img-1", mask={"name", "labels"}, name="new", description=None, labels={"x": "y"}
        )
    finally:
        await channel.close()
    request = seen.requests[0]
    assert list(request.update_mask.paths) == ["labels", "name"]
    assert request.name == "new"
    assert operation.done
    assert operation.image is not None
    assert operation.image.id == "img-1"


async def test_errors_carry_code_message_and_request_id_from_status_details(server: tuple[str, Seen]) -> None:
    target, seen = server
    seen.fail_get.append(
        (grpc.StatusCode.NOT_FOUND, status_details(5, "Desktop image not found", "srv-req-7"))
    )
    seen.fail_get.append((grpc.StatusCode.RESOURCE_EXHAUSTED, status_details(8, "slow", "srv-req-8", 4)))
    seen.fail_get.append((grpc.StatusCode.PERMISSION_DENIED, None))
    channel = open_channel(target, insecure=True)
    try:
        transport = GrpcTransport(channel, channel)
        with pytest.raises(CloudError) as not_found:
            await transport.get_image(ctx(), "img-9")
        with pytest.raises(CloudError) as throttled:
            await transport.get_image(ctx(), "img-9")
        with pytest.raises(CloudError) as denied:
            await transport.get_image(ctx(), "img-9")
    finally:
        await channel.close()
    assert not_found.value == CloudError(Code.NOT_FOUND, "Desktop image not found", request_id="srv-req-7")
    assert throttled.value.code is Code.RESOURCE_EXHAUSTED
    assert throttled.value.retry_after == 4.0
    assert denied.value.code is Code.PERMISSION_DENIED
    assert denied.value.request_id == "req-1"


async def _failed_get(target: str) -> CloudError:
    channel = open_channel(target, insecure=True)
    try:
        with pytest.raises(CloudError) as caught:
            await GrpcTransport(channel, channel).get_image(ctx(), "img-9")
    finally:
        await channel.close()
    return caught.value


async def test_a_quota_failure_in_the_status_details_is_a_used_up_quota(server: tuple[str, Seen]) -> None:
    target, seen = server
    details = status_details(8, "Desktop image not found", "srv-q", None, count_quota_failure())
    seen.fail_get.append((grpc.StatusCode.RESOURCE_EXHAUSTED, details))
    error = await _failed_get(target)
    assert error.quota_exceeded
    assert not error.retryable
    assert error.request_id == "srv-q"
    assert error.quota_violations == (
        QuotaViolation("b1gcloud", "limit 8, used 8", "vdi.desktopImages.count"),
    )


async def test_retry_after_trailing_metadata_is_a_retry_hint_and_no_quota(server: tuple[str, Seen]) -> None:
    target, seen = server
    seen.fail_get.append((grpc.StatusCode.RESOURCE_EXHAUSTED, status_details(8, "slow", "srv-r")))
    seen.fail_get_trailing = (("retry-after", "120"),)
    error = await _failed_get(target)
    assert error.retry_after == 120.0
    assert not error.quota_exceeded
    assert error.retryable


async def test_a_retry_info_detail_wins_over_retry_after_metadata(server: tuple[str, Seen]) -> None:
    target, seen = server
    seen.fail_get.append((grpc.StatusCode.UNAVAILABLE, status_details(14, "down", "srv-u", 9)))
    seen.fail_get_trailing = (("retry-after", "120"),)
    assert (await _failed_get(target)).retry_after == 9.0


async def test_every_rpc_carries_the_transport_deadline(server: tuple[str, Seen]) -> None:
    target, _ = server
    channel = open_channel(target, insecure=True)
    try:
        with pytest.raises(CloudError) as caught:
            await GrpcTransport(channel, channel, timeout=0.2).delete(ctx("k"), "img-1")
    finally:
        await channel.close()
    assert caught.value.code is Code.DEADLINE_EXCEEDED
    assert caught.value.retryable


async def test_unreachable_server_is_unavailable() -> None:
    channel = open_channel("127.0.0.1:1", insecure=True)
    try:
        with pytest.raises(CloudError) as caught:
            await GrpcTransport(channel, channel).get_image(ctx(), "img-1")
    finally:
        await channel.close()
    assert caught.value.code is Code.UNAVAILABLE
    assert caught.value.retryable


async def test_session_over_grpc(server: tuple[str, Seen]) -> None:
    target, _ = server
    settings = CloudSettings(
        transport="grpc", desktop_grpc_target=target, operation_grpc_target=target, grpc_insecure=True
    )
    async with open_cloud(settings) as session:
        client = session.client(session.token_sources.static("t1.static"))
        found = await client.find_images("folder-1", "base")
        done = await client.follow_operation("op-5")
    assert [image.id for image in found] == ["img-1"]
    assert done.done
    assert done.image is None


def test_failed_operation_from_proto() -> None:
    status = status_pb2.Status.FromString(status_details(9, "Desktop must be stopped", "req-op"))
    message = operation_pb2.Operation(
        id="op-3",
        done=True,
        created_at=timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=5000),
        metadata=packed(desktop_image_service_pb2.CopyDesktopImageMetadata(image_id="img-3")),
        error=status,
    )
    operation = operation_from_proto(message)
    assert operation.image_id == "img-3"
    assert operation.error == CloudError(
        Code.FAILED_PRECONDITION, "Desktop must be stopped", request_id="req-op"
    )
    assert operation.created_at == datetime(2023, 11, 14, 22, 13, 20, 5, tzinfo=UTC)
    assert operation_from_proto(operation_pb2.Operation(id="op-4")).image_id is None


def test_a_failed_operation_keeps_its_quota_failure() -> None:
    status = status_pb2.Status.FromString(status_details(8, "Refused", "req-q", None, count_quota_failure()))
    operation = operation_from_proto(operation_pb2.Operation(id="op-q", done=True, error=status))
    assert operation.error is not None
    assert operation.error.quota_exceeded
    assert [v.quota_metric for v in operation.error.quota_violations] == ["vdi.desktopImages.count"]


async def test_get_desktop_folder_asks_the_desktop_service(server: tuple[str, Seen]) -> None:
    target, seen = server
    channel = open_channel(target, insecure=True)
    try:
        transport = GrpcTransport(channel, channel)
        assert await transport.get_desktop_folder(ctx(), "desk-1") == "folder-7"
        # A desktop without a folder is a broken answer, never a guess.
        with pytest.raises(CloudError) as shapeless:
            await transport.get_desktop_folder(ctx(), "no-folder")
    finally:
        await channel.close()
    assert [request.desktop_id for request in seen.requests] == ["desk-1", "no-folder"]
    assert seen.metadata[0]["authorization"] == "Bearer t1.grpc"
    assert "idempotency-key" not in seen.metadata[0]
    assert shapeless.value.code is Code.INTERNAL
    assert shapeless.value.request_id == "req-1"
