"""The two HTTP endpoints that issue IAM tokens: IAM's JWT exchange and the instance metadata service.

Transient failures are retried here (bounded, with backoff); a refusal, whatever its code (UNAUTHENTICATED,
NOT_FOUND for an unknown key, INVALID_ARGUMENT, ...), becomes a `CredentialsError`: it is the credentials that
are wrong, not the resource the caller was after.
Nothing secret (the JWT, the token) is ever put in an error, a log line or a metric label.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from desktop_image_operator.base import SYSTEM_CLOCK, Clock
from desktop_image_operator.cloud.errors import RETRYABLE_CODES, CloudError, Code, CredentialsError
from desktop_image_operator.cloud.hooks import RequestObserver, unobserved
from desktop_image_operator.cloud.retry import RetryPolicy
from desktop_image_operator.cloud.transport import METHOD_IAM_CREATE_TOKEN, METHOD_METADATA_TOKEN
from desktop_image_operator.cloud.transports.rest import json_object, transport_error
from desktop_image_operator.cloud.transports.rest_wire import parse_timestamp

log = logging.getLogger(__name__)

IAM_TOKENS_PATH = "/iam/v1/tokens"
METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
_REDACTED = "<redacted>"


@dataclass(frozen=True)
class IssuedToken:
    """A fresh IAM token and how long it lives from now (None when the issuer did not say)."""

    value: str = field(repr=False)
    lifetime: float | None

    def __str__(self) -> str:
        return f"IssuedToken({_REDACTED}, lifetime={self.lifetime})"


def _scrub(error: CloudError, secrets: tuple[str, ...]) -> CloudError:
    """The same error with any echo of a secret cut out of its message."""
    message = error.message
    for secret in secrets:
        if secret:
            message = message.replace(secret, _REDACTED)
    return error if message == error.message else error.with_message(message)


def _final(method: str, error: CloudError) -> CloudError:
    """The error to raise once retrying is over: an outage or throttling stays what it is (nothing is wrong
    with the credentials); any other answer refused the credentials."""
    if error.code in RETRYABLE_CODES:
        return error
    return CredentialsError(
        f"{method} refused the credentials ({error.code.name}): {error.message}",
        code=error.code,
        request_id=error.request_id,
    )


class TokenService:
    """Asks for IAM tokens over the session's shared `httpx.AsyncClient` (its timeouts and pool apply)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        iam_endpoint: str,
        metadata_endpoint: str,
        retry: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        observe_request: RequestObserver = unobserved,
    ) -> None:
        self._http = http
        self._observe_request = observe_request
        self._iam_url = iam_endpoint.rstrip("/") + IAM_TOKENS_PATH
        self._metadata_url = metadata_endpoint.rstrip("/") + METADATA_TOKEN_PATH
        self._retry = retry or RetryPolicy()
        self.clock = clock
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"TokenService(iam={self._iam_url!r}, metadata={self._metadata_url!r})"

    async def create_iam_token(self, signed_jwt: str) -> IssuedToken:
        """Exchange a signed JWT at `POST /iam/v1/tokens`."""

        async def attempt() -> httpx.Response:
            return await self._http.post(self._iam_url, json={"jwt": signed_jwt})

        data = await self._call(METHOD_IAM_CREATE_TOKEN, attempt, secrets=(signed_jwt,))
        token = data.get("iamToken")
        if not isinstance(token, str) or not token:
            raise CloudError(Code.INTERNAL, "IAM answer carries no iamToken")
        expires_at = parse_timestamp(data.get("expiresAt"))
        lifetime = expires_at.timestamp() - self.clock.time() if expires_at is not None else None
        return IssuedToken(token, lifetime)

    async def metadata_token(self) -> IssuedToken:
        """The token of the service account attached to this VM / node / federated workload."""

        async def attempt() -> httpx.Response:
            return await self._http.get(self._metadata_url, headers={"Metadata-Flavor": "Google"})

        data = await self._call(METHOD_METADATA_TOKEN, attempt, secrets=())
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise CloudError(Code.INTERNAL, "metadata service answer carries no access_token")
        expires_in = data.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else None
        return IssuedToken(token, lifetime)

    async def _call(
        self,
        method: str,
        attempt: Callable[[], Awaitable[httpx.Response]],
        *,
        secrets: tuple[str, ...],
    ) -> Mapping[str, Any]:
        for number in range(1, self._retry.max_attempts + 1):
            started = self.clock.monotonic()
            try:
                data = await self._attempt(attempt)
            except CloudError as raw_error:
                error = _scrub(raw_error, secrets)
                self._observe_request(method, error.code.name, self.clock.monotonic() - started)
                if not self._retry.should_retry(error, number):
                    raise _final(method, error) from None
                delay = self._retry.delay(error, number, self._rng)
                log.info(
                    "token request failed, retrying",
                    extra={"method": method, "code": error.code.name, "attempt": number, "delay": delay},
                )
                await self.clock.sleep(delay)
            else:
                self._observe_request(method, Code.OK.name, self.clock.monotonic() - started)
                return data
        raise AssertionError("unreachable: the last attempt either returns or raises")

    @staticmethod
    async def _attempt(attempt: Callable[[], Awaitable[httpx.Response]]) -> Mapping[str, Any]:
        try:
            response = await attempt()
        except httpx.HTTPError as exc:
            raise transport_error(exc, None) from None
        return json_object(response, None)
