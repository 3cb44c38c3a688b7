"""Token sources: where the bearer token of a cloud call comes from, cached and refreshed before expiry."""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass, field
from typing import Protocol

from desktop_image_operator.base import SYSTEM_CLOCK, Clock
from desktop_image_operator.cloud.credentials.keys import AuthorizedKey, make_jwt
from desktop_image_operator.cloud.credentials.token_service import IssuedToken, TokenService
from desktop_image_operator.cloud.errors import CloudError

log = logging.getLogger(__name__)

# Refresh after at most an hour (IAM tokens live up to 12 h) or when 10% of the lifetime remains.
MAX_TOKEN_AGE = 3600.0
REFRESH_FRACTION = 0.1
# A cached token closer than this to expiry is not handed out even when a refresh fails.
EXPIRY_MARGIN = 30.0


class TokenSource(Protocol):
    async def token(self) -> str:
        """A currently valid IAM token (raises `CloudError` / `CredentialsError` when none can be had)."""
        ...

    def invalidate(self, token: str) -> bool:
        """Forget `token` after the cloud refused it; returns whether asking again can give another one."""
        ...


@dataclass(frozen=True)
class _Cached:
    value: str = field(repr=False)
    refresh_at: float
    expires_at: float


class CachingTokenSource:
    """Caches the issued token; one refresh at a time however many callers need it (single flight)."""

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._cached: _Cached | None = None
        self._refreshing: asyncio.Future[_Cached] | None = None
        self.refresh_count = 0

    async def _issue(self) -> IssuedToken:
        raise NotImplementedError

    async def token(self) -> str:
        cached = self._cached
        now = self._clock.monotonic()
        if cached is not None and now < cached.refresh_at:
            return cached.value
        try:
            return (await self._refresh()).value
        except CloudError as exc:
            # A refresh that fails early is not fatal while the old token still works.
            if cached is not None and self._clock.monotonic() < cached.expires_at - EXPIRY_MARGIN:
                log.warning(
                    "token refresh failed; using the cached token until it expires",
                    extra={"source": repr(self), "code": exc.code.name},
                )
                return cached.value
            raise

    def invalidate(self, token: str) -> bool:
        cached = self._cached
        if cached is not None and hmac.compare_digest(cached.value.encode(), token.encode()):
            self._cached = None
        return True

    async def _refresh(self) -> _Cached:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._run_refresh())
            # Retrieve the outcome even if every waiter was cancelled, so it is never reported as lost.
            self._refreshing.add_done_callback(lambda f: f.cancelled() or f.exception())
        # shield: one cancelled caller must not cancel the refresh the others are waiting for.
        return await asyncio.shield(self._refreshing)

    async def _run_refresh(self) -> _Cached:
        issued = await self._issue()
        now = self._clock.monotonic()
        lifetime = issued.lifetime if issued.lifetime is not None and issued.lifetime > 0 else MAX_TOKEN_AGE
        refresh_in = min(MAX_TOKEN_AGE, lifetime * (1.0 - REFRESH_FRACTION))
        cached = _Cached(issued.value, refresh_at=now + refresh_in, expires_at=now + lifetime)
        self._cached = cached
        self.refresh_count += 1
        return cached


class AuthorizedKeyTokenSource(CachingTokenSource):
    """Signs a JWT with a service account's authorized key and exchanges it at IAM."""

    def __init__(self, key: AuthorizedKey, service: TokenService) -> None:
        super().__init__(clock=service.clock)
        self.key_id = key.key_id
        self.service_account_id = key.service_account_id
        self._key = key
        self._private_key = key.load_private_key()  # fails early on a broken key
        self._service = service

    def __repr__(self) -> str:
        return f"AuthorizedKeyTokenSource(key_id={self.key_id!r}, sa={self.service_account_id!r})"

    async def _issue(self) -> IssuedToken:
        signed = make_jwt(self._key, self._private_key, now=self._clock.time())
        return await self._service.create_iam_token(signed)


class MetadataTokenSource(CachingTokenSource):
    """The token of the service account the metadata service vouches for (VM, node, federated pod)."""

    def __init__(self, service: TokenService) -> None:
        super().__init__(clock=service.clock)
        self._service = service

    def __repr__(self) -> str:
        return "MetadataTokenSource()"

    async def _issue(self) -> IssuedToken:
        return await self._service.metadata_token()


class StaticTokenSource:
    """A fixed IAM token given by a person; it cannot be refreshed."""

    def __init__(self, token: str) -> None:
        if not token.strip():
            raise ValueError("empty IAM token")
        self._token = token.strip()

    def __repr__(self) -> str:
        return "StaticTokenSource(<redacted>)"

    async def token(self) -> str:
        return self._token

    def invalidate(self, token: str) -> bool:
        return False
