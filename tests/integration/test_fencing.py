"""The leader's fence without gaps, with operator processes on the local control plane and the fake cloud:
a Lease written by someone else ends the leadership at once, a copy in flight never lands after the Lease
moved on (even with the cloud ignoring idempotency keys), and a deposed replica exports only its standby
state. Default Lease durations (15 s / 10 s / 2 s)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from benchmarks.failover import MUTATING, Replica, call_time
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import StartReplicas
from tests.support.kube import Kubectl, apply, wait_ready
from tests.support.manifests import desktop_image
from tests.support.processes import FakeCloudProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

LEASE, RETRY = 15.0, 2.0
LEASE_NAME = "desktop-image-operator"
# Beyond one retry period: the Lease read and the step-down take milliseconds, the rest is for a loaded
# machine (and for this test's polling).
SLACK = 0.5
COPY = "DesktopImageService.CopyFromDesktop"
# How long the fake takes to accept a copy: longer than any deadline a leader's fence allows (10 s).
SLOW_COPY_SECONDS = 20.0


# -- the Lease, written by someone else ---------------------------------------------------------------------


def micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseWriter:
    """Writes the operator's Lease as a person or a restore from a backup would, naming `holder`."""

    def __init__(self, api_client: client.ApiClient, namespace: str, holder: str) -> None:
        self._api = client.CoordinationV1Api(api_client)
        self._namespace = namespace
        self.holder = holder

    def seize(self) -> float:
        """Name the holder, acquired now; the wall time just before the write."""
        before = time.time()
        now = micro_time(datetime.now(UTC))
        self._patch({"holderIdentity": self.holder, "acquireTime": now, "renewTime": now})
        return before

    def hold(self, seconds: float) -> None:
        """Renew every retry period for `seconds`, as a live holder would; then stop (let go)."""
        for _ in range(max(1, round(seconds / RETRY))):
            time.sleep(RETRY)
            self._patch({"renewTime": micro_time(datetime.now(UTC))})

    def acquired_at(self) -> float:
        """When the holder named now took the Lease, as it wrote it (wall seconds)."""
        spec = self._api.read_namespaced_lease(LEASE_NAME, self._namespace).spec
        assert spec is not None
        assert spec.acquire_time is not None
        return float(spec.acquire_time.timestamp())

    def _patch(self, spec: dict[str, Any]) -> None:
        self._api.patch_namespaced_lease(LEASE_NAME, self._namespace, {"spec": spec})


# -- what a replica says ------------------------------------------------------------------------------------


def gauges(replica: Replica) -> tuple[float, dict[str, float]]:
    """The replica's leader gauge, and its objects gauge by reason."""
    families = {family.name: family for family in text_string_to_metric_families(replica.child.metrics())}
    leader = families["desktop_image_operator_leader"].samples[0].value
    objects = {s.labels["reason"]: s.value for s in families["desktop_image_operator_objects"].samples}
    return leader, objects


def ready(replica: Replica) -> bool:
    url = f"http://127.0.0.1:{replica.child.health_port}/readyz"
    return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200


def stands_by(replica: Replica) -> Callable[[], bool]:
    return lambda: replica.running() and replica.child.health() == {"instance": replica.name, "leader": False}


# -- what the cloud saw -------------------------------------------------------------------------------------


def copies_in_flight(cloud: FakeCloudProcess) -> int:
    """Copies the latency rule holds back now or held back before (the rule fires as a call arrives)."""
    rules = cloud.http.get("/faults").json()["faults"]
    return sum(int(rule["fired"]) for rule in rules)


def landed_after(cloud: FakeCloudProcess, replica: Replica, moment: float) -> list[dict[str, Any]]:
    """The replica's calls the cloud carried out after `moment`: not abandoned, and done by then."""
    return [
        entry
        for entry in cloud.requests()
        if entry.get("principal") == replica.principal
        and entry["code"] != "CANCELLED"
        and call_time(entry) + entry["durationMs"] / 1000.0 > moment
    ]


def one_image_each(cloud: FakeCloudProcess, names: list[str]) -> None:
    assert sorted(image["name"] for image in cloud.images()) == sorted(names)


def slow_copies_in_flight(
    cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, names: list[str]
) -> None:
    """The leader copies each object, and the cloud holds every copy back for SLOW_COPY_SECONDS."""
    cloud.fault(method=COPY, latencyMs=SLOW_COPY_SECONDS * 1000)
    apply(kubectl, namespace, *(desktop_image(name) for name in names))
    wait_until(lambda: copies_in_flight(cloud) >= len(names), timeout=30, what="every copy in flight")


# -- the tests ----------------------------------------------------------------------------------------------


def test_a_leader_that_finds_another_holder_in_its_lease_stands_by_at_once_and_acts_again_once_it_lets_go(
    start_replicas: StartReplicas,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    replica = start_replicas(1).wait_leader()
    apply(kubectl, namespace, desktop_image("before"))
    wait_ready(kubectl, namespace, "before")
    assert gauges(replica) == (1.0, {"Available": 1.0})
    intruder = LeaseWriter(api_client, namespace, "intruder")
    seized = intruder.seize()
    wait_until(stands_by(replica), timeout=RETRY + SLACK, interval=0.05, what="the replica to stand by")
    assert time.time() - seized <= RETRY + SLACK
    # A standby exports its standby state only: no object of the term that ended.
    assert gauges(replica) == (0.0, {})
    assert ready(replica)
    apply(kubectl, namespace, desktop_image("during"))  # what a leader would copy at once
    intruder.hold(3 * RETRY)
    assert landed_after(cloud, replica, seized + RETRY + SLACK) == []
    assert [e for e in cloud.requests() if e["method"] in MUTATING and call_time(e) > seized] == []
    # The intruder let go: once its Lease has expired by the replica's clock, the replica leads again.
    wait_ready(kubectl, namespace, "before", "during", timeout=int(LEASE) + 60)
    assert replica.leading()
    one_image_each(cloud, ["before", "during"])


def test_copies_in_flight_when_the_lease_moves_to_a_standby_are_cancelled_and_never_land(
    start_replicas: StartReplicas,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    cloud.config(honorIdempotency=False)  # a second copy would be a second image
    replicas = start_replicas(2)
    old = replicas.wait_leader()
    standby = next(replica for replica in replicas if replica is not old)
    names = ["moved-0", "moved-1"]
    slow_copies_in_flight(cloud, kubectl, namespace, names)
    moved = LeaseWriter(api_client, namespace, standby.name).seize()  # from now on the standby holds it
    cloud.http.delete("/faults").raise_for_status()  # the successor's copies are accepted at once
    wait_until(stands_by(old), timeout=RETRY + SLACK, interval=0.05, what="the old leader to stand by")
    assert replicas.wait_leader(other_than=old, timeout=10) is standby
    wait_ready(kubectl, namespace, *names)
    time.sleep(max(0.0, moved + SLOW_COPY_SECONDS + 1 - time.time()))  # any old copy would have landed
    assert landed_after(cloud, old, moved) == []
    abandoned = [e for e in cloud.requests(COPY) if e.get("principal") == old.principal]
    assert [entry["code"] for entry in abandoned] == ["CANCELLED"] * len(names)
    # Given up at the step-down, not only at the deadline they carried (up to 10 s later).
    assert all(call_time(e) + e["durationMs"] / 1000.0 <= moved + RETRY + SLACK for e in abandoned)
    assert gauges(old) == (0.0, {})
    one_image_each(cloud, names)


def test_copies_of_a_frozen_leader_end_with_its_fence_over_grpc_before_a_standby_can_take_over(
    start_replicas: StartReplicas,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    cloud.config(honorIdempotency=False)
    replicas = start_replicas(2, TRANSPORT="grpc")
    old = replicas.wait_leader()
    names = ["frozen-0", "frozen-1"]
    slow_copies_in_flight(cloud, kubectl, namespace, names)
    stopped = time.time()
    old.child.signal(signal.SIGSTOP)  # its copies stay open on its side: only their deadline ends them
    try:
        successor = replicas.wait_leader(other_than=old, timeout=LEASE + 10)
        cloud.http.delete("/faults").raise_for_status()
        acquired = LeaseWriter(api_client, namespace, successor.name).acquired_at()
        wait_ready(kubectl, namespace, *names)
    finally:
        old.child.signal(signal.SIGCONT)
    wait_until(stands_by(old), timeout=10, what="the old leader to stand by")
    time.sleep(max(0.0, stopped + SLOW_COPY_SECONDS + 1 - time.time()))
    assert landed_after(cloud, old, acquired) == []
    abandoned = [e for e in cloud.requests(COPY) if e.get("principal") == old.principal]
    assert [entry["code"] for entry in abandoned] == ["CANCELLED"] * len(names)
    assert all(entry["durationMs"] < 10_000 for entry in abandoned)  # the renew deadline bounded them
    one_image_each(cloud, names)
