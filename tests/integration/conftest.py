"""Fixtures for the operator's integration tests: the CRD, the fake cloud and operator processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Kubectl
from tests.integration.support import FakeCloudProcess, OperatorProcess

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "clouddesktop.yc.io_desktopimages.yaml"


@pytest.fixture(scope="session")
def crd(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(CRD_FILE))
    kubectl("wait", "--for=condition=Established", "crd/desktopimages.clouddesktop.yc.io", "--timeout=30s")


@pytest.fixture(scope="session")
def fake_cloud_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeCloudProcess]:
    cloud = FakeCloudProcess(tmp_path_factory.mktemp("fake-cloud"))
    yield cloud
    cloud.stop()


@pytest.fixture
def cloud(fake_cloud_process: FakeCloudProcess) -> FakeCloudProcess:
    """The fake cloud, emptied of images, requests and faults for this test."""
    fake_cloud_process.reset()
    return fake_cloud_process


StartOperator = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(
    crd: None, kubeconfig: Path, cloud: FakeCloudProcess, namespace: str, tmp_path: Path
) -> Iterator[StartOperator]:
    """Start operator processes watching this test's namespace (or the `namespace` option's); all are
    stopped afterwards."""
    started: list[OperatorProcess] = []

    def start(**options: Any) -> OperatorProcess:
        options.setdefault("namespace", namespace)
        operator = OperatorProcess(tmp_path, kubeconfig, cloud, **options)
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()
