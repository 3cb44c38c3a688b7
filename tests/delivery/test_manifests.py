"""deploy/manifests/: up to date with the chart, and applicable with `kubectl apply -k` (crds/ with -f)."""

from __future__ import annotations

import pytest
import yaml

from desktop_image_operator_dev import manifests as render_manifests
from desktop_image_operator_dev.helm import CRD_FILE, MANIFESTS, REPO, Helm, documents
from tests.support.kube import Kubectl

pytestmark = pytest.mark.timeout(900)  # the first test may build Helm


def test_manifests_are_up_to_date(helm: Helm) -> None:
    stale = render_manifests.stale_files(render_manifests.render(helm))
    assert not stale, (
        f"deploy/manifests/ is stale ({', '.join(stale)}): regenerate it with "
        f"`{render_manifests.COMMAND}` and commit the result"
    )


def test_manifests_hold_the_chart_defaults_crd_and_namespace(helm: Helm) -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["resources"][:2] == ["namespace.yaml", CRD_FILE.name]
    assert (MANIFESTS / CRD_FILE.name).read_text() == CRD_FILE.read_text()
    rendered = [
        doc for name in kustomization["resources"][2:] for doc in documents((MANIFESTS / name).read_text())
    ]
    assert sorted(d["kind"] for d in rendered) == sorted(
        d["kind"] for d in helm.render(release="desktop-image-operator", namespace="desktop-image-operator")
    )


@pytest.mark.controlplane
def test_kubectl_apply_k_and_apply_f_crds(kubectl: Kubectl, crd: None) -> None:
    objects = documents(kubectl("kustomize", str(MANIFESTS)).stdout)
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == sorted(
        [
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",  # the Lease
            "RoleBinding",
            "Role",  # the grants
            "RoleBinding",
            "ConfigMap",  # the grants: none by default
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "PodDisruptionBudget",
            "Service",
            "Deployment",
        ]
    )
    assert all(
        obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize" for obj in objects[2:]
    )
    applied = kubectl("apply", "-k", str(MANIFESTS))
    try:
        assert (
            "deployment.apps/desktop-image-operator created" in applied.stdout
            or "configured" in applied.stdout
        )
        # The restricted Pod Security level is enforced on the namespace: the pod template passes it.
        assert "Warning" not in applied.stderr, applied.stderr
        kubectl("apply", "-f", str(REPO / "crds"))
        kubectl(
            "wait", "--for=condition=Established", "crd/desktopimages.clouddesktop.yc.io", "--timeout=30s"
        )
    finally:
        # Everything but the CRD, which the rest of the session's tests share.
        rest = [obj for obj in objects if obj["kind"] != "CustomResourceDefinition"]
        kubectl("delete", "--wait=false", "--ignore-not-found", "-f", "-", stdin=yaml.safe_dump_all(rest))
