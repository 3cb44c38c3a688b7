"""The reconciler against the fake cloud over loopback, on a clock the test moves.

No test double stands in for the cloud here: the reconciler talks to the same fake (REST) the operator
process does, so nothing is more forgiving than it. The fake settles operations by its clock, which the
test advances; the reconciler reads the same clock.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from desktop_image_operator.cloud import CloudSettings, CopyRequest, DesktopImageClient, open_cloud
from desktop_image_operator.reconciler.ownership import Owner
from desktop_image_operator.reconciler.reconciler import Outcome, Reconciler
from desktop_image_operator.reconciler.resource import Resource
from desktop_image_operator.reconciler.timing import Timing
from desktop_image_operator_dev.fakecloud import FakeCloud, FakeCloudConfig, seeds
from tests.support.clocks import ManualClock

UID = "0b6f1a52-3c1e-4c59-9a4e-2f1d8e7c6b5a"
OTHER_UID = "11111111-2222-3333-4444-555555555555"
CLUSTER_ID = "c0ffee00-0000-4000-8000-000000000001"
COPY_SECONDS = 10.0
OPERATION_SECONDS = 2.0
TIMING = Timing(
    poll_base_seconds=1.0,
    poll_cap_seconds=15.0,
    retry_base_seconds=5.0,
    retry_cap_seconds=300.0,
    terminal_retry_base_seconds=60.0,
    resync_seconds=600.0,
)


class Crash(Exception):
    """The operator died at this instant: a status write that never happened."""


class Recorder:
    """Collects status patches and events; `body` applies the patches like the API server would."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.crash_on_write = False
        self._crash_when_running = False

    def crash_once_a_copy_is_accepted(self) -> None:
        """Die at the write that records an accepted operation (the Sent record before it was written)."""
        self._crash_when_running = True

    async def __call__(self, patch: dict[str, Any]) -> None:
        if self.crash_on_write:
            self.crash_on_write = False
            raise Crash
        if self._crash_when_running and (patch["status"].get("operation") or {}).get("phase") == "Running":
            self._crash_when_running = False
            raise Crash
        self.patches.append(copy.deepcopy(patch))  # the merge below shares its dicts with the body
        _merge(self.body.setdefault("status", {}), patch["status"])

    def normal(self, reason: str, message: str) -> None:
        self.events.append(("Normal", reason, message))

    def warning(self, reason: str, message: str) -> None:
        self.events.append(("Warning", reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"source": {"desktopId": seeds.STOPPED_DESKTOP_ID}}
    base.update(spec)
    return {
        "metadata": {"name": "analysts-base", "namespace": "team-a", "uid": UID, "generation": 1},
        "spec": base,
    }


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(x for x in body["status"]["conditions"] if x["type"] == kind)


def ready(body: dict[str, Any]) -> tuple[str, str]:
    found = condition(body, "Ready")
    return found["status"], found["reason"]


class KnownOwners:
    """The objects that exist in the cluster, as the controller would find them on the API server."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.asked: list[Owner] = []

    async def exists(self, owner: Owner) -> bool:
        self.asked.append(owner)
        return owner.uid in self.live


class Stand:
    """One object, the reconciler, and the fake cloud with its admin API."""

    def __init__(
        self, fake: FakeCloud, cloud: DesktopImageClient, clock: ManualClock, admin: httpx.AsyncClient
    ) -> None:
        self.fake = fake
        self.cloud = cloud
        self.clock = clock
        self.admin = admin
        self.owners = KnownOwners()
        self.restart()
        self.use(manifest())

    def restart(self) -> None:
        """A new operator process: what the reconciler learned or cached in memory is gone."""
        self.reconciler = Reconciler(
            timing=TIMING, cluster_id=CLUSTER_ID, owners=self.owners, clock=self.clock.datetime
        )

    def use(self, body: dict[str, Any]) -> Recorder:
        """Reconcile this object from now on; one without a creation time is created now."""
        created = self.clock.datetime().isoformat().replace("+00:00", "Z")
        body["metadata"].setdefault("creationTimestamp", created)
        self.body = body
        self.recorder = Recorder(body)
        return self.recorder

    def change_spec(self, **spec: Any) -> None:
        self.body["spec"].update(spec)
        self.body["metadata"]["generation"] += 1

    async def reconcile(self) -> Outcome:
        resource = Resource.from_body(self.body)
        return await self.reconciler.reconcile(resource, self.cloud, self.recorder, self.recorder)

    async def finalize(self) -> Outcome:
        resource = Resource.from_body(self.body)
        return await self.reconciler.finalize(resource, self.cloud, self.recorder, self.recorder)

    async def settle(self, *, steps: int = 30) -> Outcome:
        """Reconcile, moving the clock by each requeue, until nothing more is asked (bounded)."""
        outcome = await self.reconcile()
        for _ in range(steps):
            if outcome.requeue_after is None:
                return outcome
            self.clock.advance(outcome.requeue_after)
            outcome = await self.reconcile()
        raise AssertionError(f"no steady state after {steps} steps: {outcome}")

    async def make_image(self, name: str, labels: dict[str, str] | None = None) -> str:
        """An image made outside the operator (by hand, another tool or another cluster), ACTIVE."""
        request = CopyRequest(
            name=name,
            compute_image_id=seeds.COMPUTE_IMAGE_ID,
            folder_id=seeds.FOLDER_ID,
            labels=labels or {},
        )
        operation = await self.cloud.copy(request, idempotency_key=f"by-hand-{name}")
        self.clock.advance(COPY_SECONDS)
        assert operation.image_id is not None
        return operation.image_id

    # -- the fake's admin API -------------------------------------------------------------------------

    async def fault(self, **rule: Any) -> None:
        (await self.admin.post("/fake/faults", json=rule)).raise_for_status()

    async def config(self, **changes: Any) -> None:
        (await self.admin.post("/fake/config", json=changes)).raise_for_status()

    async def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        params = {"method": f"DesktopImageService.{method}"} if method else {}
        response = await self.admin.get("/fake/requests", params=params)
        entries: list[dict[str, Any]] = response.json()["requests"]
        return entries

    async def calls(self) -> Counter[str]:
        return Counter(entry["method"] for entry in await self.requests())

    async def forget_requests(self) -> None:
        (await self.admin.delete("/fake/requests")).raise_for_status()

    async def images(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.admin.get("/fake/images")).json()["images"]
        return found

    async def change_image(self, image_id: str, **fields: Any) -> None:
        (await self.admin.post(f"/fake/images/{image_id}", json=fields)).raise_for_status()

    async def delete_image(self, image_id: str) -> None:
        (await self.admin.delete(f"/fake/images/{image_id}")).raise_for_status()


def settings_for(fake: FakeCloud) -> CloudSettings:
    # One attempt per call: what the reconciler sees is the cloud's answer, not the client's retries.
    return CloudSettings(
        transport="rest",
        desktop_endpoint=fake.cloud_desktop_url,
        operation_endpoint=fake.operation_url,
        iam_endpoint=fake.iam_url,
        metadata_endpoint=fake.metadata_url,
        desktop_grpc_target=fake.grpc_target,
        operation_grpc_target=fake.grpc_target,
        grpc_insecure=True,
        max_attempts=1,
        requests_per_second=10_000,
        request_timeout_seconds=10,
    )


@asynccontextmanager
async def stand() -> AsyncIterator[Stand]:
    clock = ManualClock()
    config = FakeCloudConfig(copy_seconds=COPY_SECONDS, operation_seconds=OPERATION_SECONDS, image_quota=100)
    async with FakeCloud(config=config, clock=clock) as fake, open_cloud(settings_for(fake)) as session:
        client = session.client(session.token_sources.from_key(fake.authorized_key()))
        async with httpx.AsyncClient(base_url=fake.http_url) as admin:
            yield Stand(fake, client, clock, admin)
