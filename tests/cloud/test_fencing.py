"""The fence around cloud calls: every request carries a deadline within the fence's end, is checked again
right before it is sent, and is cancelled in flight when the fence is revoked; what the fence stops is
`Fenced` and is never recorded as a failure of the cloud."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from desktop_image_operator.base import Backoff, Fence, Fenced
from desktop_image_operator.cloud.client import ManagedClient
from desktop_image_operator.cloud.errors import CloudError, Code
from desktop_image_operator.cloud.limits import CallLimiter
from desktop_image_operator.cloud.retry import RetryPolicy
from desktop_image_operator.cloud.transport import CallContext
from desktop_image_operator.cloud.transports.rest import RestTransport

from .support import Call, FakeTokenSource, ScriptedTransport, image

pytestmark = pytest.mark.timeout(30)

# Real time here (the fence and the deadline run on the loop's clock): short spans, generous slack.
SLACK = 0.5


class HangingTransport(ScriptedTransport):
    """Never answers the first `hanging` calls (they wait until cancelled); scripts answer the rest."""

    def __init__(self, hanging: int = 1_000) -> None:
        super().__init__()
        self.hanging = hanging
        self.sent = asyncio.Event()

    async def _answer(self, method: str, ctx: CallContext, **args: Any) -> Any:
        self.sent.set()
        if self.hanging > 0:
            self.hanging -= 1
            self.calls.append(Call(method, ctx, args))
            await asyncio.Event().wait()
        return await super()._answer(method, ctx, **args)


class Observed:
    """What the client reported to its metrics hook: (method, code) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def __call__(self, method: str, code: str, seconds: float) -> None:
        self.requests.append((method, code))


def client_for(
    transport: ScriptedTransport,
    fence: Fence | None,
    observed: Observed | None = None,
    limiter: CallLimiter | None = None,
) -> ManagedClient:
    return ManagedClient(
        transport,
        FakeTokenSource(),
        limiter=limiter or CallLimiter(max_concurrency=4, requests_per_second=1000),
        retry=RetryPolicy(max_attempts=3, backoff=Backoff(base=0.01, cap=0.02)),
        gate=fence,
        observe_request=observed or Observed(),
    )


def open_fence(seconds: float) -> Fence:
    fence = Fence()
    fence.grant(time.monotonic() + seconds)
    return fence


async def test_a_request_carries_a_deadline_no_later_than_the_end_of_the_fence() -> None:
    transport = ScriptedTransport()
    transport.script("get_image", image())
    await client_for(transport, open_fence(5.0)).get_image("img-1")
    deadline = transport.calls[0].ctx.timeout
    assert deadline is not None
    assert 5.0 - SLACK < deadline <= 5.0


async def test_without_a_fence_a_request_keeps_the_transports_own_timeout() -> None:
    transport = ScriptedTransport()
    transport.script("get_image", image())
    await client_for(transport, None).get_image("img-1")
    assert transport.calls[0].ctx.timeout is None


async def test_a_request_in_flight_is_cancelled_when_the_fence_is_revoked_and_raises_fenced() -> None:
    transport, observed, fence = HangingTransport(), Observed(), open_fence(30.0)
    limiter = CallLimiter(max_concurrency=4, requests_per_second=1000)
    call = asyncio.create_task(client_for(transport, fence, observed, limiter).get_image("img-1"))
    await asyncio.wait_for(transport.sent.wait(), 5)
    assert fence.in_flight == 1
    revoked = time.monotonic()
    fence.revoke()
    with pytest.raises(Fenced):
        await call
    assert time.monotonic() - revoked < SLACK
    assert observed.requests == []  # not a failure of the cloud
    assert fence.in_flight == 0
    assert limiter.in_flight == 0


async def test_a_request_outliving_the_fence_is_cut_off_at_its_end_and_raises_fenced() -> None:
    transport, observed = HangingTransport(), Observed()
    started = time.monotonic()
    with pytest.raises(Fenced):
        await client_for(transport, open_fence(0.3), observed).get_image("img-1")
    assert 0.3 <= time.monotonic() - started < 0.3 + SLACK
    assert len(transport.calls) == 1
    assert observed.requests == []


async def test_a_request_cut_off_by_a_deadline_the_fence_then_outlived_is_retried_as_a_timeout() -> None:
    transport, observed, fence = HangingTransport(hanging=1), Observed(), open_fence(0.3)
    transport.script("get_image", image())
    call = asyncio.create_task(client_for(transport, fence, observed).get_image("img-1"))
    await asyncio.wait_for(transport.sent.wait(), 5)
    fence.grant(time.monotonic() + 30.0)  # renewed while the request was out: the fence is still open
    assert (await call).id == "img-1"
    methods = [code for _, code in observed.requests]
    assert methods == [Code.DEADLINE_EXCEEDED.name, Code.OK.name]


async def test_a_request_that_waited_for_the_limiter_past_the_end_of_the_fence_is_never_sent() -> None:
    transport = ScriptedTransport()
    transport.script("get_image", image())
    limiter = CallLimiter(max_concurrency=4, requests_per_second=2, burst=1)
    client = client_for(transport, open_fence(0.2), limiter=limiter)
    await client.get_image("img-1")  # takes the one start the bucket has
    with pytest.raises(Fenced):
        await client.get_image("img-2")  # waits half a second for the bucket, the fence shuts meanwhile
    assert [call.args["image_id"] for call in transport.calls] == ["img-1"]


async def test_a_cancellation_from_elsewhere_is_not_taken_for_the_fence() -> None:
    transport, fence = HangingTransport(), open_fence(30.0)
    call = asyncio.create_task(client_for(transport, fence).get_image("img-1"))
    await asyncio.wait_for(transport.sent.wait(), 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert fence.open
    assert fence.in_flight == 0


async def test_a_shut_fence_refuses_a_call_before_its_token_is_even_asked_for() -> None:
    transport = ScriptedTransport()
    with pytest.raises(Fenced) as raised:
        await client_for(transport, Fence()).get_image("img-1")
    assert transport.calls == []
    assert raised.value.method == "DesktopImageService.Get"
    assert not isinstance(raised.value, CloudError)  # not the cloud's failure: no retry, no metric


async def test_a_rest_request_cuts_each_of_its_timeouts_to_the_deadline_it_carries() -> None:
    seen: list[dict[str, float | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200, json={"id": "img-1", "folderId": "f", "status": "ACTIVE"})

    own = httpx.Timeout(30.0, connect=10.0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), timeout=own) as http:
        rest = RestTransport(http, desktop_endpoint="http://cloud", operation_endpoint="http://ops")
        for deadline in (2.5, None):
            ctx = CallContext(token="t", request_id="r", trace_id="t", timeout=deadline)
            await rest.get_image(ctx, "img-1")
    assert seen[0] == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}
    assert seen[1] == {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 30.0}
