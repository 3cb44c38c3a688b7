"""Fixtures of the delivery tests: the pinned Helm, with and without the local control plane."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_image_operator_dev.helm import Helm, helm_binary


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
