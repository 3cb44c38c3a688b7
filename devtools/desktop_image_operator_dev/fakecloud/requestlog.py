"""A bounded log of every cloud call, for `/fake/requests`. It never holds tokens, JWTs or keys."""

from __future__ import annotations

import collections
import itertools
from typing import NotRequired, TypedDict

from desktop_image_operator_dev.fakecloud import methods


class RequestEntry(TypedDict):
    seq: int
    time: str
    transport: str
    method: str
    code: str
    requestId: str
    principal: str | None
    idempotencyKey: str | None
    operationId: str | None
    durationMs: float
    dropped: bool
    fault: str | None
    # Only on DesktopImageService.Update: the mask's paths as sent ([] for none), or None when the
    # request could not be read.
    updateMask: NotRequired[list[str] | None]


class RequestLog:
    def __init__(self, max_entries: int) -> None:
        self._entries: collections.deque[RequestEntry] = collections.deque(maxlen=max_entries)
        self._sequence = itertools.count(1)

    def add(
        self,
        *,
        time: str,
        transport: str,
        method: str,
        code: str,
        request_id: str,
        principal: str | None,
        idempotency_key: str | None,
        duration_ms: float,
        operation_id: str | None = None,
        dropped: bool = False,
        fault: str | None = None,
        update_mask: list[str] | None = None,
    ) -> None:
        entry: RequestEntry = {
            "seq": next(self._sequence),
            "time": time,
            "transport": transport,
            "method": method,
            "code": code,
            "requestId": request_id,
            "principal": principal,
            "idempotencyKey": idempotency_key,
            "operationId": operation_id,
            "durationMs": round(duration_ms, 3),
            "dropped": dropped,
            "fault": fault,
        }
        if method == methods.UPDATE:
            entry["updateMask"] = None if update_mask is None else list(update_mask)
        self._entries.append(entry)

    def entries(
        self,
        *,
        method: str | None = None,
        transport: str | None = None,
        code: str | None = None,
        after: int = 0,
    ) -> list[RequestEntry]:
        return [
            entry
            for entry in self._entries
            if (method is None or entry["method"] == method)
            and (transport is None or entry["transport"] == transport)
            and (code is None or entry["code"] == code)
            and entry["seq"] > after
        ]

    def resize(self, max_entries: int) -> None:
        if max_entries != self._entries.maxlen:
            self._entries = collections.deque(self._entries, maxlen=max_entries)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
