"""Test doubles for the cloud client: virtual time, scripted transports and token sources, test keys."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
from collections.abc import Awaitable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from desktop_image_operator.cloud.errors import CloudError
from desktop_image_operator.cloud.settings import CloudSettings
from desktop_image_operator.cloud.transport import CallContext, ImagePage
from desktop_image_operator.cloud.types import CloudImage, CloudOperation, CopyRequest, ImageStatus
from desktop_image_operator_dev.fakecloud import FakeCloud

T = TypeVar("T")

KEY_ID_LINE = "PLEASE DO NOT REMOVE THIS LINE! Yandex.Cloud SA Key ID "


class VirtualClock:
    """Virtual time. `sleep` parks the caller; `run` drives a coroutine, jumping time to the next wake-up
    whenever nothing else can run. No test waits for wall-clock time."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._start = start
        self._wall_start = wall_start
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self._wall_start + (self.now - self._start)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._sequence), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward without waking anyone (for code that only reads the clock)."""
        self.now += seconds

    async def run(self, awaitable: Awaitable[T], *, max_steps: int = 100_000) -> T:
        task = asyncio.ensure_future(awaitable)
        try:
            for _ in range(max_steps):
                # Let every runnable task make progress before time moves.
                for _ in range(50):
                    if task.done():
                        return task.result()
                    await asyncio.sleep(0)
                if task.done():
                    return task.result()
                while self._sleepers and self._sleepers[0][2].done():
                    heapq.heappop(self._sleepers)
                if not self._sleepers:
                    # Something waits on real I/O (a mock transport's thread hop): give it a moment.
                    await asyncio.sleep(0.001)
                    continue
                wake, _, future = heapq.heappop(self._sleepers)
                self.now = max(self.now, wake)
                future.set_result(None)
            raise AssertionError(f"virtual run did not finish within {max_steps} steps")
        finally:
            if not task.done():
                task.cancel()


class FakeTokenSource:
    """Hands out tok-1, tok-2, ... ; `invalidate` moves on to the next one."""

    def __init__(self, *, refreshable: bool = True) -> None:
        self.refreshable = refreshable
        self.number = 1
        self.invalidated: list[str] = []

    async def token(self) -> str:
        return f"tok-{self.number}"

    def invalidate(self, token: str) -> bool:
        self.invalidated.append(token)
        if not self.refreshable:
            return False
        if token == f"tok-{self.number}":
            self.number += 1
        return True


def image(image_id: str = "img-1", name: str = "base", **changes: Any) -> CloudImage:
    values: dict[str, Any] = {
        "id": image_id,
        "folder_id": "folder-1",
        "name": name,
        "description": "",
        "labels": {},
        "status": ImageStatus.ACTIVE,
        "storage_size": 21474836480,
        "min_disk_size": 21474836480,
        "created_at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    values.update(changes)
    return CloudImage(**values)


def operation(operation_id: str = "op-1", *, done: bool = False, **changes: Any) -> CloudOperation:
    values: dict[str, Any] = {
        "id": operation_id,
        "done": done,
        "image_id": "img-1",
        "error": None,
        "image": None,
        "created_at": None,
    }
    values.update(changes)
    return CloudOperation(**values)


Outcome = Any  # a value to return, a CloudError to raise, or a callable(ctx) giving either


@dataclass
class Call:
    method: str
    ctx: CallContext
    args: dict[str, Any] = field(default_factory=dict)


class ScriptedTransport:
    """A `Transport` answering from per-method scripts; the last entry of a script repeats forever."""

    def __init__(self, clock: VirtualClock | None = None, *, call_seconds: float = 0.0) -> None:
        self.scripts: dict[str, list[Outcome]] = {}
        self.calls: list[Call] = []
        self.clock = clock
        self.call_seconds = call_seconds
        self.in_flight = 0
        self.max_in_flight = 0
        self.started_at: list[float] = []

    def script(self, method: str, *outcomes: Outcome) -> None:
        self.scripts[method] = list(outcomes)

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def _answer(self, method: str, ctx: CallContext, **args: Any) -> Any:
        self.calls.append(Call(method, ctx, args))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.clock is not None:
                self.started_at.append(self.clock.monotonic())
                if self.call_seconds:
                    await self.clock.sleep(self.call_seconds)
            script = self.scripts.get(method)
            if not script:
                raise AssertionError(f"no script for {method}")
            outcome = script.pop(0) if len(script) > 1 else script[0]
            if callable(outcome) and not isinstance(outcome, CloudError):
                outcome = outcome(ctx, **args)
            if isinstance(outcome, CloudError):
                raise outcome
            return outcome
        finally:
            self.in_flight -= 1

    async def get_image(self, ctx: CallContext, image_id: str) -> CloudImage:
        result: CloudImage = await self._answer("get_image", ctx, image_id=image_id)
        return result

    async def list_images(
        self, ctx: CallContext, *, folder_id: str, filter: str, page_size: int, page_token: str
    ) -> ImagePage:
        result: ImagePage = await self._answer(
            "list_images", ctx, folder_id=folder_id, filter=filter, page_size=page_size, page_token=page_token
        )
        return result

    async def copy(self, ctx: CallContext, request: CopyRequest) -> CloudOperation:
        result: CloudOperation = await self._answer("copy", ctx, request=request)
        return result

    async def update(
        self,
        ctx: CallContext,
        image_id: str,
        *,
        mask: Collection[str],
        name: str | None,
        description: str | None,
        labels: Mapping[str, str] | None,
    ) -> CloudOperation:
        result: CloudOperation = await self._answer(
            "update", ctx, image_id=image_id, mask=mask, name=name, description=description, labels=labels
        )
        return result

    async def delete(self, ctx: CallContext, image_id: str) -> CloudOperation:
        result: CloudOperation = await self._answer("delete", ctx, image_id=image_id)
        return result

    async def get_desktop_folder(self, ctx: CallContext, desktop_id: str) -> str:
        result: str = await self._answer("get_desktop_folder", ctx, desktop_id=desktop_id)
        return result

    async def get_operation(self, ctx: CallContext, operation_id: str) -> CloudOperation:
        result: CloudOperation = await self._answer("get_operation", ctx, operation_id=operation_id)
        return result

    async def cancel_operation(self, ctx: CallContext, operation_id: str) -> CloudOperation:
        result: CloudOperation = await self._answer("cancel_operation", ctx, operation_id=operation_id)
        return result


@cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey | None = None) -> str:
    return (
        (key or rsa_key())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


def authorized_key_json(
    *,
    key_id: str = "ajekey0000000000001",
    service_account_id: str = "ajesa00000000000001",
    key: rsa.RSAPrivateKey | None = None,
    please_line: bool = True,
) -> str:
    """An authorized key file as `yc iam key create` writes it."""
    pem = private_pem(key)
    public = (
        (key or rsa_key())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return json.dumps(
        {
            "id": key_id,
            "service_account_id": service_account_id,
            "created_at": "2024-01-01T00:00:00Z",
            "key_algorithm": "RSA_2048",
            "public_key": public,
            "private_key": (f"{KEY_ID_LINE}{key_id}\n" if please_line else "") + pem,
        }
    )


def secret_fragments(pem: str) -> list[str]:
    """Pieces of the base64 body of a PEM that must never show up anywhere."""
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    return [body[i : i + 24] for i in range(0, len(body) - 24, 200)]


def settings_for(fake: FakeCloud, transport: str, **overrides: Any) -> CloudSettings:
    """Cloud settings pointing at the in-process fake, with short waits so tests stay quick."""
    values: dict[str, Any] = {
        "transport": transport,
        "desktop_endpoint": fake.cloud_desktop_url,
        "operation_endpoint": fake.operation_url,
        "iam_endpoint": fake.iam_url,
        "metadata_endpoint": fake.metadata_url,
        "desktop_grpc_target": fake.grpc_target,
        "operation_grpc_target": fake.grpc_target,
        "grpc_insecure": True,
        "backoff_base_seconds": 0.01,
        "backoff_cap_seconds": 0.05,
        "throttle_cooldown_base_seconds": 0.3,
        "operation_poll_initial_seconds": 0.02,
        "operation_poll_cap_seconds": 0.1,
        "operation_timeout_seconds": 20,
        "request_timeout_seconds": 10,
    }
    values.update(overrides)
    return CloudSettings(**values)
