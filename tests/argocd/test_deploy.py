"""The Argo CD manifests under deploy/argocd: the argocd-cm snippet and the example Applications."""

from __future__ import annotations

from typing import Any

import yaml

from desktop_image_operator.api import GROUP, KIND
from tests.argocd.configmap import CONFIGMAP, KEY, render
from tests.argocd.runner import ARGOCD, HEALTH_SCRIPT

APPLICATION = ARGOCD / "application.yaml"
WAVE = "argocd.argoproj.io/sync-wave"


def test_configmap_embeds_exactly_the_health_script() -> None:
    configmap = yaml.safe_load(CONFIGMAP.read_text())
    assert configmap["apiVersion"] == "v1"
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["name"] == "argocd-cm"
    assert list(configmap["data"]) == [KEY]
    assert configmap["data"][KEY] == HEALTH_SCRIPT.read_text(), (
        "argocd-cm-health.yaml is stale: run `python -m tests.argocd.configmap`"
    )


def test_configmap_file_is_what_the_generator_writes() -> None:
    assert CONFIGMAP.read_text() == render(HEALTH_SCRIPT.read_text())


def test_configmap_key_names_the_group_and_kind() -> None:
    # Argo CD reads resource.customizations.health.<group>_<kind>.
    assert f"resource.customizations.health.{GROUP}_{KIND}" == KEY


def _applications() -> dict[str, dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(APPLICATION.read_text()) if doc is not None]
    assert all(doc["apiVersion"] == "argoproj.io/v1alpha1" for doc in documents)
    assert all(doc["kind"] == "Application" for doc in documents)
    return {doc["metadata"]["name"]: doc for doc in documents}


def _wave(application: dict[str, Any]) -> int:
    value = application["metadata"]["annotations"][WAVE]
    assert isinstance(value, str), "Argo CD annotations are strings: quote the wave"
    return int(value)


def test_application_waves_put_crds_then_controller_then_images() -> None:
    apps = _applications()
    by_path = {app["spec"]["source"]["path"]: app for app in apps.values()}
    crds = by_path["crds"]
    controller = by_path["deploy/helm/desktop-image-operator"]
    images = next(app for app in apps.values() if app not in (crds, controller))
    assert len(apps) == 3
    assert _wave(crds) == -1
    assert _wave(images) == 1
    assert _wave(crds) < _wave(controller) < _wave(images)


def test_crd_application_never_prunes_and_applies_server_side() -> None:
    apps = _applications()
    crds = next(app for app in apps.values() if app["spec"]["source"]["path"] == "crds")
    policy = crds["spec"]["syncPolicy"]
    assert policy["automated"]["prune"] is False
    assert "ServerSideApply=true" in policy["syncOptions"]
    # The CRD's own annotations are described for the generated file (it cannot carry them itself).
    text = APPLICATION.read_text()
    assert "argocd.argoproj.io/sync-options: Prune=false,ServerSideApply=true" in text


def test_controller_application_leaves_the_crd_to_the_crd_application() -> None:
    apps = _applications()
    controller = next(
        app for app in apps.values() if app["spec"]["source"]["path"] == "deploy/helm/desktop-image-operator"
    )
    assert controller["spec"]["source"]["helm"]["skipCrds"] is True
