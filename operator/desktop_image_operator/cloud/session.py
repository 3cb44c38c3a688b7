"""`open_cloud`: the one place that owns the cloud client's shared resources for the operator's lifetime."""

from __future__ import annotations

import random
from types import TracebackType
from typing import Any

import httpx

from desktop_image_operator import __version__
from desktop_image_operator.base import SYSTEM_CLOCK, Backoff, CallGate, Clock
from desktop_image_operator.cloud.client import CopyFields, ManagedClient, OperationPolling
from desktop_image_operator.cloud.credentials.registry import TokenSourceRegistry
from desktop_image_operator.cloud.credentials.sources import TokenSource
from desktop_image_operator.cloud.credentials.token_service import TokenService
from desktop_image_operator.cloud.hooks import RequestObserver, unobserved
from desktop_image_operator.cloud.limits import CallLimiter
from desktop_image_operator.cloud.retry import RetryPolicy
from desktop_image_operator.cloud.settings import CloudSettings
from desktop_image_operator.cloud.transport import Transport
from desktop_image_operator.cloud.types import DesktopImageClient

USER_AGENT = f"desktop-image-operator/{__version__}"


class CloudSession:
    """Owns the shared `httpx.AsyncClient`, the gRPC channels, the call limiter and the token registry.

    Use as `async with open_cloud(settings) as session:`; then `session.client(token_source)` per credential
    and `session.token_sources` to get those sources.
    """

    def __init__(
        self,
        settings: CloudSettings,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        gate: CallGate | None = None,
        observe_request: RequestObserver = unobserved,
    ) -> None:
        self.settings = settings
        self._gate = gate
        self._observe_request = observe_request
        self._http_transport = http_transport
        self._clock = clock
        self._rng = rng or random.Random()
        self._http: httpx.AsyncClient | None = None
        self._channels: list[Any] = []
        self._transport: Transport | None = None
        self._limiter: CallLimiter | None = None
        self._registry: TokenSourceRegistry | None = None
        self._retry = RetryPolicy(
            max_attempts=settings.max_attempts,
            backoff=Backoff(base=settings.backoff_base_seconds, cap=settings.backoff_cap_seconds),
            retry_after_cap=settings.retry_after_cap_seconds,
        )
        self._polling = OperationPolling(
            backoff=Backoff(
                base=settings.operation_poll_initial_seconds, cap=settings.operation_poll_cap_seconds
            ),
            timeout=settings.operation_timeout_seconds,
        )
        # Shared by every client of the session: one refusal of labels on copies holds for all of them.
        self._copy_fields = CopyFields(settings.copy_fields)

    def __repr__(self) -> str:
        return f"CloudSession(transport={self.settings.transport!r}, open={self._http is not None})"

    async def __aenter__(self) -> CloudSession:
        settings = self.settings
        limits = httpx.Limits(
            max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
        )
        mounts: dict[str, httpx.AsyncBaseTransport] | None = None
        if self._http_transport is None:
            # The metadata service is link-local: never send it through an egress proxy from the environment.
            metadata = httpx.URL(settings.metadata_endpoint)
            origin = f"{metadata.scheme}://{metadata.netloc.decode()}"
            mounts = {origin: httpx.AsyncHTTPTransport(trust_env=False, limits=limits)}
        self._http = httpx.AsyncClient(
            transport=self._http_transport,
            mounts=mounts,
            timeout=httpx.Timeout(settings.request_timeout_seconds, connect=settings.connect_timeout_seconds),
            limits=limits,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )
        self._limiter = CallLimiter(
            max_concurrency=settings.max_concurrency,
            requests_per_second=settings.requests_per_second,
            burst=settings.burst,
            cooldown_base=settings.throttle_cooldown_base_seconds,
            cooldown_cap=settings.throttle_cooldown_cap_seconds,
            retry_after_cap=settings.retry_after_cap_seconds,
            clock=self._clock,
        )
        self._registry = TokenSourceRegistry(
            TokenService(
                self._http,
                iam_endpoint=settings.iam_endpoint,
                metadata_endpoint=settings.metadata_endpoint,
                retry=self._retry,
                clock=self._clock,
                rng=self._rng,
                observe_request=self._observe_request,
            )
        )
        try:
            self._transport = self._open_transport()
        except BaseException:
            await self.aclose()
            raise
        return self

    def _open_transport(self) -> Transport:
        settings = self.settings
        assert self._http is not None
        if settings.transport == "grpc":
            # Imported here so REST users never load grpc.
            from desktop_image_operator.cloud.transports.grpc import GrpcTransport, open_channel

            desktop = open_channel(
                settings.desktop_grpc_target, insecure=settings.grpc_insecure, user_agent=USER_AGENT
            )
            self._channels.append(desktop)
            if settings.operation_grpc_target == settings.desktop_grpc_target:
                operations = desktop
            else:
                operations = open_channel(
                    settings.operation_grpc_target, insecure=settings.grpc_insecure, user_agent=USER_AGENT
                )
                self._channels.append(operations)
            return GrpcTransport(desktop, operations, timeout=settings.request_timeout_seconds)
        from desktop_image_operator.cloud.transports.rest import RestTransport

        return RestTransport(
            self._http,
            desktop_endpoint=settings.desktop_endpoint,
            operation_endpoint=settings.operation_endpoint,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        channels, self._channels = self._channels, []
        for channel in channels:
            await channel.close()
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self._transport = None

    @property
    def token_sources(self) -> TokenSourceRegistry:
        if self._registry is None:
            raise RuntimeError("the cloud session is not open")
        return self._registry

    @property
    def limiter(self) -> CallLimiter:
        if self._limiter is None:
            raise RuntimeError("the cloud session is not open")
        return self._limiter

    def client(self, token_source: TokenSource) -> DesktopImageClient:
        """A client acting with `token_source`'s credentials; cheap, all share the session's resources."""
        if self._transport is None or self._limiter is None:
            raise RuntimeError("the cloud session is not open")
        return ManagedClient(
            self._transport,
            token_source,
            limiter=self._limiter,
            retry=self._retry,
            polling=self._polling,
            clock=self._clock,
            rng=self._rng,
            gate=self._gate,
            observe_request=self._observe_request,
            copy_fields=self._copy_fields,
        )


def open_cloud(
    settings: CloudSettings,
    *,
    http_transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = SYSTEM_CLOCK,
    rng: random.Random | None = None,
    gate: CallGate | None = None,
    observe_request: RequestObserver = unobserved,
) -> CloudSession:
    """The session for `settings`, to be entered with `async with`.

    `gate`, when given, is asked before every cloud call (leader election's fence). `http_transport`,
    `clock` and `rng` exist for tests (an `httpx.MockTransport`, virtual time, a seed). `observe_request`
    hears every cloud request's method, code and duration (the controller feeds its metrics with it).
    """
    return CloudSession(
        settings,
        http_transport=http_transport,
        clock=clock,
        rng=rng,
        gate=gate,
        observe_request=observe_request,
    )
