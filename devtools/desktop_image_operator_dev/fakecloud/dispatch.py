"""The path every cloud call takes, whatever the transport: settle operations, authenticate, apply
faults, run the handler, and log the call.

A call whose caller gave up before it was done (its connection closed, its RPC cancelled, its deadline
passed) is abandoned, as the cloud abandons a request whose client went away: with injected latency that
is before any work, so nothing it asked for happens. It is logged with the code CANCELLED.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

from yandex.cloud.operation import operation_pb2

from desktop_image_operator_dev.fakecloud import ids, operations
from desktop_image_operator_dev.fakecloud.clock import rfc3339
from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode
from desktop_image_operator_dev.fakecloud.context import CallContext
from desktop_image_operator_dev.fakecloud.faults import FaultDecision
from desktop_image_operator_dev.fakecloud.state import FakeState

T = TypeVar("T")

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CallMeta:
    """What the transport read from the call's headers or metadata."""

    transport: str
    method: str
    authorization: str | None = None
    idempotency_key: str | None = None
    request_id: str | None = None
    # Update only: the mask's paths, read before anything can refuse the call (None: unreadable request).
    update_mask: list[str] | None = None


@dataclasses.dataclass
class Outcome(Generic[T]):
    request_id: str
    trace_id: str
    response: T | None = None
    error: ApiError | None = None
    # The work is done, but the transport must not answer.
    drop: bool = False


class Dispatcher:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    async def run(
        self, meta: CallMeta, handler: Callable[[CallContext], T], *, authenticate: bool = True
    ) -> Outcome[T]:
        state = self._state
        started = time.perf_counter()
        wall = state.clock()
        outcome: Outcome[T] = Outcome(
            request_id=meta.request_id or ids.new_request_id(), trace_id=uuid.uuid4().hex
        )
        # With honorIdempotency off the key is still logged, but the handlers never see it.
        key = meta.idempotency_key if state.config.honor_idempotency else None
        ctx = CallContext(principal="", idempotency_key=key)
        decision = state.faults.decide(meta.method, meta.transport)
        refusal = ""
        try:
            if decision is not None and decision.latency_seconds > 0:
                await asyncio.sleep(decision.latency_seconds)
            operations.settle(state)
            if authenticate:
                principal, refusal = state.iam.principal(meta.authorization)
                ctx.principal = principal or ""
            if decision is not None and decision.error is not None:
                raise ApiError(*decision.error, retry_after=decision.retry_after)
            if authenticate and not ctx.principal:
                raise ApiError(StatusCode.UNAUTHENTICATED, refusal)
            if decision is not None:
                ctx.fail_operation = decision.fail_operation
            outcome.response = handler(ctx)
            outcome.drop = decision is not None and decision.drop_response
        except asyncio.CancelledError:
            # Only the latency is awaited: the caller gave up before any work was done.
            self._abandoned(meta, decision, outcome.request_id, wall, started)
            raise
        except ApiError as exc:
            outcome.error = exc
        except Exception as exc:  # a bug in the fake: answer INTERNAL and say why in the log
            _log.exception("%s failed", meta.method)
            outcome.error = ApiError(StatusCode.INTERNAL, f"Internal error: {type(exc).__name__}")
        if decision is not None and (
            outcome.error is not None or (decision.fail_operation and not ctx.fail_operation_used)
        ):
            decision.refund_outcome()
        response = outcome.response
        self._log(
            meta,
            wall,
            started,
            code=outcome.error.code.name if outcome.error is not None else StatusCode.OK.name,
            request_id=outcome.request_id,
            principal=ctx.principal or None,
            operation_id=response.id if isinstance(response, operation_pb2.Operation) else None,
            dropped=outcome.drop,
            fault=decision.label if decision is not None else None,
        )
        return outcome

    def _abandoned(
        self, meta: CallMeta, decision: FaultDecision | None, request_id: str, wall: float, started: float
    ) -> None:
        """Log a call its caller gave up on; a failed operation or dropped answer it drew is kept."""
        if decision is not None:
            decision.refund_outcome()
        principal, _ = self._state.iam.principal(meta.authorization)
        self._log(
            meta,
            wall,
            started,
            code=StatusCode.CANCELLED.name,
            request_id=request_id,
            principal=principal,
            fault=decision.label if decision is not None else None,
        )

    def _log(
        self,
        meta: CallMeta,
        wall: float,
        started: float,
        *,
        code: str,
        request_id: str,
        principal: str | None,
        operation_id: str | None = None,
        dropped: bool = False,
        fault: str | None = None,
    ) -> None:
        self._state.requests.add(
            time=rfc3339(wall),
            transport=meta.transport,
            method=meta.method,
            code=code,
            request_id=request_id,
            principal=principal,
            idempotency_key=meta.idempotency_key,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            operation_id=operation_id,
            dropped=dropped,
            fault=fault,
            update_mask=meta.update_mask,
        )
