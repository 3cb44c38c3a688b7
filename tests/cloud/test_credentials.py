"""Authorized keys, the PS256 JWT, token caching / refresh / single flight, the registry."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from desktop_image_operator.base import Backoff
from desktop_image_operator.cloud.credentials import (
    IAM_TOKEN_AUDIENCE,
    AuthorizedKeyTokenSource,
    MetadataTokenSource,
    StaticTokenSource,
    TokenService,
    TokenSourceRegistry,
    make_jwt,
    parse_authorized_key,
)
from desktop_image_operator.cloud.errors import CloudError, Code, CredentialsError
from desktop_image_operator.cloud.retry import RetryPolicy

from .support import VirtualClock, authorized_key_json, other_rsa_key, private_pem, rsa_key

Handler = Callable[[httpx.Request], httpx.Response]


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


class FakeIam:
    """IAM and metadata endpoints behind an httpx.MockTransport, counting what they were asked."""

    def __init__(self, clock: VirtualClock, *, lifetime: float = 12 * 3600) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.exchanges: list[str] = []
        self.metadata_requests: list[httpx.Request] = []
        self.failures: list[httpx.Response] = []
        self.issued = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.failures:
            return self.failures.pop(0)
        if request.url.path == "/iam/v1/tokens":
            self.exchanges.append(json.loads(request.content)["jwt"])
            self.issued += 1
            return httpx.Response(
                200,
                json={
                    "iamToken": f"t1.iam-{self.issued}",
                    "expiresAt": iso(self.clock.time() + self.lifetime),
                },
            )
        if request.url.path == "/computeMetadata/v1/instance/service-accounts/default/token":
            self.metadata_requests.append(request)
            self.issued += 1
            return httpx.Response(
                200,
                json={
                    "access_token": f"t1.md-{self.issued}",
                    "expires_in": int(self.lifetime),
                    "token_type": "Bearer",
                },
            )
        return httpx.Response(404, json={"code": 5, "message": "no route"})


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def iam(clock: VirtualClock) -> FakeIam:
    return FakeIam(clock)


@pytest.fixture
async def service(clock: VirtualClock, iam: FakeIam) -> AsyncIterator[TokenService]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(iam.handler))
    yield TokenService(
        http,
        iam_endpoint="https://iam.test",
        metadata_endpoint="http://metadata.test",
        retry=RetryPolicy(max_attempts=3, backoff=Backoff(base=0.1, cap=1.0)),
        clock=clock,
        rng=random.Random(1),
    )
    await http.aclose()


# --- the key file ------------------------------------------------------------------------------------------


def test_key_parsing_skips_the_please_line() -> None:
    key = parse_authorized_key(authorized_key_json(key_id="ajekey1", service_account_id="ajesa1"))
    assert key.key_id == "ajekey1"
    assert key.service_account_id == "ajesa1"
    assert key.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert "PLEASE" not in key.private_key_pem
    assert key.key_algorithm == "RSA_2048"
    key.load_private_key()


def test_key_parsing_without_the_please_line_and_from_bytes_or_mapping() -> None:
    text = authorized_key_json(please_line=False)
    assert parse_authorized_key(text.encode()) == parse_authorized_key(json.loads(text))
    camel = {"id": "k", "serviceAccountId": "sa", "privateKey": private_pem()}
    assert parse_authorized_key(camel).service_account_id == "sa"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("id"), "'id'"),
        (lambda d: d.pop("service_account_id"), "'service_account_id'"),
        (lambda d: d.pop("private_key"), "'private_key'"),
        (lambda d: d.__setitem__("private_key", "PLEASE DO NOT REMOVE THIS LINE!\nnot a pem"), "no PEM"),
    ],
)
def test_key_parsing_names_what_is_missing(mutate: Callable[[dict[str, str]], object], expected: str) -> None:
    data = json.loads(authorized_key_json())
    mutate(data)
    with pytest.raises(CredentialsError, match=expected) as caught:
        parse_authorized_key(data)
    assert caught.value.code is Code.INVALID_ARGUMENT


def test_broken_key_material_is_refused_without_echoing_it() -> None:
    data = json.loads(authorized_key_json())
    pem = data["private_key"]
    data["private_key"] = pem.replace(pem.splitlines()[3], "A" * 64)
    key = parse_authorized_key(data)
    with pytest.raises(CredentialsError) as caught:
        key.load_private_key()
    assert caught.value.__cause__ is None
    assert "AAAA" not in str(caught.value)
    with pytest.raises(CredentialsError, match="not valid JSON") as not_json:
        parse_authorized_key("{not json " + pem)
    assert pem.splitlines()[2] not in str(not_json.value)


# --- the JWT ----------------------------------------------------------------------------------------------


def test_jwt_header_and_claims() -> None:
    key = parse_authorized_key(authorized_key_json(key_id="ajekey7", service_account_id="ajesa7"))
    token = make_jwt(key, key.load_private_key(), now=1_700_000_000.4)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "PS256", "kid": "ajekey7", "typ": "JWT"}
    claims = jwt.decode(
        token,
        rsa_key().public_key(),
        algorithms=["PS256"],
        audience=IAM_TOKEN_AUDIENCE,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == "ajesa7"
    assert claims["aud"] == "https://iam.api.cloud.yandex.net/iam/v1/tokens"
    assert claims["iat"] == 1_700_000_000
    assert 0 < claims["exp"] - claims["iat"] <= 3600


def test_jwt_signature_is_pss_with_salt_length_equal_to_the_hash_length() -> None:
    key = parse_authorized_key(authorized_key_json())
    token = make_jwt(key, key.load_private_key(), now=1_700_000_000)
    signing_input, _, signature = token.rpartition(".")
    raw = jwt.utils.base64url_decode(signature)
    rsa_key().public_key().verify(
        raw,
        signing_input.encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )


def test_jwt_lifetime_never_exceeds_an_hour() -> None:
    key = parse_authorized_key(authorized_key_json())
    token = make_jwt(key, key.load_private_key(), now=0, lifetime=7200)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600


# --- caching, refresh, single flight ----------------------------------------------------------------------


def key_source(service: TokenService) -> AuthorizedKeyTokenSource:
    return AuthorizedKeyTokenSource(parse_authorized_key(authorized_key_json()), service)


async def test_token_is_exchanged_once_and_cached(
    clock: VirtualClock, iam: FakeIam, service: TokenService
) -> None:
    source = key_source(service)
    assert await source.token() == "t1.iam-1"
    clock.advance(1800)
    assert await source.token() == "t1.iam-1"
    assert len(iam.exchanges) == 1
    claims = jwt.decode(
        iam.exchanges[0],
        rsa_key().public_key(),
        algorithms=["PS256"],
        audience=IAM_TOKEN_AUDIENCE,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iat"] == int(clock.time() - 1800)


async def test_token_is_refreshed_after_at_most_an_hour(
    clock: VirtualClock, iam: FakeIam, service: TokenService
) -> None:
    source = key_source(service)
    await source.token()
    clock.advance(3599)
    assert await source.token() == "t1.iam-1"
    clock.advance(2)
    assert await source.token() == "t1.iam-2"


async def test_short_lived_token_is_refreshed_when_a_tenth_of_its_life_remains(
    clock: VirtualClock, iam: FakeIam, service: TokenService
) -> None:
    iam.lifetime = 600
    source = key_source(service)
    await source.token()
    clock.advance(539)
    assert await source.token() == "t1.iam-1"
    clock.advance(2)
    assert await source.token() == "t1.iam-2"


async def test_concurrent_callers_share_one_refresh(
    clock: VirtualClock, iam: FakeIam, service: TokenService
) -> None:
    source = key_source(service)
    tokens = await asyncio.gather(*(source.token() for _ in range(50)))
    assert set(tokens) == {"t1.iam-1"}
    assert len(iam.exchanges) == 1
    clock.advance(4000)
    tokens = await asyncio.gather(*(source.token() for _ in range(50)))
    assert set(tokens) == {"t1.iam-2"}
    assert len(iam.exchanges) == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_refresh(
    iam: FakeIam, service: TokenService
) -> None:
    source = key_source(service)
    first = asyncio.ensure_future(source.token())
    second = asyncio.ensure_future(source.token())
    await asyncio.sleep(0)
    first.cancel()
    assert await second == "t1.iam-1"
    assert len(iam.exchanges) == 1


async def test_invalidate_forgets_only_the_refused_token(iam: FakeIam, service: TokenService) -> None:
    source = key_source(service)
    old = await source.token()
    assert source.invalidate("some-other-token")
    assert await source.token() == old
    assert source.invalidate(old)
    assert await source.token() == "t1.iam-2"
    # Many calls refused with the same old token cause one refresh, not one each.
    for _ in range(5):
        source.invalidate(old)
    assert await source.token() == "t1.iam-2"
    assert len(iam.exchanges) == 2


async def test_failed_early_refresh_keeps_using_a_still_valid_token(
    clock: VirtualClock, iam: FakeIam, service: TokenService
) -> None:
    source = key_source(service)
    await source.token()
    clock.advance(3700)
    iam.failures = [httpx.Response(503, json={"code": 14, "message": "down"})] * 3
    assert await clock.run(source.token()) == "t1.iam-1"
    clock.advance(12 * 3600)
    iam.failures = [httpx.Response(503, json={"code": 14, "message": "down"})] * 3
    with pytest.raises(CloudError) as caught:
        await clock.run(source.token())
    assert caught.value.code is Code.UNAVAILABLE
    assert not isinstance(caught.value, CredentialsError)


async def test_transient_iam_errors_are_retried(
    clock: VirtualClock, iam: FakeIam, service: TokenService
) -> None:
    iam.failures = [httpx.Response(503, text="busy"), httpx.Response(429, headers={"Retry-After": "0"})]
    source = key_source(service)
    assert await clock.run(source.token()) == "t1.iam-1"


async def test_iam_refusal_is_a_credentials_error_and_not_retried(
    clock: VirtualClock, iam: FakeIam, service: TokenService
) -> None:
    source = key_source(service)
    iam.failures = [
        httpx.Response(
            401,
            json={
                "code": 16,
                "message": "JWT signature does not verify",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": "iam-req-1"}
                ],
            },
        )
    ]
    with pytest.raises(CredentialsError) as caught:
        await clock.run(source.token())
    assert caught.value.code is Code.UNAUTHENTICATED
    assert caught.value.request_id == "iam-req-1"
    assert iam.failures == []
    assert iam.exchanges == []


async def test_iam_echoing_the_jwt_is_scrubbed(clock: VirtualClock, iam: FakeIam) -> None:
    seen: list[str] = []

    def echo(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)["jwt"]
        seen.append(sent)
        return httpx.Response(400, json={"code": 3, "message": f"bad jwt {sent}"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(echo))
    service = TokenService(
        http, iam_endpoint="https://iam.test", metadata_endpoint="http://md.test", clock=clock
    )
    with pytest.raises(CredentialsError) as caught:
        await key_source(service).token()
    assert seen
    assert seen[0] not in str(caught.value)
    assert seen[0] not in repr(caught.value)
    assert "<redacted>" in caught.value.message


async def test_metadata_source(clock: VirtualClock, iam: FakeIam, service: TokenService) -> None:
    iam.lifetime = 1000
    source = MetadataTokenSource(service)
    assert await source.token() == "t1.md-1"
    (request,) = iam.metadata_requests
    assert request.headers["Metadata-Flavor"] == "Google"
    assert request.url == "http://metadata.test/computeMetadata/v1/instance/service-accounts/default/token"
    clock.advance(899)
    assert await source.token() == "t1.md-1"
    clock.advance(2)
    assert await source.token() == "t1.md-2"


async def test_metadata_without_a_service_account_is_a_credentials_error(
    clock: VirtualClock, iam: FakeIam, service: TokenService
) -> None:
    iam.failures = [httpx.Response(404, text="not found")]
    with pytest.raises(CredentialsError) as caught:
        await MetadataTokenSource(service).token()
    assert caught.value.code is Code.NOT_FOUND


async def test_static_source() -> None:
    source = StaticTokenSource("  t1.static  ")
    assert await source.token() == "t1.static"
    assert source.invalidate("t1.static") is False
    assert await source.token() == "t1.static"
    with pytest.raises(ValueError, match="empty"):
        StaticTokenSource(" ")


# --- the registry -----------------------------------------------------------------------------------------


def test_registry_shares_one_source_per_distinct_key(service: TokenService) -> None:
    registry = TokenSourceRegistry(service)
    text = authorized_key_json()
    first = registry.from_key(text)
    assert registry.from_key(text) is first
    assert registry.from_key(json.loads(text)) is first
    assert registry.from_key(parse_authorized_key(text)) is first
    # Same id, different key material (a re-issued file): a source of its own.
    assert registry.from_key(authorized_key_json(key=other_rsa_key())) is not first
    assert registry.from_key(authorized_key_json(service_account_id="other-sa")) is not first
    assert registry.metadata() is registry.metadata()
    assert registry.static("t1.a") is registry.static("t1.a")
    assert registry.static("t1.a") is not registry.static("t1.b")


def test_registry_is_bounded(service: TokenService) -> None:
    registry = TokenSourceRegistry(service, max_entries=3)
    for n in range(10):
        registry.static(f"t1.{n}")
    assert len(registry) == 3


def test_registry_refuses_a_malformed_key(service: TokenService) -> None:
    with pytest.raises(CredentialsError):
        TokenSourceRegistry(service).from_key("{}")
