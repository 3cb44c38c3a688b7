"""Several operator processes with leader election against one fake cloud, each with its own service
account, so the fake's request log says who called. Default Lease durations (15 s / 10 s / 2 s).

`python -m benchmarks.failover` runs the long version (50 objects, 10 SIGKILLs) and writes a report.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from benchmarks.failover import Replicas, call_time, calls_by_instance, gaps, terms

from desktop_image_operator_dev.devenv.stack import Kubectl as StackKubectl
from tests.integration.conftest import StartReplicas
from tests.support.kube import Kubectl
from tests.support.manifests import desktop_image, text
from tests.support.processes import FakeCloudProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

LEASE, RENEW = 15.0, 10.0


def apply(kubectl: Kubectl, namespace: str, *names: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(*(desktop_image(name) for name in names)))


def wait_ready(kubectl: Kubectl, namespace: str, names: list[str], timeout: int = 120) -> None:
    objects = [f"desktopimage/{name}" for name in names]
    kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"--timeout={timeout}s", *objects,
        timeout=timeout + 10,
    )  # fmt: skip


def one_image_each(cloud: FakeCloudProcess, names: list[str]) -> None:
    images = cloud.images()
    assert sorted(image["name"] for image in images) == sorted(names)


def no_split_brain(cloud: FakeCloudProcess, replicas: Replicas, kubeconfig: Path, namespace: str) -> None:
    """Calls fall into one term per leadership, and no two terms overlap."""
    found = terms(cloud.requests(), replicas.principals)
    lease = StackKubectl(kubeconfig).json("get", "lease", "-n", namespace, "desktop-image-operator")
    assert len(found) == lease["spec"]["leaseTransitions"] + 1, [(t.instance, t.calls) for t in found]
    assert all(gap > 0 for gap in gaps(found))


def test_a_standby_takes_over_each_time_the_leader_is_killed(
    start_replicas: StartReplicas,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    kubeconfig: Path,
    namespace: str,
) -> None:
    replicas = start_replicas(3)
    names = [f"image-{i}" for i in range(10)]
    failovers = []
    for batch in (names[:5], names[5:]):
        leader = replicas.wait_leader()
        apply(kubectl, namespace, *batch)
        time.sleep(3)  # converging: copies and polls in flight
        killed_at = time.time()
        leader.child.kill9()
        successor = replicas.wait_leader(other_than=leader)
        failovers.append(time.time() - killed_at)
        assert successor is not leader
        leader.child.start()
    wait_ready(kubectl, namespace, names)
    one_image_each(cloud, names)
    found = terms(cloud.requests(), replicas.principals)
    measured = gaps(found)
    print(f"failover (last call to first call): {measured}; SIGKILL to new leader: {failovers}")
    assert len(measured) == 2
    assert max(measured) <= 20.0
    no_split_brain(cloud, replicas, kubeconfig, namespace)


def test_sigterm_hands_the_lease_to_a_standby_within_three_seconds(
    start_replicas: StartReplicas, cloud: FakeCloudProcess, kubectl: Kubectl, kubeconfig: Path, namespace: str
) -> None:
    replicas = start_replicas(2)
    leader = replicas.wait_leader()
    apply(kubectl, namespace, "before")
    wait_ready(kubectl, namespace, ["before"])
    sent = time.monotonic()
    leader.child.signal(signal.SIGTERM)
    successor = replicas.wait_leader(other_than=leader, timeout=10)
    handover = time.monotonic() - sent
    assert handover <= 3.0, handover
    assert leader.child.process.wait(timeout=40) == 0
    apply(kubectl, namespace, "after")
    wait_ready(kubectl, namespace, ["after"])
    one_image_each(cloud, ["before", "after"])
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    ours = [e for e in events if e.get("reportingComponent") == "desktop-image-operator"]
    about_after = {e["reportingInstance"] for e in ours if e["involvedObject"]["name"] == "after"}
    assert about_after == {successor.name}
    no_split_brain(cloud, replicas, kubeconfig, namespace)


def test_a_frozen_leader_makes_no_cloud_call_after_its_renew_deadline_and_steps_down(
    start_replicas: StartReplicas, cloud: FakeCloudProcess, kubectl: Kubectl, kubeconfig: Path, namespace: str
) -> None:
    replicas = start_replicas(2)
    names = [f"frozen-{i}" for i in range(4)]
    leader = replicas.wait_leader()
    apply(kubectl, namespace, *names)
    time.sleep(2)
    stopped_at = time.time()
    leader.child.signal(signal.SIGSTOP)
    try:
        successor = replicas.wait_leader(other_than=leader, timeout=LEASE + 10)
        time.sleep(3)  # the successor calls the cloud while the old leader is still frozen
    finally:
        leader.child.signal(signal.SIGCONT)
    resumed_at = time.time()

    def stepped_down() -> bool:
        health = leader.child.health()
        return health is not None and health["leader"] is False

    wait_until(stepped_down, timeout=10, what="the old leader to step down")
    time.sleep(3)  # would it call anything now that it runs again?
    wait_ready(kubectl, namespace, names)
    entries = cloud.requests()
    late = [
        entry
        for entry in entries
        if entry.get("principal") == leader.principal and call_time(entry) > stopped_at + RENEW
    ]
    assert late == [], late
    assert calls_by_instance(entries, replicas.principals)[successor.name] > 0
    assert leader.running()
    assert "stopped leading" in leader.child.logs()
    print(f"frozen {resumed_at - stopped_at:.1f} s; calls {calls_by_instance(entries, replicas.principals)}")
    one_image_each(cloud, names)
    no_split_brain(cloud, replicas, kubeconfig, namespace)
