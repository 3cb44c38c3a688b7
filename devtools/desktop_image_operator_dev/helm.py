"""The pinned Helm of this repository and what it renders from: the chart, the CRD, the plain manifests.

These are tools of a checkout (the development package is installed editable from it), so the paths are
the repository's own.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from desktop_image_operator_dev.devenv import processes

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "desktop-image-operator"
CRD_FILE = REPO / "crds" / "clouddesktop.yc.io_desktopimages.yaml"
CHART_CRD_FILE = CHART / "crds" / CRD_FILE.name
MANIFESTS = REPO / "deploy" / "manifests"
HELM_SCRIPT = REPO / "scripts" / "helm.sh"

# The first call of scripts/helm.sh builds Helm from its Go module: bounded, but generous.
HELM_BUILD_TIMEOUT = 840


class HelmFailed(AssertionError):
    """A helm command exited non-zero (an assertion failure where the tests run it)."""


def helm_binary() -> Path:
    """The pinned Helm, built on first use by scripts/helm.sh."""
    completed = subprocess.run(
        [str(HELM_SCRIPT), "--print-path"], capture_output=True, text=True, timeout=HELM_BUILD_TIMEOUT
    )
    if completed.returncode != 0:
        raise RuntimeError(f"scripts/helm.sh failed:\n{completed.stderr}{completed.stdout}")
    return Path(completed.stdout.strip().splitlines()[-1])


class Helm:
    """Helm with its own config, cache and data directories (nothing of the user's is read or written)."""

    def __init__(self, binary: Path, home: Path, kubeconfig: Path | None = None) -> None:
        self.binary = binary
        self.env = {
            **processes.environment_without_kube_settings(),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        if kubeconfig is not None:
            self.env["KUBECONFIG"] = str(kubeconfig)
        self.workdir = home

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=timeout, env=self.env
        )
        if check and completed.returncode != 0:
            output = completed.stderr + completed.stdout
            raise HelmFailed(f"helm {' '.join(args)} failed ({completed.returncode}):\n{output}")
        return completed

    def values_file(self, values: Mapping[str, Any]) -> Path:
        handle, name = tempfile.mkstemp(prefix="values-", suffix=".yaml", dir=self.workdir)
        with os.fdopen(handle, "w") as out:
            yaml.safe_dump(dict(values), out)
        return Path(name)

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "dio",
        namespace: str = "operators",
        args: Sequence[str] = (),
    ) -> str:
        command = [release, str(CHART), "--namespace", namespace, *args]
        if values:
            command += ["--values", str(self.values_file(values))]
        return self("template", *command).stdout

    def render(self, values: Mapping[str, Any] | None = None, **options: Any) -> list[dict[str, Any]]:
        return documents(self.template(values, **options))


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]
