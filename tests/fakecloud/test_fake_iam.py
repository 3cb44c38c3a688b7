"""IAM: the authorized key, the PS256 JWT exchange, token expiry, bearer checks, the metadata service."""

from __future__ import annotations

import json

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from desktop_image_operator_dev.fakecloud import FakeCloud, FakeCloudConfig
from desktop_image_operator_dev.fakecloud.iam import AUDIENCE
from tests.support.clocks import ManualClock

from .helpers import IMAGES, METADATA_TOKEN, TOKENS, assert_rest_error, make_jwt, private_pem


def test_authorized_key_looks_like_yc_iam_key_create(cloud: FakeCloud) -> None:
    key = cloud.authorized_key()
    assert set(key) == {
        "id",
        "service_account_id",
        "created_at",
        "key_algorithm",
        "public_key",
        "private_key",
    }
    assert key["id"] == cloud.key_id
    assert key["service_account_id"] == cloud.service_account_id
    assert key["key_algorithm"] == "RSA_2048"
    assert key["created_at"].endswith("Z")
    assert key["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    first_line, rest = key["private_key"].split("\n", 1)
    assert first_line == f"PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID {key['id']}"
    assert rest.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    loaded = serialization.load_pem_private_key(rest.encode(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.key_size == 2048


async def test_a_fresh_fake_generates_its_own_key() -> None:
    first, second = FakeCloud(), FakeCloud()
    assert first.authorized_key()["public_key"] != second.authorized_key()["public_key"]


async def test_jwt_exchange_gives_a_working_token(cloud: FakeCloud, http: httpx.AsyncClient) -> None:
    response = await http.post(TOKENS, json={"jwt": make_jwt(cloud.authorized_key())})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"iamToken", "expiresAt"}
    assert body["expiresAt"].endswith("Z")
    listed = await http.get(
        IMAGES, params={"folderId": cloud.folder_id}, headers={"Authorization": f"Bearer {body['iamToken']}"}
    )
    assert listed.status_code == 200


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"audience": "https://example.com/"}, ["aud"]),
        ({"lifetime": 3601}, ["3600"]),
        ({"issuer": "ajeimpostor000000000"}, ["iss"]),
        ({"key_id": "ajenosuchkey00000000"}, ["ajenosuchkey00000000"]),
        ({"typ": "JWS"}, ["typ"]),
        ({"issued_at": 0}, ["expired"]),
    ],
)
async def test_bad_jwts_are_unauthenticated(
    cloud: FakeCloud, http: httpx.AsyncClient, change: dict[str, object], words: list[str]
) -> None:
    token = make_jwt(cloud.authorized_key(), **change)  # type: ignore[arg-type]
    assert_rest_error(await http.post(TOKENS, json={"jwt": token}), 401, 16, *words)


async def test_wrong_key_is_unauthenticated(cloud: FakeCloud, http: httpx.AsyncClient) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = make_jwt(cloud.authorized_key(), signing_key=stranger)
    assert_rest_error(await http.post(TOKENS, json={"jwt": token}), 401, 16, "signature")


@pytest.mark.parametrize("algorithm", ["RS256", "PS384", "HS256"])
async def test_only_ps256_is_accepted(cloud: FakeCloud, http: httpx.AsyncClient, algorithm: str) -> None:
    key = cloud.authorized_key()
    signing_key = "a-shared-secret-of-some-length-32b" if algorithm == "HS256" else private_pem(key)
    token = make_jwt(key, algorithm=algorithm, signing_key=signing_key)
    body = assert_rest_error(await http.post(TOKENS, json={"jwt": token}), 401, 16, algorithm, "PS256")
    assert "not supported" in body["message"]


async def test_malformed_requests(http: httpx.AsyncClient) -> None:
    assert_rest_error(await http.post(TOKENS, json={"jwt": "not-a-jwt"}), 401, 16, "malformed")
    assert_rest_error(await http.post(TOKENS, json={}), 400, 3, "jwt")
    assert_rest_error(await http.post(TOKENS, json={"jwt": "x" * 8001}), 400, 3, "jwt")
    assert_rest_error(await http.post(TOKENS, json={"yandexPassportOauthToken": "y0_abc"}), 401, 16)


async def test_jwt_of_another_service_account(cloud: FakeCloud, http: httpx.AsyncClient) -> None:
    other = cloud.create_service_account("other")
    response = await http.post(TOKENS, json={"jwt": make_jwt(other)})
    assert response.status_code == 200
    token = response.json()["iamToken"]
    copy = await http.post(
        f"{IMAGES}:copyFromDesktop",
        json={"desktopId": cloud.stopped_desktop_id, "name": "x"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert copy.json()["createdBy"] == other["service_account_id"]
    # A key's JWT cannot speak for another account.
    mixed = make_jwt(other, issuer=cloud.service_account_id)
    assert_rest_error(await http.post(TOKENS, json={"jwt": mixed}), 401, 16, "iss")


@pytest.mark.parametrize(
    "config", [FakeCloudConfig(copy_seconds=1, operation_seconds=1, token_ttl_seconds=60)]
)
async def test_tokens_expire(cloud: FakeCloud, http: httpx.AsyncClient, clock: ManualClock) -> None:
    token = (await http.post(TOKENS, json={"jwt": make_jwt(cloud.authorized_key())})).json()["iamToken"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await http.get(IMAGES, params={"folderId": cloud.folder_id}, headers=headers)).status_code == 200
    clock.advance(61)
    assert_rest_error(
        await http.get(IMAGES, params={"folderId": cloud.folder_id}, headers=headers), 401, 16, "expired"
    )


async def test_default_token_lifetime_is_12_hours(
    cloud: FakeCloud, http: httpx.AsyncClient, clock: ManualClock
) -> None:
    token = (await http.post(TOKENS, json={"jwt": make_jwt(cloud.authorized_key())})).json()["iamToken"]
    headers = {"Authorization": f"Bearer {token}"}
    clock.advance(12 * 3600 - 5)
    assert (await http.get(IMAGES, params={"folderId": cloud.folder_id}, headers=headers)).status_code == 200
    clock.advance(10)
    assert (await http.get(IMAGES, params={"folderId": cloud.folder_id}, headers=headers)).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer t1.nonsense"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
    ],
)
async def test_cloud_calls_need_a_valid_bearer_token(
    cloud: FakeCloud, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert_rest_error(await http.get(IMAGES, params={"folderId": cloud.folder_id}, headers=headers), 401, 16)
    assert_rest_error(await http.get(f"{IMAGES}/x", headers=headers), 401, 16)
    assert_rest_error(
        await http.post(
            f"{IMAGES}:copyFromDesktop", json={"desktopId": cloud.stopped_desktop_id}, headers=headers
        ),
        401,
        16,
    )
    assert (await http.get("/fake/images")).json() == {"images": []}


async def test_metadata_service(cloud: FakeCloud, http: httpx.AsyncClient) -> None:
    refused = await http.get(METADATA_TOKEN)
    assert refused.status_code == 403
    response = await http.get(METADATA_TOKEN, headers={"Metadata-Flavor": "Google"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 12 * 3600
    listed = await http.get(
        IMAGES,
        params={"folderId": cloud.folder_id},
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert listed.status_code == 200
    log = (await http.get("/fake/requests", params={"method": "Metadata.Token"})).json()["requests"]
    assert [entry["code"] for entry in log] == ["PERMISSION_DENIED", "OK"]
    assert log[1]["principal"] == cloud.service_account_id


async def test_request_log_never_holds_secrets(cloud: FakeCloud, http: httpx.AsyncClient) -> None:
    key = cloud.authorized_key()
    signed = make_jwt(key)
    issued = (await http.post(TOKENS, json={"jwt": signed})).json()["iamToken"]
    await http.post(TOKENS, json={"jwt": make_jwt(key, audience=AUDIENCE + "x")})
    metadata_token = (await http.get(METADATA_TOKEN, headers={"Metadata-Flavor": "Google"})).json()[
        "access_token"
    ]
    for token in (issued, metadata_token, "t1.bogus"):
        await http.get(
            IMAGES, params={"folderId": cloud.folder_id}, headers={"Authorization": f"Bearer {token}"}
        )
    text = (await http.get("/fake/requests")).text
    entries = json.loads(text)["requests"]
    assert {entry["method"] for entry in entries} == {
        "IamTokenService.Create",
        "Metadata.Token",
        "DesktopImageService.List",
    }
    for secret in (
        signed,
        signed.split(".")[2],
        issued,
        metadata_token,
        "t1.bogus",
        private_pem(key).splitlines()[1],
    ):
        assert secret not in text
    assert "Bearer" not in text
