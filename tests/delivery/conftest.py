"""Fixtures of the delivery tests: the pinned Helm, with and without the local control plane, and the pinned
promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from desktop_image_operator_dev.helm import REPO, Helm, helm_binary

# The first call of scripts/promtool.sh builds promtool from the Prometheus Go module (about 5 minutes on
# two cores): bounded, but generous.
PROMTOOL_BUILD_TIMEOUT = 900


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


@pytest.fixture(scope="session")
def promtool() -> Path:
    """scripts/promtool.sh's promtool (built on first use, then cached outside the repository)."""
    completed = subprocess.run(
        [str(REPO / "scripts" / "promtool.sh"), "--print-path"],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_BUILD_TIMEOUT,
    )
    assert completed.returncode == 0, f"scripts/promtool.sh failed:\n{completed.stderr}{completed.stdout}"
    return Path(completed.stdout.strip().splitlines()[-1])
