"""Fixtures of the integration tests with leader election: several operator processes on one Lease."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from benchmarks.failover import ROOMY_QUOTA, Replica, Replicas

from tests.support.processes import FakeCloudProcess

# start_replicas(count, **settings) -> the started instances (the `start_replicas` fixture).
StartReplicas = Callable[..., Replicas]


@pytest.fixture
def start_replicas(
    crd: None, kubeconfig: Path, cloud: FakeCloudProcess, namespace: str, tmp_path: Path
) -> Iterator[StartReplicas]:
    """Operator processes with leader election on a Lease in this test's namespace, named op-0, op-1...
    and each with a service account of its own, so the fake's request log says who called; further
    `run` settings by name (TRANSPORT="grpc", say) apply to all. All are stopped afterwards."""
    started: list[Replicas] = []
    cloud.config(**ROOMY_QUOTA)

    def start(count: int, **settings: str) -> Replicas:
        replicas = Replicas(
            [
                Replica(
                    tmp_path,
                    cloud,
                    kubeconfig=kubeconfig,
                    namespace=namespace,
                    name=f"op-{i}",
                    settings=settings,
                )
                for i in range(count)
            ]
        )
        started.append(replicas)
        return replicas

    yield start
    for replicas in started:
        replicas.stop()
