"""The shared client behaviour over a scripted transport: retries, token refresh, limits, polling."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from prometheus_client import REGISTRY

from desktop_image_operator.base import Backoff
from desktop_image_operator.cloud.client import ManagedClient, OperationPolling, name_filter
from desktop_image_operator.cloud.errors import CloudError, Code, QuotaViolation
from desktop_image_operator.cloud.limits import CallLimiter
from desktop_image_operator.cloud.retry import RetryPolicy
from desktop_image_operator.cloud.transport import ImagePage
from desktop_image_operator.cloud.types import CopyRequest
from desktop_image_operator.observability import metrics

from .support import FakeTokenSource, ScriptedTransport, VirtualClock, image, operation

COPY = CopyRequest(desktop_id="desk-1", name="base")


def make_client(
    clock: VirtualClock,
    transport: ScriptedTransport,
    tokens: FakeTokenSource | None = None,
    *,
    max_attempts: int = 5,
    limiter: CallLimiter | None = None,
    polling: OperationPolling | None = None,
) -> ManagedClient:
    return ManagedClient(
        transport,
        tokens or FakeTokenSource(),
        limiter=limiter
        or CallLimiter(max_concurrency=100, requests_per_second=1000, burst=1000, clock=clock),
        retry=RetryPolicy(max_attempts=max_attempts, backoff=Backoff(base=0.5, cap=4.0)),
        polling=polling,
        clock=clock,
        rng=random.Random(5),
        observe_request=metrics.observe_cloud_request,  # what the controller hands its session
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_transient_errors_are_retried_with_the_same_idempotency_key() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script(
        "copy",
        CloudError(Code.UNAVAILABLE, "down"),
        CloudError(Code.INTERNAL, "oops"),
        CloudError(Code.DEADLINE_EXCEEDED, "slow"),
        operation("op-1"),
    )
    client = make_client(clock, transport)
    result = await clock.run(client.copy(COPY, idempotency_key="key-1"))
    assert result.id == "op-1"
    calls = transport.calls_of("copy")
    assert len(calls) == 4
    assert {call.ctx.idempotency_key for call in calls} == {"key-1"}
    # One trace id for the logical call, a fresh request id per attempt.
    assert len({call.ctx.trace_id for call in calls}) == 1
    assert len({call.ctx.request_id for call in calls}) == 4
    # Waits between attempts stay under the growing ceilings (0.5, 1, 2).
    waits = [b - a for a, b in itertools.pairwise(transport.started_at)]
    assert all(0.0 <= w <= c for w, c in zip(waits, [0.5, 1.0, 2.0], strict=True))


@pytest.mark.parametrize(
    "code",
    [
        Code.INVALID_ARGUMENT,
        Code.FAILED_PRECONDITION,
        Code.PERMISSION_DENIED,
        Code.NOT_FOUND,
        Code.ALREADY_EXISTS,
    ],
)
async def test_terminal_errors_are_raised_at_once(code: Code) -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("copy", CloudError(code, "no", request_id="req-1"))
    client = make_client(clock, transport)
    with pytest.raises(CloudError) as caught:
        await clock.run(client.copy(COPY, idempotency_key="key-1"))
    assert caught.value.code is code
    assert caught.value.request_id == "req-1"
    assert len(transport.calls) == 1


async def test_attempts_are_bounded() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("get_image", CloudError(Code.UNAVAILABLE, "down"))
    client = make_client(clock, transport, max_attempts=3)
    with pytest.raises(CloudError) as caught:
        await clock.run(client.get_image("img-1"))
    assert caught.value.code is Code.UNAVAILABLE
    assert len(transport.calls) == 3


async def test_unauthenticated_refreshes_the_token_once_and_retries_once() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("get_image", CloudError(Code.UNAUTHENTICATED, "expired"), image())
    tokens = FakeTokenSource()
    client = make_client(clock, transport, tokens)
    assert (await clock.run(client.get_image("img-1"))).id == "img-1"
    assert [call.ctx.token for call in transport.calls] == ["tok-1", "tok-2"]
    assert tokens.invalidated == ["tok-1"]


async def test_a_second_unauthenticated_is_final() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("get_image", CloudError(Code.UNAUTHENTICATED, "bad token"))
    tokens = FakeTokenSource()
    client = make_client(clock, transport, tokens)
    with pytest.raises(CloudError) as caught:
        await clock.run(client.get_image("img-1"))
    assert caught.value.code is Code.UNAUTHENTICATED
    assert len(transport.calls) == 2
    assert tokens.invalidated == ["tok-1"]


async def test_unauthenticated_with_an_unrefreshable_token_is_not_retried() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("get_image", CloudError(Code.UNAUTHENTICATED, "bad token"))
    client = make_client(clock, transport, FakeTokenSource(refreshable=False))
    with pytest.raises(CloudError):
        await clock.run(client.get_image("img-1"))
    assert len(transport.calls) == 1


async def test_refresh_does_not_use_up_the_retry_budget() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script(
        "get_image", CloudError(Code.UNAUTHENTICATED, "x"), CloudError(Code.UNAVAILABLE, "x"), image()
    )
    client = make_client(clock, transport, max_attempts=2)
    assert (await clock.run(client.get_image("img-1"))).id == "img-1"
    assert len(transport.calls) == 3


async def test_throttling_slows_down_every_call() -> None:
    clock = VirtualClock()
    limiter = CallLimiter(
        max_concurrency=100,
        requests_per_second=1000,
        burst=1000,
        cooldown_base=3.0,
        cooldown_cap=60,
        clock=clock,
    )
    transport = ScriptedTransport(clock)
    transport.script("copy", CloudError(Code.RESOURCE_EXHAUSTED, "Too many requests"), operation("op-1"))
    transport.script("get_image", image())
    client = make_client(clock, transport, limiter=limiter)
    other = make_client(clock, transport, FakeTokenSource(), limiter=limiter)

    async def later_read() -> None:
        await clock.sleep(0.5)  # starts after the 429 was answered
        await other.get_image("img-2")

    copied, _ = await clock.run(asyncio.gather(client.copy(COPY, idempotency_key="k"), later_read()))
    assert copied.id == "op-1"
    get_start = transport.started_at[transport.calls.index(transport.calls_of("get_image")[0])]
    assert get_start >= 3.0 + 1000.0  # waited out the shared 3 s cool-down
    assert transport.started_at[1] >= 1003.0  # and so did the retried copy
    assert limiter.cooldown.streak == 0  # the later successes ended the streak


async def test_retry_after_from_the_server_sets_the_pause() -> None:
    clock = VirtualClock()
    limiter = CallLimiter(
        max_concurrency=10, requests_per_second=1000, burst=1000, cooldown_cap=60, clock=clock
    )
    transport = ScriptedTransport(clock)
    transport.script("get_image", CloudError(Code.RESOURCE_EXHAUSTED, "slow", retry_after=12.0), image())
    client = make_client(clock, transport, limiter=limiter)
    await clock.run(client.get_image("img-1"))
    assert transport.started_at[1] - transport.started_at[0] >= 12.0


async def test_client_calls_respect_the_concurrency_cap() -> None:
    clock = VirtualClock()
    limiter = CallLimiter(max_concurrency=2, requests_per_second=1000, burst=1000, clock=clock)
    transport = ScriptedTransport(clock, call_seconds=1.0)
    transport.script("get_image", image())
    clients = [make_client(clock, transport, FakeTokenSource(), limiter=limiter) for _ in range(3)]
    await clock.run(asyncio.gather(*(clients[i % 3].get_image(f"img-{i}") for i in range(9))))
    assert transport.max_in_flight == 2


async def test_metrics_count_every_attempt_by_method_and_code() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("delete", CloudError(Code.UNAVAILABLE, "down"), operation("op-9"))
    client = make_client(clock, transport)
    method = "DesktopImageService.Delete"
    before_ok = sample("desktop_image_operator_cloud_requests_total", method=method, code="OK")
    before_down = sample("desktop_image_operator_cloud_requests_total", method=method, code="UNAVAILABLE")
    before_count = sample("desktop_image_operator_cloud_request_duration_seconds_count", method=method)
    await clock.run(client.delete("img-1", idempotency_key="k"))
    assert sample("desktop_image_operator_cloud_requests_total", method=method, code="OK") == before_ok + 1
    assert (
        sample("desktop_image_operator_cloud_requests_total", method=method, code="UNAVAILABLE")
        == before_down + 1
    )
    assert (
        sample("desktop_image_operator_cloud_request_duration_seconds_count", method=method)
        == before_count + 2
    )


async def test_copy_from_a_compute_image_is_the_copy_method() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("copy", operation())
    client = make_client(clock, transport)
    before = sample(
        "desktop_image_operator_cloud_requests_total", method="DesktopImageService.Copy", code="OK"
    )
    request = CopyRequest(compute_image_id="fd8-1", folder_id="folder-1", name="base")
    await clock.run(client.copy(request, idempotency_key="k"))
    after = sample(
        "desktop_image_operator_cloud_requests_total", method="DesktopImageService.Copy", code="OK"
    )
    assert after == before + 1


def test_copy_request_needs_exactly_one_source_and_a_folder_for_compute_images() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        CopyRequest(name="x")
    with pytest.raises(ValueError, match="exactly one"):
        CopyRequest(name="x", desktop_id="d", compute_image_id="i", folder_id="f")
    with pytest.raises(ValueError, match="folder_id"):
        CopyRequest(name="x", compute_image_id="i")
    with pytest.raises(ValueError, match="name"):
        CopyRequest(name="", desktop_id="d")
    assert CopyRequest(name="x", desktop_id="d").from_desktop


async def test_mutations_need_an_idempotency_key() -> None:
    client = make_client(VirtualClock(), ScriptedTransport())
    with pytest.raises(ValueError, match="idempotency_key"):
        await client.copy(COPY, idempotency_key="")
    with pytest.raises(ValueError, match="idempotency_key"):
        await client.delete("img-1", idempotency_key="")
    with pytest.raises(ValueError, match="idempotency_key"):
        await client.update("img-1", mask={"name"}, name="n", idempotency_key="")


async def test_update_sends_only_a_valid_nonempty_mask() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("update", operation())
    client = make_client(clock, transport)
    with pytest.raises(ValueError, match="empty"):
        await client.update("img-1", mask=[], idempotency_key="k")
    with pytest.raises(ValueError, match="cannot change"):
        await client.update("img-1", mask=["folder_id"], idempotency_key="k")
    with pytest.raises(ValueError, match="without a value"):
        await client.update("img-1", mask=["name"], idempotency_key="k")
    assert transport.calls == []
    await clock.run(
        client.update("img-1", mask=["labels", "description"], description="", labels={}, idempotency_key="k")
    )
    (call,) = transport.calls
    assert call.args["mask"] == {"labels", "description"}
    assert call.ctx.idempotency_key == "k"


async def test_find_images_reads_every_page_and_keeps_exact_names() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script(
        "list_images",
        ImagePage([image("a", "base")], "p2"),
        ImagePage([image("b", "other")], "p3"),
        ImagePage([image("c", "base")], ""),
    )
    client = make_client(clock, transport)
    found = await clock.run(client.find_images("folder-1", "base"))
    assert [i.id for i in found] == ["a", "c"]
    assert [call.args["page_token"] for call in transport.calls] == ["", "p2", "p3"]
    assert {call.args["filter"] for call in transport.calls} == {'name="base"'}
    assert {call.args["folder_id"] for call in transport.calls} == {"folder-1"}


async def test_find_images_stops_on_a_repeated_page_token() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("list_images", ImagePage([], "same"))
    client = make_client(clock, transport)
    with pytest.raises(CloudError) as caught:
        await clock.run(client.find_images("folder-1", "base"))
    assert caught.value.code is Code.INTERNAL
    assert len(transport.calls) == 2


def test_name_filter_escapes_quotes() -> None:
    assert name_filter("base") == 'name="base"'
    assert name_filter('a"b\\c') == 'name="a\\"b\\\\c"'


async def test_follow_operation_polls_with_backoff_until_done() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    done = operation("op-1", done=True, image=image())
    transport.script("get_operation", operation("op-1"), operation("op-1"), operation("op-1"), done)
    polling = OperationPolling(backoff=Backoff(base=1.0, cap=3.0), timeout=100.0)
    client = make_client(clock, transport, polling=polling)
    result = await clock.run(client.follow_operation("op-1"))
    assert result == done
    gaps = [b - a for a, b in itertools.pairwise(transport.started_at)]
    assert all(
        lo <= gap <= hi for gap, (lo, hi) in zip(gaps, [(0.5, 1.0), (1.0, 2.0), (1.5, 3.0)], strict=True)
    )


async def test_follow_operation_returns_a_failed_operation_without_raising() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    failed = operation("op-1", done=True, error=CloudError(Code.FAILED_PRECONDITION, "desktop is running"))
    transport.script("get_operation", failed)
    client = make_client(clock, transport)
    result = await clock.run(client.follow_operation("op-1"))
    assert not result.succeeded
    assert result.error is not None
    assert result.error.code is Code.FAILED_PRECONDITION


async def test_follow_operation_tolerates_three_not_found_right_after_creation() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    missing = CloudError(Code.NOT_FOUND, "no such operation")
    transport.script("get_operation", missing, missing, missing, operation("op-1", done=True))
    client = make_client(clock, transport)
    assert (await clock.run(client.follow_operation("op-1"))).done
    assert len(transport.calls) == 4


async def test_follow_operation_gives_up_on_a_fourth_not_found() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("get_operation", CloudError(Code.NOT_FOUND, "no such operation"))
    client = make_client(clock, transport)
    with pytest.raises(CloudError) as caught:
        await clock.run(client.follow_operation("op-1"))
    assert caught.value.code is Code.NOT_FOUND
    assert len(transport.calls) == 4


async def test_follow_operation_does_not_forgive_not_found_once_seen() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("get_operation", operation("op-1"), CloudError(Code.NOT_FOUND, "gone"))
    client = make_client(clock, transport)
    with pytest.raises(CloudError):
        await clock.run(client.follow_operation("op-1"))
    assert len(transport.calls) == 2


async def test_follow_operation_is_bounded_in_time() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("get_operation", operation("op-1"))
    polling = OperationPolling(backoff=Backoff(base=1.0, cap=5.0), timeout=3600.0)
    client = make_client(clock, transport, polling=polling)
    began = clock.monotonic()
    with pytest.raises(CloudError) as caught:
        await clock.run(client.follow_operation("op-1", max_wait=30.0))
    assert caught.value.code is Code.DEADLINE_EXCEEDED
    assert "op-1" in caught.value.message
    assert clock.monotonic() - began == pytest.approx(30.0)
    assert 6 <= len(transport.calls) <= 40


async def test_an_exhausted_quota_is_final_and_does_not_throttle() -> None:
    clock = VirtualClock()
    limiter = CallLimiter(max_concurrency=10, requests_per_second=1000, burst=1000, clock=clock)
    transport = ScriptedTransport(clock)
    violation = QuotaViolation("b1gcloud", "limit 8, used 8", "vdi.desktopImages.count")
    quota = CloudError(Code.RESOURCE_EXHAUSTED, "Request refused", quota_violations=(violation,))
    transport.script("copy", quota)
    client = make_client(clock, transport, limiter=limiter)
    with pytest.raises(CloudError) as caught:
        await clock.run(client.copy(COPY, idempotency_key="k"))
    assert caught.value.quota_exceeded
    assert len(transport.calls) == 1
    assert limiter.cooldown.remaining() == 0


async def test_get_desktop_folder_is_retried_like_a_get_and_measured() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script(
        "get_desktop_folder", CloudError(Code.UNAVAILABLE, "down"), CloudError(Code.INTERNAL, "oops"), "f-1"
    )
    client = make_client(clock, transport)
    method = "DesktopService.Get"
    before_ok = sample("desktop_image_operator_cloud_requests_total", method=method, code="OK")
    before_down = sample("desktop_image_operator_cloud_requests_total", method=method, code="UNAVAILABLE")
    assert await clock.run(client.get_desktop_folder("desk-1")) == "f-1"
    calls = transport.calls_of("get_desktop_folder")
    assert [call.args["desktop_id"] for call in calls] == ["desk-1"] * 3
    assert {call.ctx.idempotency_key for call in calls} == {None}
    assert sample("desktop_image_operator_cloud_requests_total", method=method, code="OK") == before_ok + 1
    assert (
        sample("desktop_image_operator_cloud_requests_total", method=method, code="UNAVAILABLE")
        == before_down + 1
    )


async def test_get_desktop_folder_not_found_is_final() -> None:
    clock = VirtualClock()
    transport = ScriptedTransport(clock)
    transport.script("get_desktop_folder", CloudError(Code.NOT_FOUND, "Desktop desk-9 not found"))
    client = make_client(clock, transport)
    with pytest.raises(CloudError) as caught:
        await clock.run(client.get_desktop_folder("desk-9"))
    assert caught.value.code is Code.NOT_FOUND
    assert len(transport.calls) == 1
    with pytest.raises(ValueError, match="desktop_id"):
        await client.get_desktop_folder("")


async def test_a_120_second_retry_after_makes_every_call_wait_120_seconds_not_30() -> None:
    clock = VirtualClock()
    # The defaults: a 30 s backoff cap and a 60 s cool-down cap, which cut the hint short before.
    limiter = CallLimiter(max_concurrency=10, requests_per_second=1000, burst=1000, clock=clock)
    transport = ScriptedTransport(clock)
    transport.script("get_image", CloudError(Code.RESOURCE_EXHAUSTED, "slow", retry_after=120.0), image())
    transport.script("get_desktop_folder", "folder-1")
    client = ManagedClient(
        transport, FakeTokenSource(), limiter=limiter, retry=RetryPolicy(), clock=clock, rng=random.Random(5)
    )

    async def a_second_later() -> str:
        await clock.sleep(1.0)
        return await client.get_desktop_folder("desk-1")

    began = clock.monotonic()
    await clock.run(asyncio.gather(client.get_image("img-1"), a_second_later()))
    starts = {
        method: [
            at
            for at, call in zip(transport.started_at, transport.calls, strict=True)
            if call.method == method
        ]
        for method in ("get_image", "get_desktop_folder")
    }
    # The refused call waited the whole 120 s, and so did the call that merely came along during the pause.
    assert starts["get_image"][0] == began
    assert began + 120.0 <= starts["get_image"][1] < began + 121.0
    assert began + 120.0 <= starts["get_desktop_folder"][0] < began + 121.0


async def test_resource_exhausted_that_says_quota_without_the_detail_is_throttling_and_retried() -> None:
    clock = VirtualClock()
    limiter = CallLimiter(max_concurrency=10, requests_per_second=1000, burst=1000, clock=clock)
    transport = ScriptedTransport(clock)
    worded = CloudError(Code.RESOURCE_EXHAUSTED, "Quota limit vdi.desktopImages.count exceeded in cloud b1g")
    transport.script("copy", worded, operation("op-1"))
    client = make_client(clock, transport, limiter=limiter)
    assert (await clock.run(client.copy(COPY, idempotency_key="k"))).id == "op-1"
    assert len(transport.calls_of("copy")) == 2
    assert transport.started_at[1] - transport.started_at[0] >= 1.0  # the shared cool-down applied
