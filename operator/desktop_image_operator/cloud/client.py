"""The behaviour every cloud call shares, whatever the transport: bearer tokens (with one refresh on 401),
the session's limits, retries of transient errors, metrics, and following operations to completion."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from desktop_image_operator.base import SYSTEM_CLOCK, Backoff, CallGate, Clock
from desktop_image_operator.cloud.credentials.sources import TokenSource
from desktop_image_operator.cloud.errors import CloudError, Code
from desktop_image_operator.cloud.hooks import RequestObserver, unobserved
from desktop_image_operator.cloud.limits import CallLimiter
from desktop_image_operator.cloud.retry import RetryPolicy
from desktop_image_operator.cloud.transport import (
    METHOD_COPY,
    METHOD_COPY_FROM_DESKTOP,
    METHOD_DELETE,
    METHOD_DESKTOP_GET,
    METHOD_GET,
    METHOD_LIST,
    METHOD_OPERATION_CANCEL,
    METHOD_OPERATION_GET,
    METHOD_UPDATE,
    CallContext,
    Transport,
)
from desktop_image_operator.cloud.types import UPDATABLE_FIELDS, CloudImage, CloudOperation, CopyRequest

log = logging.getLogger(__name__)

T = TypeVar("T")

LIST_PAGE_SIZE = 1000
# 1000 pages of 1000 images is far beyond the folder quota; the bound only stops a misbehaving server.
MAX_LIST_PAGES = 1000


@dataclass(frozen=True)
class OperationPolling:
    """How `follow_operation` polls: equal-jitter backoff between polls, an overall bound, and how many
    NOT_FOUND answers to forgive right after creation (the operation may not be visible yet)."""

    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=15.0))
    timeout: float = 3600.0
    not_found_tolerance: int = 3


class CopyFields:
    """Whether copy requests may carry labels and description, beyond the fields the published API pages
    list. One per session, shared by its clients: whether the cloud accepts them is the cloud's trait,
    not a credential's."""

    def __init__(self, mode: Literal["extended", "documented"] = "extended") -> None:
        self._carry = mode == "extended"

    @property
    def carry(self) -> bool:
        return self._carry

    def refused(self) -> None:
        """The cloud refused them: from now on every copy goes out with the documented fields only."""
        self._carry = False


def documented_only(request: CopyRequest) -> CopyRequest:
    """The copy without the fields the published API pages do not list (labels, description)."""
    return dataclasses.replace(request, labels={}, description="")


def documented_key(idempotency_key: str) -> str:
    """The idempotency key of a copy sent with the documented fields only, derived from the original's.

    Not the original key: a cloud that honours keys may keep a refused call's answer under its key (and
    answer the bare copy with the same refusal) or refuse a key reused with another body. Derived, not
    random: a repeat of the same logical copy (a retry, a restarted operator) sends the same bare key and
    gets the operation the first bare copy started instead of a second image.
    """
    try:
        namespace = uuid.UUID(idempotency_key)
    except ValueError:
        namespace = uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key)
    return str(uuid.uuid5(namespace, "documented"))


def _carries_extended_fields(request: CopyRequest) -> bool:
    return bool(request.labels) or bool(request.description)


def name_filter(name: str) -> str:
    """The List filter selecting exactly `name` (quotes and backslashes escaped)."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'name="{escaped}"'


class ManagedClient:
    """`DesktopImageClient` over any `Transport`. Cheap: one per credential, sharing the session's limits."""

    def __init__(
        self,
        transport: Transport,
        token_source: TokenSource,
        *,
        limiter: CallLimiter,
        retry: RetryPolicy | None = None,
        polling: OperationPolling | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        gate: CallGate | None = None,
        observe_request: RequestObserver = unobserved,
        copy_fields: CopyFields | None = None,
    ) -> None:
        self._transport = transport
        self._copy_fields = copy_fields or CopyFields()
        self._observe_request = observe_request
        self._gate = gate
        self.token_source = token_source
        self._limiter = limiter
        self._retry = retry or RetryPolicy()
        self._polling = polling or OperationPolling()
        self._clock = clock
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"ManagedClient(transport={self._transport!r}, token_source={self.token_source!r})"

    # --- the DesktopImageClient interface -----------------------------------------------------------------

    @property
    def copies_carry_labels(self) -> bool:
        """Whether a copy's image is born with the request's labels. False when the settings say
        "documented" or once the cloud refused them (the CloudSession remembers): an image then has no
        ownership labels until an Update stamps them, so finding it again after a crash rests on the
        operation record, the image's name and its creation time."""
        return self._copy_fields.carry

    async def get_image(self, image_id: str) -> CloudImage:
        _require("image_id", image_id)
        return await self._call(METHOD_GET, lambda ctx: self._transport.get_image(ctx, image_id))

    async def find_images(self, folder_id: str, name: str | None = None) -> list[CloudImage]:
        _require("folder_id", folder_id)
        if name is not None:
            _require("name", name)
        found: list[CloudImage] = []
        page_token = ""
        seen_tokens: set[str] = set()
        for _ in range(MAX_LIST_PAGES):
            list_page = functools.partial(
                self._transport.list_images,
                folder_id=folder_id,
                filter=name_filter(name) if name is not None else "",
                page_size=LIST_PAGE_SIZE,
                page_token=page_token,
            )
            page = await self._call(METHOD_LIST, list_page)
            # Filter again locally: a server that ignored the filter must not make us adopt a stranger.
            found.extend(image for image in page.images if name is None or image.name == name)
            page_token = page.next_page_token
            if not page_token:
                return found
            if page_token in seen_tokens:
                raise CloudError(Code.INTERNAL, "List returned a page token twice")
            seen_tokens.add(page_token)
        raise CloudError(Code.INTERNAL, f"List did not end within {MAX_LIST_PAGES} pages")

    async def copy(self, request: CopyRequest, *, idempotency_key: str) -> CloudOperation:
        """Start the copy. Labels and description go along unless this cloud is known to refuse them;
        a first refusal (INVALID_ARGUMENT) sends the copy again at once with the documented fields only."""
        _require("idempotency_key", idempotency_key)
        if not _carries_extended_fields(request):
            return await self._send_copy(request, idempotency_key)
        if not self._copy_fields.carry:
            return await self._send_copy(documented_only(request), documented_key(idempotency_key))
        try:
            return await self._send_copy(request, idempotency_key)
        except CloudError as exc:
            if exc.code is not Code.INVALID_ARGUMENT:
                raise
            refusal = exc
        return await self._copy_documented_after(refusal, request, idempotency_key)

    async def _copy_documented_after(
        self, refusal: CloudError, request: CopyRequest, idempotency_key: str
    ) -> CloudOperation:
        log.warning(
            "cloud refused a copy carrying labels or description; sending it with the documented fields only",
            extra={"code": refusal.code.name, "request_id": refusal.request_id, "reason": refusal.message},
        )
        operation = await self._send_copy(documented_only(request), documented_key(idempotency_key))
        # Remembered only now: the same copy without those fields was accepted, so they were what the
        # cloud refused (a bare copy refused as well means something else is wrong, and that error rises).
        self._copy_fields.refused()
        return operation

    async def _send_copy(self, request: CopyRequest, idempotency_key: str) -> CloudOperation:
        method = METHOD_COPY_FROM_DESKTOP if request.from_desktop else METHOD_COPY
        return await self._call(
            method, lambda ctx: self._transport.copy(ctx, request), idempotency_key=idempotency_key
        )

    async def update(
        self,
        image_id: str,
        *,
        mask: Collection[str],
        name: str | None = None,
        description: str | None = None,
        labels: Mapping[str, str] | None = None,
        idempotency_key: str,
    ) -> CloudOperation:
        _require("image_id", image_id)
        _require("idempotency_key", idempotency_key)
        fields = frozenset(mask)
        # An empty mask would make the cloud overwrite every field: never send one.
        if not fields:
            raise ValueError("update mask is empty")
        if unknown := fields - UPDATABLE_FIELDS:
            raise ValueError(f"update mask names fields that cannot change: {sorted(unknown)}")
        given = {"name": name, "description": description, "labels": labels}
        if missing := sorted(field for field in fields if given[field] is None):
            raise ValueError(f"update mask names fields without a value: {missing}")
        return await self._call(
            METHOD_UPDATE,
            lambda ctx: self._transport.update(
                ctx, image_id, mask=fields, name=name, description=description, labels=labels
            ),
            idempotency_key=idempotency_key,
        )

    async def delete(self, image_id: str, *, idempotency_key: str) -> CloudOperation:
        _require("image_id", image_id)
        _require("idempotency_key", idempotency_key)
        return await self._call(
            METHOD_DELETE, lambda ctx: self._transport.delete(ctx, image_id), idempotency_key=idempotency_key
        )

    async def get_desktop_folder(self, desktop_id: str) -> str:
        _require("desktop_id", desktop_id)
        return await self._call(
            METHOD_DESKTOP_GET, lambda ctx: self._transport.get_desktop_folder(ctx, desktop_id)
        )

    async def get_operation(self, operation_id: str) -> CloudOperation:
        _require("operation_id", operation_id)
        return await self._call(
            METHOD_OPERATION_GET, lambda ctx: self._transport.get_operation(ctx, operation_id)
        )

    async def cancel_operation(self, operation_id: str) -> CloudOperation:
        _require("operation_id", operation_id)
        return await self._call(
            METHOD_OPERATION_CANCEL, lambda ctx: self._transport.cancel_operation(ctx, operation_id)
        )

    async def follow_operation(self, operation_id: str, *, max_wait: float | None = None) -> CloudOperation:
        _require("operation_id", operation_id)
        bound = self._polling.timeout if max_wait is None else max_wait
        deadline = self._clock.monotonic() + bound
        not_found = 0
        seen = False
        # Bounded by the deadline; the count bound is a second guard against a clock that stands still.
        for poll in range(1, 100_000):
            try:
                operation = await self.get_operation(operation_id)
            except CloudError as exc:
                if exc.code is not Code.NOT_FOUND or seen or not_found >= self._polling.not_found_tolerance:
                    raise
                not_found += 1
            else:
                seen = True
                if operation.done:
                    return operation
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                break
            await self._clock.sleep(min(remaining, self._polling.backoff.equal_jitter(poll, self._rng)))
        raise CloudError(Code.DEADLINE_EXCEEDED, f"operation {operation_id} not done within {bound:g}s")

    # --- one logical call: attempts, token refresh, limits, metrics ----------------------------------------

    async def _call(
        self,
        method: str,
        send: Callable[[CallContext], Awaitable[T]],
        *,
        idempotency_key: str | None = None,
    ) -> T:
        """The call with its retries, under the gate: a step-down cancels it wherever it waits (the token,
        the limiter, the answer, a retry's pause) and it raises `Fenced`."""
        if self._gate is None:
            return await self._attempts(method, send, idempotency_key)
        async with self._gate.guard(method):
            return await self._attempts(method, send, idempotency_key)

    async def _attempts(
        self, method: str, send: Callable[[CallContext], Awaitable[T]], idempotency_key: str | None
    ) -> T:
        trace_id = str(uuid.uuid4())  # the same for every attempt of this call
        attempt = 0
        refreshed = False
        # max_attempts tries plus at most one repeat after a token refresh.
        for _ in range(self._retry.max_attempts + 1):
            self._admit(method)  # before a token exchange, which is a cloud call too
            token = await self.token_source.token()
            async with self._limiter.slot() as started:
                # The slot may have made us wait: look again right before sending, and bound the request.
                ctx = CallContext(
                    token=token,
                    request_id=str(uuid.uuid4()),
                    trace_id=trace_id,
                    idempotency_key=idempotency_key,
                    timeout=self._deadline(method),
                )
                try:
                    result = await self._send(method, send, ctx)
                except CloudError as exc:  # not Fenced: this instance may not act, the cloud did not fail
                    error = exc
                    self._observe_request(method, error.code.name, self._clock.monotonic() - started)
                else:
                    self._observe_request(method, Code.OK.name, self._clock.monotonic() - started)
                    self._limiter.succeeded(started)
                    return result
            if error.code is Code.UNAUTHENTICATED and not refreshed and self.token_source.invalidate(token):
                refreshed = True
                log.info("cloud refused the token; refreshing it once", extra={"method": method})
                continue
            attempt += 1
            if error.code is Code.RESOURCE_EXHAUSTED and not error.quota_exceeded:
                self._limiter.throttled(error.retry_after)
            if not self._retry.should_retry(error, attempt):
                raise error
            delay = self._retry.delay(error, attempt, self._rng)
            log.info(
                "cloud call failed, retrying",
                extra={
                    "method": method,
                    "code": error.code.name,
                    "request_id": error.request_id,
                    "attempt": attempt,
                    "delay": round(delay, 3),
                },
            )
            await self._clock.sleep(delay)
        raise AssertionError("unreachable: the last attempt either returns or raises")

    async def _send(self, method: str, send: Callable[[CallContext], Awaitable[T]], ctx: CallContext) -> T:
        """One request. Under a gate its deadline holds here too, whatever the transport makes of it (an
        HTTP timeout bounds each read, not the whole answer); what fails once the gate has shut is
        `Fenced`, not a failure of the cloud."""
        if ctx.timeout is None:
            return await send(ctx)
        try:
            async with asyncio.timeout(ctx.timeout):
                return await send(ctx)
        except TimeoutError:
            error = CloudError(
                Code.DEADLINE_EXCEEDED, f"no answer within {ctx.timeout:.3g} s", request_id=ctx.request_id
            )
        except CloudError as exc:
            error = exc
        self._admit(method)
        raise error

    def _deadline(self, method: str) -> float | None:
        """Seconds the request may take: what is left of the gate's time (checked now), None without one
        (the transport's own timeout then)."""
        if self._gate is None:
            return None
        self._gate.check(method)
        return self._gate.remaining()

    def _admit(self, method: str) -> None:
        """Raise `Fenced` when the gate (leader election) forbids cloud calls now."""
        if self._gate is not None:
            self._gate.check(method)


def _require(name: str, value: str) -> None:
    if not value:
        raise ValueError(f"{name} must not be empty")
