"""The REST transport over httpx.MockTransport: URLs, headers, bodies, proto3 JSON, error mapping."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from desktop_image_operator.cloud.errors import CloudError, Code, QuotaViolation
from desktop_image_operator.cloud.transport import CallContext
from desktop_image_operator.cloud.transports.rest import RestTransport, parse_retry_after
from desktop_image_operator.cloud.types import CopyRequest, ImageStatus

IMAGE_JSON = {
    "id": "img-1",
    "folderId": "folder-1",
    "createdAt": "2024-05-06T07:08:09.123456789Z",
    "status": "ACTIVE",
    "name": "base",
    "labels": {"team": "a"},
    "description": "d",
    "storageSize": "21474836480",
    "minDiskSize": "32212254720",
}
IMAGE_TYPE = "type.googleapis.com/yandex.cloud.clouddesktop.v1.api.DesktopImage"


def op_json(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "op-1",
        "description": "Copy desktop image",
        "createdAt": "2024-05-06T07:08:09Z",
        "createdBy": "sa",
        "modifiedAt": "2024-05-06T07:08:09Z",
        "done": False,
        "metadata": {
            "@type": "type.googleapis.com/yandex.cloud.clouddesktop.v1.api.CopyFromDesktopMetadata",
            "imageId": "img-1",
        },
    }
    data.update(changes)
    return data


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: list[httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def transport(recorder: Recorder) -> AsyncIterator[RestTransport]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder.handler))
    yield RestTransport(http, desktop_endpoint="https://desk.test/", operation_endpoint="https://ops.test")
    await http.aclose()


def ctx(key: str | None = None) -> CallContext:
    return CallContext(token="t1.secret", request_id="req-1", trace_id="trace-1", idempotency_key=key)


async def test_get_image_reads_int64_strings_and_timestamps(
    recorder: Recorder, transport: RestTransport
) -> None:
    recorder.answers = [httpx.Response(200, json=IMAGE_JSON)]
    image = await transport.get_image(ctx(), "img-1")
    assert recorder.last.method == "GET"
    assert str(recorder.last.url) == "https://desk.test/cloud-desktop/v1/images/img-1"
    assert image.storage_size == 21474836480
    assert image.min_disk_size == 32212254720
    assert image.status is ImageStatus.ACTIVE
    assert image.created_at == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert image.labels == {"team": "a"}
    assert image.folder_id == "folder-1"


async def test_every_call_sends_auth_and_tracing_headers(
    recorder: Recorder, transport: RestTransport
) -> None:
    recorder.answers = [httpx.Response(200, json=IMAGE_JSON)]
    await transport.get_image(ctx(), "img-1")
    headers = recorder.last.headers
    assert headers["authorization"] == "Bearer t1.secret"
    assert headers["x-request-id"] == "req-1"
    assert headers["x-client-trace-id"] == "trace-1"
    assert "idempotency-key" not in headers


async def test_copy_from_desktop(recorder: Recorder, transport: RestTransport) -> None:
    recorder.answers = [httpx.Response(200, json=op_json())]
    request = CopyRequest(desktop_id="desk-1", name="base", description="d", labels={"owner": "uid"})
    operation = await transport.copy(ctx("key-1"), request)
    assert recorder.last.method == "POST"
    assert str(recorder.last.url) == "https://desk.test/cloud-desktop/v1/images:copyFromDesktop"
    assert recorder.last.headers["idempotency-key"] == "key-1"
    assert json.loads(recorder.last.content) == {
        "desktopId": "desk-1",
        "name": "base",
        "description": "d",
        "labels": {"owner": "uid"},
    }
    assert operation.id == "op-1"
    assert operation.image_id == "img-1"
    assert not operation.done
    assert operation.image is None


async def test_copy_from_a_compute_image(recorder: Recorder, transport: RestTransport) -> None:
    recorder.answers = [httpx.Response(200, json=op_json())]
    await transport.copy(
        ctx("key-1"), CopyRequest(compute_image_id="fd8-1", folder_id="folder-1", name="base")
    )
    assert str(recorder.last.url) == "https://desk.test/cloud-desktop/v1/images:copy"
    assert json.loads(recorder.last.content) == {"imageId": "fd8-1", "folderId": "folder-1", "name": "base"}


async def test_update_sends_a_comma_separated_mask_and_only_masked_fields(
    recorder: Recorder, transport: RestTransport
) -> None:
    done = op_json(done=True, response={"@type": IMAGE_TYPE, **IMAGE_JSON})
    recorder.answers = [httpx.Response(200, json=done)]
    operation = await transport.update(
        ctx("key-2"),
        "img-1",
        mask={"labels", "description"},
        name="ignored",
        description="",
        labels={"a": "b"},
    )
    assert recorder.last.method == "PATCH"
    assert str(recorder.last.url) == "https://desk.test/cloud-desktop/v1/images/img-1"
    assert recorder.last.headers["idempotency-key"] == "key-2"
    assert json.loads(recorder.last.content) == {
        "updateMask": "description,labels",
        "description": "",
        "labels": {"a": "b"},
    }
    assert operation.done
    assert operation.image is not None
    assert operation.image.storage_size == 21474836480


async def test_delete_answers_empty_response(recorder: Recorder, transport: RestTransport) -> None:
    done = op_json(done=True, response={"@type": "type.googleapis.com/google.protobuf.Empty"})
    recorder.answers = [httpx.Response(200, json=done)]
    operation = await transport.delete(ctx("key-3"), "img-1")
    assert recorder.last.method == "DELETE"
    assert recorder.last.headers["idempotency-key"] == "key-3"
    assert operation.done
    assert operation.image is None
    assert operation.succeeded


async def test_list_sends_folder_filter_and_paging(recorder: Recorder, transport: RestTransport) -> None:
    recorder.answers = [httpx.Response(200, json={"desktopImages": [IMAGE_JSON], "nextPageToken": "p2"})]
    page = await transport.list_images(
        ctx(), folder_id="folder-1", filter='name="base"', page_size=1000, page_token="p1"
    )
    params = recorder.last.url.params
    assert recorder.last.url.path == "/cloud-desktop/v1/images"
    assert params["folderId"] == "folder-1"
    assert params["filter"] == 'name="base"'
    assert params["pageSize"] == "1000"
    assert params["pageToken"] == "p1"
    assert [i.id for i in page.images] == ["img-1"]
    assert page.next_page_token == "p2"
    recorder.answers = [httpx.Response(200, json={})]
    empty = await transport.list_images(ctx(), folder_id="f", filter="", page_size=10, page_token="")
    assert empty.images == []
    assert empty.next_page_token == ""
    assert "pageToken" not in recorder.last.url.params


async def test_operation_get_and_failed_operation(recorder: Recorder, transport: RestTransport) -> None:
    failed = op_json(
        done=True,
        error={
            "code": 9,
            "message": "Desktop must be stopped",
            "details": [{"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": "req-op"}],
        },
    )
    recorder.answers = [httpx.Response(200, json=failed)]
    operation = await transport.get_operation(ctx(), "op-1")
    assert str(recorder.last.url) == "https://ops.test/operations/op-1"
    assert operation.error == CloudError(
        Code.FAILED_PRECONDITION, "Desktop must be stopped", request_id="req-op"
    )
    assert not operation.succeeded


async def test_cancel_uses_get_and_falls_back_to_post(recorder: Recorder, transport: RestTransport) -> None:
    recorder.answers = [httpx.Response(405), httpx.Response(200, json=op_json(done=True))]
    await transport.cancel_operation(ctx(), "op-1")
    assert [(r.method, str(r.url)) for r in recorder.requests] == [
        ("GET", "https://ops.test/operations/op-1:cancel"),
        ("POST", "https://ops.test/operations/op-1:cancel"),
    ]
    recorder.answers = [httpx.Response(200, json=op_json(done=True))]
    await transport.cancel_operation(ctx(), "op-1")
    assert recorder.last.method == "POST"


async def test_status_body_gives_code_message_and_request_id(
    recorder: Recorder, transport: RestTransport
) -> None:
    recorder.answers = [
        httpx.Response(
            404,
            json={
                "code": 5,
                "message": "Desktop image img-9 not found",
                "details": [{"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": "srv-req"}],
            },
        )
    ]
    with pytest.raises(CloudError) as caught:
        await transport.get_image(ctx(), "img-9")
    assert caught.value == CloudError(Code.NOT_FOUND, "Desktop image img-9 not found", request_id="srv-req")
    assert "t1.secret" not in str(caught.value)


async def test_body_code_wins_over_http_status(recorder: Recorder, transport: RestTransport) -> None:
    recorder.answers = [httpx.Response(400, json={"code": 9, "message": "running"})]
    with pytest.raises(CloudError) as caught:
        await transport.get_image(ctx(), "img-1")
    assert caught.value.code is Code.FAILED_PRECONDITION
    assert caught.value.request_id == "req-1"  # falls back to the id we sent


async def test_bare_http_errors_map_by_status(recorder: Recorder, transport: RestTransport) -> None:
    recorder.answers = [
        httpx.Response(503, text="<html>bad gateway</html>", headers={"x-request-id": "lb-1"})
    ]
    with pytest.raises(CloudError) as caught:
        await transport.get_image(ctx(), "img-1")
    assert caught.value.code is Code.UNAVAILABLE
    assert caught.value.retryable
    assert caught.value.request_id == "lb-1"
    assert caught.value.message == "HTTP 503 Service Unavailable"
    recorder.answers = [httpx.Response(599)]  # no reason phrase
    with pytest.raises(CloudError) as unnamed:
        await transport.get_image(ctx(), "img-1")
    assert unnamed.value.message == "HTTP 599"


async def test_429_carries_retry_after(recorder: Recorder, transport: RestTransport) -> None:
    recorder.answers = [
        httpx.Response(429, json={"code": 8, "message": "Too many"}, headers={"Retry-After": "7"})
    ]
    with pytest.raises(CloudError) as caught:
        await transport.get_image(ctx(), "img-1")
    assert caught.value.code is Code.RESOURCE_EXHAUSTED
    assert caught.value.retry_after == 7.0


async def test_retry_info_detail_is_a_retry_hint(recorder: Recorder, transport: RestTransport) -> None:
    body = {
        "code": 8,
        "message": "Quota",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.500s"}],
    }
    recorder.answers = [httpx.Response(429, json=body)]
    with pytest.raises(CloudError) as caught:
        await transport.get_image(ctx(), "img-1")
    assert caught.value.retry_after == 2.5


QUOTA_FAILURE = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [
        {
            "subject": "b1gcloud",
            "description": "limit 8, used 8",
            "quotaMetric": "vdi.desktopImages.count",
            "quotaValue": "8",
        }
    ],
}
REQUEST_INFO = {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": "srv-1"}


async def test_a_quota_failure_detail_makes_a_429_a_used_up_quota(
    recorder: Recorder, transport: RestTransport
) -> None:
    body = {"code": 8, "message": "Request refused", "details": [REQUEST_INFO, QUOTA_FAILURE]}
    recorder.answers = [httpx.Response(429, json=body)]
    with pytest.raises(CloudError) as caught:
        await transport.get_image(ctx(), "img-1")
    assert caught.value.quota_exceeded
    assert not caught.value.retryable
    assert caught.value.request_id == "srv-1"
    assert caught.value.quota_violations == (
        QuotaViolation("b1gcloud", "limit 8, used 8", "vdi.desktopImages.count"),
    )


async def test_a_429_that_says_quota_without_the_detail_is_throttling(
    recorder: Recorder, transport: RestTransport
) -> None:
    body = {"code": 8, "message": "Quota of requests per second exceeded", "details": [REQUEST_INFO]}
    recorder.answers = [httpx.Response(429, json=body, headers={"Retry-After": "120"})]
    with pytest.raises(CloudError) as caught:
        await transport.get_image(ctx(), "img-1")
    assert not caught.value.quota_exceeded
    assert caught.value.retryable
    assert caught.value.quota_violations == ()
    assert caught.value.retry_after == 120.0


async def test_a_quota_failure_naming_nothing_still_means_a_used_up_quota(
    recorder: Recorder, transport: RestTransport
) -> None:
    bare = {"@type": "type.googleapis.com/google.rpc.QuotaFailure"}
    recorder.answers = [httpx.Response(429, json={"code": 8, "message": "no", "details": [bare, "junk"]})]
    with pytest.raises(CloudError) as caught:
        await transport.get_image(ctx(), "img-1")
    assert caught.value.quota_exceeded
    assert caught.value.quota_violations == (QuotaViolation("", ""),)


async def test_a_failed_operation_keeps_its_quota_failure(
    recorder: Recorder, transport: RestTransport
) -> None:
    error = {"code": 8, "message": "Quota exceeded", "details": [QUOTA_FAILURE]}
    recorder.answers = [httpx.Response(200, json=op_json(done=True, error=error))]
    operation = await transport.get_operation(ctx(), "op-1")
    assert operation.error is not None
    assert operation.error.quota_exceeded
    assert operation.error.quota_violations[0].quota_metric == "vdi.desktopImages.count"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ConnectError("refused"), Code.UNAVAILABLE),
        (httpx.RemoteProtocolError("reset"), Code.UNAVAILABLE),
        (httpx.ReadError("reset by peer"), Code.UNAVAILABLE),
        (httpx.ReadTimeout("slow"), Code.DEADLINE_EXCEEDED),
        (httpx.ConnectTimeout("slow"), Code.DEADLINE_EXCEEDED),
    ],
)
async def test_connection_failures_are_retryable(
    recorder: Recorder, transport: RestTransport, exc: Exception, code: Code
) -> None:
    recorder.answers = [exc]
    with pytest.raises(CloudError) as caught:
        await transport.copy(ctx("k"), CopyRequest(desktop_id="d", name="n"))
    assert caught.value.code is code
    assert caught.value.retryable
    assert caught.value.request_id == "req-1"


async def test_garbage_success_body_is_internal(recorder: Recorder, transport: RestTransport) -> None:
    recorder.answers = [httpx.Response(200, text="not json")]
    with pytest.raises(CloudError) as caught:
        await transport.get_image(ctx(), "img-1")
    assert caught.value.code is Code.INTERNAL
    recorder.answers = [httpx.Response(200, json={**IMAGE_JSON, "storageSize": "many"})]
    with pytest.raises(CloudError):
        await transport.get_image(ctx(), "img-1")


def test_retry_after_formats() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


async def test_ids_are_escaped_in_paths(recorder: Recorder, transport: RestTransport) -> None:
    recorder.answers = [httpx.Response(200, json=IMAGE_JSON)]
    await transport.get_image(ctx(), "a/../b")
    assert recorder.last.url.raw_path == b"/cloud-desktop/v1/images/a%2F..%2Fb"


DESKTOP_JSON = {
    "id": "e3v-desk/1",
    "folderId": "folder-7",
    "desktopGroupId": "group-1",
    "createdAt": "2024-05-06T07:08:09Z",
    "status": "STOPPED",
    "name": "analyst-1",
    "resources": {"memory": "8589934592", "cores": "4", "coreFraction": "100"},
}


async def test_get_desktop_folder_reads_the_desktop(recorder: Recorder, transport: RestTransport) -> None:
    recorder.answers = [httpx.Response(200, json=DESKTOP_JSON)]
    assert await transport.get_desktop_folder(ctx(), "e3v-desk/1") == "folder-7"
    assert recorder.last.method == "GET"
    assert recorder.last.url.raw_path == b"/cloud-desktop/v1/desktops/e3v-desk%2F1"
    assert recorder.last.url.host == "desk.test"
    headers = recorder.last.headers
    assert headers["authorization"] == "Bearer t1.secret"
    assert headers["x-request-id"] == "req-1"
    assert "idempotency-key" not in headers
    assert recorder.last.content == b""


async def test_get_desktop_folder_errors(recorder: Recorder, transport: RestTransport) -> None:
    recorder.answers = [
        httpx.Response(
            404,
            json={
                "code": 5,
                "message": "Desktop d-9 not found",
                "details": [{"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": "srv-9"}],
            },
        )
    ]
    with pytest.raises(CloudError) as missing:
        await transport.get_desktop_folder(ctx(), "d-9")
    assert missing.value == CloudError(Code.NOT_FOUND, "Desktop d-9 not found", request_id="srv-9")
    # A desktop without a folder is a broken answer, never a guess.
    recorder.answers = [httpx.Response(200, json={"id": "d-1", "status": "STOPPED"})]
    with pytest.raises(CloudError) as shapeless:
        await transport.get_desktop_folder(ctx(), "d-1")
    assert shapeless.value.code is Code.INTERNAL
    assert shapeless.value.request_id == "req-1"
