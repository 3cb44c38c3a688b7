"""Shared fixtures: the local Kubernetes control plane and ways to talk to it, fresh namespaces, the CRD,
the fake cloud and operator processes. Their helpers live in tests/support/."""

from __future__ import annotations

import os

# Some tests run gRPC in this process (the fake cloud, the gRPC client), and children are started with a
# pre-exec hook (they die with us). With gRPC's fork support on, its event engine restarts its poller in
# the forked child, where closing inherited descriptors before exec can abort the child. Off, before any
# gRPC import.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from tests.support.kube import CRD_FILE, Kubectl, MakeNamespace, StartOperator, kubectl_for, unique_name
from tests.support.processes import FakeCloudProcess, OperatorProcess
from tests.support.secret_audit import SecretAuditingControlPlane


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A real etcd + kube-apiserver (+ kube-controller-manager) for the whole session, on free ports; its
    audit log records the reads and watches of Secrets (tests count them)."""
    with SecretAuditingControlPlane() as cp:
        yield cp


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    """Run kubectl as a user would; `check=False` to inspect failures."""
    return kubectl_for(kubeconfig)


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    api.close()


@pytest.fixture
def make_namespace(api_client: client.ApiClient) -> Iterator[MakeNamespace]:
    """Fresh namespaces for one test (with labels if given), all deleted afterwards (the controller
    manager finishes the deletion)."""
    core = client.CoreV1Api(api_client)
    made: list[str] = []

    def make(prefix: str = "test", labels: dict[str, str] | None = None) -> str:
        name = unique_name(prefix)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
        made.append(name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name)


@pytest.fixture
def namespace(make_namespace: MakeNamespace) -> str:
    """A fresh namespace for this test."""
    return make_namespace()


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
    """The fake cloud process, emptied of images, requests and faults for this test."""
    fake_cloud_process.reset()
    return fake_cloud_process


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
