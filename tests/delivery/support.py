"""Helpers of the delivery tests: the chart's rendered objects, the README's tenancy set-ups, ServiceAccount
kubeconfigs and operator processes started from any executable."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from desktop_image_operator_dev.devenv import processes
from desktop_image_operator_dev.devenv.stack import Child, as_environment, operator_wiring
from desktop_image_operator_dev.helm import REPO
from tests.support.processes import QUICK_SETTINGS, FakeCloudProcess, wait_until

DOCKERFILE = REPO / "Dockerfile"


def find(objects: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        obj for obj in objects if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]


def only(objects: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = find(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def container_env(objects: Sequence[dict[str, Any]]) -> dict[str, str]:
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


# --- The README's tenancy set-ups ------------------------------------------------------------------------

README = REPO / "README.md"
TENANCY_SET_UPS = ("one team", "a folder per team", "teams bringing their own keys")


def readme_tenancy() -> tuple[str, list[dict[str, Any]]]:
    """The README's Tenancy section, and the YAML snippets it shows (values files and a manifest)."""
    section = README.read_text().split("\n### Tenancy\n", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    return section, [yaml.safe_load(block) for block in blocks]


def readme_set_up(name: str) -> dict[str, Any]:
    """The values of one of the README's tenancy set-ups (TENANCY_SET_UPS, in the README's order)."""
    values = [snippet for snippet in readme_tenancy()[1] if "apiVersion" not in snippet]
    assert len(values) == len(TENANCY_SET_UPS), "the README shows one values file per set-up"
    return values[TENANCY_SET_UPS.index(name)]


def for_namespace(grant: dict[str, Any], namespace: str) -> dict[str, Any]:
    """A grant of the README's, selecting `namespace` instead of the namespace it names."""
    selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return {**grant, "namespaceSelector": selector}


# --- Kubernetes identities ----------------------------------------------------------------------------


def token_kubeconfig(path: Path, *, server: str, ca_file: Path, token: str, namespace: str) -> Path:
    """A kubeconfig that authenticates with a bearer token only (what a pod's ServiceAccount gets)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": "service-account", "user": {"token": token}}],
        "contexts": [
            {
                "name": "service-account",
                "context": {"cluster": "local", "user": "service-account", "namespace": namespace},
            }
        ],
        "current-context": "service-account",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


# --- An operator process from any executable ------------------------------------------------------------


def operator_env(
    cloud: FakeCloudProcess,
    *,
    kubeconfig: Path,
    namespaces: Sequence[str],
    metrics_port: int,
    health_port: int,
) -> dict[str, str]:
    """The operator's settings for the fake cloud, as environment variables (as the chart passes them)."""
    settings = {
        **operator_wiring(cloud, metrics_port=metrics_port, health_port=health_port),
        **QUICK_SETTINGS,
        "LOG_FORMAT": "json",
    }
    if namespaces:
        settings["NAMESPACE"] = ",".join(namespaces)
    return {"KUBECONFIG": str(kubeconfig), **as_environment(settings)}


class ProcessUnderTest(Child):
    """The operator started from any executable (in `cwd` if given), its output in a log file."""

    name = "operator"

    def __init__(
        self, argv: Sequence[str | Path], *, env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> None:
        super().__init__(argv, env=env, log=log)
        self.process = processes.start(self.argv, log_path=log, env=env, cwd=cwd)

    def wait_http(self, url: str, *, timeout: float = 60) -> httpx.Response:
        """Poll `url` until it answers 200 (failing at once if the process died)."""

        def answered() -> httpx.Response | None:
            self.check()
            try:
                response = httpx.get(url, timeout=2, trust_env=False)
            except httpx.HTTPError:
                return None
            return response if response.status_code == 200 else None

        response: httpx.Response = wait_until(answered, timeout=timeout, what=url)
        return response
