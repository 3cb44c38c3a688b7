"""Leader election: who may take the Lease and when, fencing, release, and the settings that drive it.

The in-memory Lease store below keeps the API server's rules that matter here: a write must carry the
resourceVersion it read, every write bumps it, and creating an existing Lease fails. The last test runs
the same election against a real API server.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from desktop_image_operator.base import Fence, Fenced
from desktop_image_operator.cloud.client import ManagedClient
from desktop_image_operator.cloud.limits import CallLimiter
from desktop_image_operator.commands.run import add_arguments, settings_values
from desktop_image_operator.controller.leadership import (
    ElectionConfig,
    LeaderElection,
    instance_identity,
    lease_namespace,
)
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.kube import KubeApi, LeaseConflict, LeaseRecord, kubeconfig_login
from desktop_image_operator.observability import metrics
from tests.cloud.support import FakeTokenSource, ScriptedTransport, image

# Short but proportionate durations (as 15/10/2), so a test waits a second or two, not twenty.
LEASE, RENEW, RETRY = 1.5, 1.0, 0.2


class MemoryLeases:
    """Leases kept in memory with optimistic concurrency; `before_write` runs between read and write."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], LeaseRecord] = {}
        self.versions = itertools.count(1)
        self.writes = 0
        self.unavailable = False
        self.before_write: Callable[[], Awaitable[None]] | None = None

    async def read_lease(self, namespace: str, name: str, *, within: float) -> LeaseRecord | None:
        self._reachable()
        return self.leases.get((namespace, name))

    async def create_lease(
        self, namespace: str, name: str, record: LeaseRecord, *, within: float
    ) -> LeaseRecord:
        await self._prepare()
        if (namespace, name) in self.leases:
            raise LeaseConflict("exists")
        return self._store(namespace, name, record)

    async def replace_lease(
        self, namespace: str, name: str, record: LeaseRecord, *, within: float
    ) -> LeaseRecord:
        await self._prepare()
        current = self.leases.get((namespace, name))
        if current is None or current.resource_version != record.resource_version:
            raise LeaseConflict("changed")
        return self._store(namespace, name, record)

    async def _prepare(self) -> None:
        self._reachable()
        hook, self.before_write = self.before_write, None
        if hook is not None:
            await hook()

    def _reachable(self) -> None:
        if self.unavailable:
            raise ConnectionError("API server unreachable")

    def _store(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        self.writes += 1
        stored = replace(record, resource_version=str(next(self.versions)))
        self.leases[(namespace, name)] = stored
        return stored

    def holder(self) -> str:
        lease = self.leases.get(("ops", "lock"))
        return lease.holder if lease else ""


def election(store: MemoryLeases, identity: str, **changes: float) -> LeaderElection:
    config = ElectionConfig(
        name="lock",
        namespace="ops",
        identity=identity,
        lease_seconds=changes.get("lease", LEASE),
        renew_deadline_seconds=changes.get("renew", RENEW),
        retry_seconds=changes.get("retry", RETRY),
        call_timeout_seconds=1.0,
    )
    return LeaderElection(store, config)


async def acquire_within(candidate: LeaderElection, seconds: float) -> float | None:
    """Seconds until `candidate` won the Lease, or None when it did not within `seconds`."""
    started = time.monotonic()
    stop = asyncio.Event()
    try:
        async with asyncio.timeout(seconds):
            await candidate.acquire(stop)
    except TimeoutError:
        return None
    return time.monotonic() - started


def leader_gauge() -> float | None:
    return REGISTRY.get_sample_value("desktop_image_operator_leader")


def objects_gauge() -> dict[str, float]:
    """The objects gauge by reason, as a scrape sees it."""
    return {
        sample.labels["reason"]: sample.value
        for family in metrics.OBJECTS.collect()
        for sample in family.samples
    }


# -- taking the Lease -----------------------------------------------------------------------------------


async def test_a_missing_lease_is_created_and_the_fence_opens_until_the_renew_deadline() -> None:
    store = MemoryLeases()
    first = election(store, "a")
    before = time.monotonic()
    assert await acquire_within(first, 1.0) is not None
    assert store.holder() == "a"
    assert first.leading
    assert leader_gauge() == 1
    assert first.fence.open
    assert before + RENEW - 0.2 < time.monotonic() + first.fence.remaining() <= time.monotonic() + RENEW
    lease = store.leases[("ops", "lock")]
    assert lease.duration_seconds == 2  # whole seconds, rounded up
    assert lease.transitions == 0
    assert lease.acquired_at == lease.renewed_at


async def test_a_held_lease_is_taken_only_after_its_duration_passed_unrenewed() -> None:
    store = MemoryLeases()
    assert await acquire_within(election(store, "a"), 1.0) is not None
    standby = election(store, "b")
    waited = await acquire_within(standby, 3.0)
    assert waited is not None
    # The holder's duration is whole seconds (2): the standby waits that long from when it first saw it.
    assert 2.0 <= waited < 2.0 + RETRY + 0.3
    lease = store.leases[("ops", "lock")]
    assert lease.holder == "b"
    assert lease.transitions == 1


async def test_a_standby_never_takes_a_lease_that_keeps_being_renewed() -> None:
    store = MemoryLeases()
    leader = election(store, "a")
    await acquire_within(leader, 1.0)
    holding = asyncio.create_task(leader.hold())
    try:
        assert await acquire_within(election(store, "b"), 3 * LEASE) is None
        assert store.holder() == "a"
        assert leader.fence.open
    finally:
        holding.cancel()
        await asyncio.gather(holding, return_exceptions=True)
    assert not leader.fence.open
    assert not leader.leading


async def test_of_two_candidates_racing_for_a_free_lease_only_one_wins() -> None:
    store = MemoryLeases()
    first, second = election(store, "a"), election(store, "b")

    async def second_writes_first() -> None:
        assert await acquire_within(second, 1.0) is not None

    store.before_write = second_writes_first  # b slips in between a's read and a's write
    assert not await first._try(time.monotonic() + 1.0)
    assert store.holder() == "b"
    assert second.fence.open
    assert not first.fence.open


# -- losing it -------------------------------------------------------------------------------------------


async def test_a_leader_that_cannot_renew_fences_itself_before_the_lease_can_expire() -> None:
    store = MemoryLeases()
    leader = election(store, "a")
    await acquire_within(leader, 1.0)
    last_renewal = time.monotonic()
    store.unavailable = True
    async with asyncio.timeout(RENEW + 1.0):
        await leader.hold()
    fenced_after = time.monotonic() - last_renewal
    assert RENEW - 0.1 <= fenced_after < LEASE  # a standby may act only after LEASE
    assert not leader.fence.open
    assert not leader.leading
    assert leader_gauge() == 0
    with pytest.raises(Fenced):
        leader.fence.check("DesktopImageService.Copy")


async def test_a_frozen_leader_refuses_calls_by_the_clock_before_its_loop_runs_again() -> None:
    now = [100.0]
    fence = Fence(lambda: now[0])
    fence.grant(110.0)
    fence.check("DesktopImageService.Delete")
    now[0] = 110.0  # woken up exactly at the deadline: no renewal happened, and none needs to run first
    with pytest.raises(Fenced, match="not the leader"):
        fence.check("DesktopImageService.Delete")


async def hold_until_lost(leader: LeaderElection, change: Callable[[], None]) -> float:
    """Let `leader` renew a while, then `change` the Lease behind its back; seconds until it stepped down."""
    holding = asyncio.create_task(leader.hold())
    await asyncio.sleep(RETRY * 1.5)
    assert leader.fence.open
    changed = time.monotonic()
    change()
    async with asyncio.timeout(RENEW + 1.0):
        await holding
    return time.monotonic() - changed


@pytest.mark.parametrize("holder", ["usurper", ""])
async def test_a_leader_that_finds_its_lease_written_by_someone_else_steps_down_within_a_retry_period(
    holder: str,
) -> None:
    store = MemoryLeases()
    leader = election(store, "a")
    await acquire_within(leader, 1.0)

    def overwrite() -> None:
        lease = store.leases[("ops", "lock")]
        store.leases[("ops", "lock")] = replace(lease, holder=holder, resource_version="999")

    assert await hold_until_lost(leader, overwrite) <= RETRY + 0.1
    assert store.holder() == holder  # left as it was found: not taken back
    assert not leader.fence.open
    assert not leader.leading
    assert leader_gauge() == 0


async def test_a_leader_whose_lease_is_gone_steps_down_within_a_retry_period_and_may_take_it_again() -> None:
    store = MemoryLeases()
    leader = election(store, "a")
    await acquire_within(leader, 1.0)
    assert await hold_until_lost(leader, store.leases.clear) <= RETRY + 0.1
    assert not leader.fence.open
    assert store.leases == {}  # not re-created behind the back of whoever deleted it, while it led
    assert await acquire_within(leader, 1.0) is not None
    assert store.holder() == "a"


async def test_a_step_down_cancels_the_calls_in_flight_under_the_fence() -> None:
    store = MemoryLeases()
    leader = election(store, "a")
    await acquire_within(leader, 1.0)

    async def call() -> None:
        async with leader.fence.guard("DesktopImageService.Copy"):
            await asyncio.sleep(60)

    in_flight = asyncio.create_task(call())
    await asyncio.sleep(0)
    leader.step_down()
    with pytest.raises(Fenced):
        await in_flight


async def test_a_step_down_empties_the_objects_gauge_and_ignores_late_reports_until_the_next_term() -> None:
    metrics.OBJECTS.start_term()
    metrics.OBJECTS.set_state("uid-1", "Available")
    assert objects_gauge() == {"Available": 1.0}
    store = MemoryLeases()
    leader = election(store, "a")
    await acquire_within(leader, 1.0)
    leader.step_down()
    assert leader_gauge() == 0
    assert objects_gauge() == {}
    metrics.OBJECTS.set_state("uid-1", "Copying")  # a reconcile ending after the step-down
    assert objects_gauge() == {}
    metrics.OBJECTS.start_term()
    metrics.OBJECTS.set_state("uid-2", "Copying")
    assert objects_gauge() == {"Copying": 1.0}


async def test_a_fenced_client_sends_nothing_and_says_why() -> None:
    transport = ScriptedTransport()
    transport.script("get_image", image())
    fence = Fence()
    client = ManagedClient(
        transport,
        FakeTokenSource(),
        limiter=CallLimiter(max_concurrency=1, requests_per_second=100),
        gate=fence,
    )
    with pytest.raises(Fenced) as raised:
        await client.get_image("img-1")
    assert transport.calls == []
    assert "not the leader" in str(raised.value)
    fence.grant(time.monotonic() + 5)
    assert (await client.get_image("img-1")).id == "img-1"


# -- giving it back --------------------------------------------------------------------------------------


async def test_release_frees_the_lease_so_a_standby_leads_at_its_next_attempt() -> None:
    store = MemoryLeases()
    leader, standby = election(store, "a"), election(store, "b")
    await acquire_within(leader, 1.0)
    assert await standby._try(time.monotonic() + 1.0) is False
    await leader.release()
    assert store.holder() == ""
    assert not leader.fence.open
    assert not leader.leading
    waited = await acquire_within(standby, 1.0)
    assert waited is not None
    assert waited < 0.1


async def test_release_leaves_a_lease_someone_else_took_alone() -> None:
    store = MemoryLeases()
    leader = election(store, "a")
    await acquire_within(leader, 1.0)
    lease = store.leases[("ops", "lock")]
    store.leases[("ops", "lock")] = replace(lease, holder="b", resource_version="999")
    await leader.release()
    assert store.holder() == "b"


# -- settings --------------------------------------------------------------------------------------------


def parse(argv: list[str], environ: dict[str, str] | None = None) -> RunSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return RunSettings.model_validate(settings_values(parser.parse_args(argv), environ or {}))


def test_election_is_on_by_default_with_controller_runtime_durations() -> None:
    settings = parse([])
    assert settings.leader_elect is True
    assert (settings.lease_duration_seconds, settings.renew_deadline_seconds) == (15.0, 10.0)
    assert settings.retry_period_seconds == 2.0
    assert settings.lease_name == "desktop-image-operator"


def test_leader_elect_false_on_the_command_line_or_in_the_environment_turns_it_off() -> None:
    assert parse(["--leader-elect=false"]).leader_elect is False
    assert parse(["--leader-elect", "false"]).leader_elect is False
    assert parse(["--leader-elect"], {"DESKTOP_IMAGE_OPERATOR_LEADER_ELECT": "false"}).leader_elect
    assert parse([], {"DESKTOP_IMAGE_OPERATOR_LEADER_ELECT": "false"}).leader_elect is False


def test_a_renew_deadline_not_shorter_than_the_lease_is_refused() -> None:
    with pytest.raises(ValidationError, match="renew deadline"):
        parse(["--lease-duration-seconds", "10", "--renew-deadline-seconds", "10"])
    with pytest.raises(ValidationError, match="retry period"):
        parse(["--renew-deadline-seconds", "2", "--retry-period-seconds", "2"])


def test_lease_namespace_comes_from_the_option_the_pod_the_one_watched_namespace_or_default(
    tmp_path: Path,
) -> None:
    pod_file = tmp_path / "namespace"
    missing = tmp_path / "missing"
    assert lease_namespace(parse(["--lease-namespace", "ops"]), pod_file) == "ops"
    pod_file.write_text("operators\n")
    assert lease_namespace(parse(["--namespace", "team"]), pod_file) == "operators"
    assert lease_namespace(parse(["--namespace", "team"]), missing) == "team"
    assert lease_namespace(parse(["--namespace", "a,b"]), missing) == "default"
    assert lease_namespace(parse([]), missing) == "default"


def test_identity_is_the_option_else_unique_per_process() -> None:
    assert instance_identity(parse(["--leader-identity", "pod-7"])) == "pod-7"
    assert instance_identity(parse([])) != instance_identity(parse([]))


# -- against the API server ------------------------------------------------------------------------------


@pytest.mark.controlplane
async def test_two_instances_share_one_lease_on_a_real_api_server(kubeconfig: Path, namespace: str) -> None:
    kube = KubeApi(kubeconfig_login(kubeconfig), timeout_seconds=5.0)
    try:
        make = lambda who: LeaderElection(  # noqa: E731
            kube, ElectionConfig("lock", namespace, who, LEASE, RENEW, RETRY, 5.0)
        )
        first, second = make("a"), make("b")
        assert await acquire_within(first, 5.0) is not None
        assert await second._try(time.monotonic() + 5.0) is False
        lease = await kube.read_lease(namespace, "lock", within=5.0)
        assert lease is not None
        assert lease.holder == "a"
        assert lease.renewed_at is not None
        stale = replace(lease, holder="b")
        assert await first._try(time.monotonic() + 5.0)  # a renewal moves the resourceVersion on
        with pytest.raises(LeaseConflict):
            await kube.replace_lease(namespace, "lock", stale, within=5.0)
        await first.release()
        assert await acquire_within(second, 2.0) is not None
        lease = await kube.read_lease(namespace, "lock", within=5.0)
        assert lease is not None
        assert lease.holder == "b"
        assert lease.transitions == 1
    finally:
        await kube.aclose()
