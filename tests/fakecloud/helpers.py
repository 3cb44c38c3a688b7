"""Helpers shared by the fake cloud tests."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt

from desktop_image_operator_dev.fakecloud.iam import AUDIENCE, KEY_ID_LINE


def private_pem(key: dict[str, str]) -> str:
    """The PEM of an authorized key's private key, without the Yandex preamble line."""
    text = key["private_key"]
    assert text.startswith(KEY_ID_LINE + key["id"] + "\n")
    return text.split("\n", 1)[1]


def make_jwt(
    key: dict[str, str],
    *,
    algorithm: str = "PS256",
    signing_key: Any = None,
    audience: str = AUDIENCE,
    issuer: str | None = None,
    key_id: str | None = None,
    issued_at: float | None = None,
    lifetime: int = 3600,
    typ: str = "JWT",
) -> str:
    now = int(issued_at if issued_at is not None else time.time())
    claims = {"iss": issuer or key["service_account_id"], "aud": audience, "iat": now, "exp": now + lifetime}
    return jwt.encode(
        claims,
        signing_key if signing_key is not None else private_pem(key),
        algorithm=algorithm,
        headers={"kid": key_id or key["id"], "typ": typ},
    )


def ok_json(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """The JSON body of a response that must have `status`."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_rest_error(response: httpx.Response, http_status: int, code: int, *words: str) -> dict[str, Any]:
    """A google.rpc.Status body with the request id in a RequestInfo detail; its message names `words`."""
    assert response.status_code == http_status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["message"], body
    assert body["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": response.headers["x-request-id"]}
    ]
    assert response.headers["x-server-trace-id"]
    return body


def assert_quota_error(response: httpx.Response, metric: str, cloud_id: str, limit: int) -> None:
    """429 RESOURCE_EXHAUSTED carrying RequestInfo and a QuotaFailure that names the cloud and the metric."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == 8, body
    request_info, quota = body["details"]
    assert request_info == {
        "@type": "type.googleapis.com/google.rpc.RequestInfo",
        "requestId": response.headers["x-request-id"],
    }
    assert quota["@type"] == "type.googleapis.com/google.rpc.QuotaFailure"
    (violation,) = quota["violations"]
    assert metric in violation.pop("description")
    assert violation == {"subject": cloud_id, "quotaMetric": metric, "quotaValue": str(limit)}
    assert metric in body["message"]
    assert "retry-after" not in response.headers


IMAGES = "/cloud-desktop/v1/images"
TOKENS = "/iam/v1/tokens"
METADATA_TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token"

# gRPC call metadata: (key, value) pairs.
Metadata = tuple[tuple[str, str], ...]


async def copy_from_desktop(
    http: httpx.AsyncClient, auth: dict[str, str], desktop_id: str, name: str, **fields: Any
) -> dict[str, Any]:
    response = await http.post(
        f"{IMAGES}:copyFromDesktop", json={"desktopId": desktop_id, "name": name, **fields}, headers=auth
    )
    return ok_json(response)


async def copy_compute_image(
    http: httpx.AsyncClient, auth: dict[str, str], folder_id: str, image_id: str, name: str, **fields: Any
) -> dict[str, Any]:
    response = await http.post(
        f"{IMAGES}:copy",
        json={"folderId": folder_id, "imageId": image_id, "name": name, **fields},
        headers=auth,
    )
    return ok_json(response)


async def get_image(http: httpx.AsyncClient, auth: dict[str, str], image_id: str) -> dict[str, Any]:
    return ok_json(await http.get(f"{IMAGES}/{image_id}", headers=auth))


async def get_operation(http: httpx.AsyncClient, auth: dict[str, str], operation_id: str) -> dict[str, Any]:
    return ok_json(await http.get(f"/operations/{operation_id}", headers=auth))
