"""`open_cloud` end to end over httpx.MockTransport: settings, token flow, 401 refresh, redaction."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY, generate_latest
from pydantic import ValidationError

from desktop_image_operator.cloud import (
    CloudError,
    CloudSettings,
    Code,
    CopyRequest,
    open_cloud,
    parse_authorized_key,
)
from desktop_image_operator.cloud.transport import CallContext

from .support import authorized_key_json, private_pem, secret_fragments

FAST = {
    "desktop_endpoint": "https://desk.test",
    "operation_endpoint": "https://ops.test",
    "iam_endpoint": "https://iam.test",
    "metadata_endpoint": "http://md.test",
    "backoff_base_seconds": 0.001,
    "backoff_cap_seconds": 0.002,
    "throttle_cooldown_base_seconds": 0.001,
    "throttle_cooldown_cap_seconds": 0.002,
    "operation_poll_initial_seconds": 0.001,
    "operation_poll_cap_seconds": 0.002,
    "requests_per_second": 1000,
}


class FakeApi:
    """Just enough of IAM + Cloud Desktop + Operations to drive the whole client."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.faults: list[httpx.Response] = []
        self.polls = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "iam.test":
            token = f"t1.token-{len(self.issued) + 1}"
            self.issued.append(token)
            expires = (datetime.now(UTC) + timedelta(hours=12)).isoformat()
            return httpx.Response(200, json={"iamToken": token, "expiresAt": expires})
        if request.headers.get("authorization", "").removeprefix("Bearer ") in self.revoked:
            return httpx.Response(401, json={"code": 16, "message": "The token has expired"})
        if self.faults:
            return self.faults.pop(0)
        path = request.url.path
        if path.endswith(":copyFromDesktop"):
            return httpx.Response(200, json={"id": "op-1", "done": False, "metadata": {"imageId": "img-1"}})
        if path == "/operations/op-1":
            self.polls += 1
            body: dict[str, Any] = {"id": "op-1", "done": self.polls >= 3, "metadata": {"imageId": "img-1"}}
            if body["done"]:
                body["response"] = {
                    "@type": "x.DesktopImage",
                    "id": "img-1",
                    "folderId": "f",
                    "storageSize": "5",
                }
            return httpx.Response(200, json=body)
        if path == "/cloud-desktop/v1/images/img-1":
            return httpx.Response(
                200, json={"id": "img-1", "folderId": "f", "status": "ACTIVE", "storageSize": "5"}
            )
        return httpx.Response(404, json={"code": 5, "message": f"no route {path}"})

    def cloud_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host != "iam.test"]


def test_settings_defaults_are_the_public_endpoints() -> None:
    settings = CloudSettings()
    assert settings.transport == "rest"
    assert settings.desktop_endpoint == "https://clouddesktops.api.cloud.yandex.net"
    assert settings.operation_endpoint == "https://operation.api.cloud.yandex.net"
    assert settings.iam_endpoint == "https://iam.api.cloud.yandex.net"
    assert settings.metadata_endpoint == "http://169.254.169.254"
    assert settings.desktop_grpc_target == "clouddesktops.api.cloud.yandex.net:443"
    assert settings.operation_grpc_target == "operation.api.cloud.yandex.net:443"
    assert settings.grpc_insecure is False


@pytest.mark.parametrize(
    "bad",
    [
        {"transport": "soap"},
        {"max_concurrency": 0},
        {"requests_per_second": 0},
        {"max_attempts": 0},
        {"backoff_base_seconds": 5, "backoff_cap_seconds": 1},
        {"no_such_setting": 1},
    ],
)
def test_settings_refuse_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CloudSettings(**bad)


async def test_copy_and_follow_with_an_authorized_key() -> None:
    api = FakeApi()
    settings = CloudSettings(**FAST, connect_timeout_seconds=3, request_timeout_seconds=7)
    async with open_cloud(settings, http_transport=httpx.MockTransport(api.handler)) as session:
        source = session.token_sources.from_key(authorized_key_json())
        client = session.client(source)
        operation = await client.copy(CopyRequest(desktop_id="desk-1", name="base"), idempotency_key="uid-1")
        done = await client.follow_operation(operation.id)
        image = await client.get_image("img-1")
    assert done.done
    assert done.image is not None
    assert done.image.storage_size == 5
    assert image.storage_size == 5
    assert len(api.issued) == 1  # one exchange serves every call
    assert {r.headers["authorization"] for r in api.cloud_requests()} == {"Bearer t1.token-1"}
    assert api.cloud_requests()[0].headers["idempotency-key"] == "uid-1"
    assert all("user-agent" in r.headers for r in api.requests)
    # Token and cloud requests alike run on the shared client's timeouts.
    assert {(r.extensions["timeout"]["connect"], r.extensions["timeout"]["read"]) for r in api.requests} == {
        (3, 7)
    }


async def test_a_401_refreshes_the_shared_token_once() -> None:
    api = FakeApi()
    async with open_cloud(CloudSettings(**FAST), http_transport=httpx.MockTransport(api.handler)) as session:
        source = session.token_sources.from_key(authorized_key_json())
        client = session.client(source)
        await client.get_image("img-1")
        api.revoked.add("t1.token-1")
        await client.get_image("img-1")
        # A second client on the same key uses the refreshed token at once.
        other = session.client(session.token_sources.from_key(authorized_key_json()))
        await other.get_image("img-1")
    assert api.issued == ["t1.token-1", "t1.token-2"]
    assert [r.headers["authorization"] for r in api.cloud_requests()] == [
        "Bearer t1.token-1",
        "Bearer t1.token-1",
        "Bearer t1.token-2",
        "Bearer t1.token-2",
    ]


async def test_unavailable_count_is_retried_to_success() -> None:
    api = FakeApi()
    api.faults = [httpx.Response(503, json={"code": 14, "message": "down"})] * 2
    settings = CloudSettings(**FAST, max_attempts=3)
    async with open_cloud(settings, http_transport=httpx.MockTransport(api.handler)) as session:
        client = session.client(session.token_sources.static("t1.static"))
        await client.get_image("img-1")
    assert len(api.cloud_requests()) == 3


async def test_session_refuses_use_when_closed() -> None:
    session = open_cloud(CloudSettings(**FAST))
    with pytest.raises(RuntimeError):
        session.client(object())  # type: ignore[arg-type]
    async with session:
        pass
    with pytest.raises(RuntimeError):
        session.client(object())  # type: ignore[arg-type]


async def test_secrets_never_reach_logs_errors_reprs_or_metrics(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api = FakeApi()
    api.faults = [
        httpx.Response(503, json={"code": 14, "message": "down"}),
        httpx.Response(429, json={"code": 8, "message": "slow"}),
    ]
    key_json = authorized_key_json()
    settings = CloudSettings(**FAST)
    async with open_cloud(settings, http_transport=httpx.MockTransport(api.handler)) as session:
        source = session.token_sources.from_key(key_json)
        client = session.client(source)
        await client.get_image("img-1")
        api.faults = [httpx.Response(403, json={"code": 7, "message": "Permission denied"})]
        with pytest.raises(CloudError) as caught:
            await client.get_image("img-1")
        static = session.token_sources.static("t1.static-secret")
        texts = [
            repr(source),
            str(source),
            repr(static),
            repr(client),
            repr(session),
            repr(session.token_sources),
            repr(caught.value),
            str(caught.value),
            repr(CallContext(token="t1.token-1", request_id="r", trace_id="t")),
        ]
    key = parse_authorized_key(key_json)
    texts += [repr(key), str(key)]
    texts += [record.getMessage() + repr(record.__dict__) for record in caplog.records]
    texts.append(generate_latest(REGISTRY).decode())
    secrets = [*api.issued, "t1.static-secret", *secret_fragments(private_pem())]
    assert caught.value.code is Code.PERMISSION_DENIED
    for text in texts:
        for secret in secrets:
            assert secret not in text
