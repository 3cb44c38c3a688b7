"""The release workflow (it cannot run here): what it promises, read from the file itself. actionlint
checks its syntax and expressions in `make lint`."""

from __future__ import annotations

from typing import Any

import yaml

from desktop_image_operator_dev.helm import REPO

WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def _workflow() -> dict[Any, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _steps() -> list[dict[str, Any]]:
    return [step for job in _workflow()["jobs"].values() for step in job["steps"]]


def _using(action: str) -> list[dict[str, Any]]:
    return [step for step in _steps() if str(step.get("uses", "")).startswith(f"{action}@")]


def test_release_runs_on_version_tags_only() -> None:
    triggers = _workflow()[True]  # YAML 1.1 reads the key `on` as true
    assert list(triggers) == ["push"]
    assert triggers["push"] == {"tags": ["v*.*.*"]}


def test_image_is_built_for_amd64_and_arm64_with_an_sbom_and_labels_from_the_build() -> None:
    [build] = _using("docker/build-push-action")
    options = build["with"]
    assert options["platforms"] == "linux/amd64,linux/arm64"
    assert options["push"] is True
    assert options["sbom"] is True
    arguments = {line.split("=")[0] for line in options["build-args"].splitlines()}
    assert arguments == {"VERSION", "REVISION", "SOURCE"}


def test_registry_comes_from_repository_variables_and_credentials_from_secrets() -> None:
    [login] = _using("docker/login-action")
    assert login["with"]["registry"] == "${{ vars.REGISTRY }}"
    assert login["with"]["password"].startswith("${{ secrets.")
    assert "vars.REGISTRY" in _workflow()["jobs"]["release"]["env"]["IMAGE"]


def test_image_and_chart_are_signed_and_the_chart_pushed_as_an_oci_artifact() -> None:
    scripts = "\n".join(str(step.get("run", "")) for step in _steps())
    assert "helm push" in scripts
    assert _workflow()["jobs"]["release"]["env"]["CHART_REPOSITORY"].startswith("oci://")
    assert scripts.count("cosign sign") == 2
    assert _workflow()["jobs"]["release"]["permissions"]["id-token"] == "write"
