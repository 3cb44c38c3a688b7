"""Fixtures of the delivery tests: the pinned Helm, extra namespaces, and the integration suite's fake cloud
and CRD (imported, so this package gets fixtures of the same name)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.delivery.support import Helm, helm_binary
from tests.integration.conftest import cloud, crd, fake_cloud_process  # noqa: F401


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """scripts/helm.sh's Helm (built on first use, then cached outside the repository)."""
    return helm_binary()


@pytest.fixture(scope="session")
def helm(helm_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """Helm without a cluster: lint and template."""
    return Helm(helm_bin, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def cluster_helm(helm_bin: Path, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """Helm against the local control plane."""
    return Helm(helm_bin, tmp_path_factory.mktemp("helm-cluster"), kubeconfig)


MakeNamespace = Callable[..., str]


@pytest.fixture
def make_namespace(api_client: client.ApiClient) -> Iterator[MakeNamespace]:
    """More fresh namespaces for one test (with labels if given), all deleted afterwards."""
    core = client.CoreV1Api(api_client)
    made: list[str] = []

    def make(prefix: str = "test", labels: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
        made.append(name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name)
