"""The Helm chart on the local control plane: the API server accepts what it renders, it installs, and the
RBAC it grants is enough for the operator (run outside the cluster with the chart's ServiceAccount token)
and no more (a `kubectl auth can-i` table, printed)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from desktop_image_operator.reconciler.annotations import CREDENTIALS_FINALIZER
from desktop_image_operator_dev.devenv import tools
from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from desktop_image_operator_dev.helm import CHART, Helm, documents
from tests.delivery.support import token_kubeconfig
from tests.support import manifests
from tests.support.kube import Kubectl, MakeNamespace
from tests.support.processes import FakeCloudProcess, OperatorProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow, pytest.mark.timeout(900)]

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}
KEY = "key.json"
# Log lines that mean the operator lacked a permission (kopf degrades with a warning rather than failing).
PERMISSION_TROUBLE = (
    "Not enough permissions",
    "Failed to post an event",
    "Forbidden",
    "may not read Secret",
    "may not watch Secret",
    "HTTP 403",
)


def _apply_dry_run(kubectl: Kubectl, text: str) -> subprocess.CompletedProcess[str]:
    result = kubectl("apply", "--dry-run=server", "-f", "-", stdin=text)
    # The namespaces enforce and warn on the restricted Pod Security level: no warning means the
    # Deployment's pod template meets it.
    assert "Warning" not in result.stderr, result.stderr
    return result


@pytest.mark.parametrize(
    "variant",
    [
        "defaults",
        "namespaced",
        "existing-secret",
        "authorized-key",
        "metadata",
        "templated-crd",
        "everything",
    ],
)
def test_rendered_objects_are_accepted_by_the_api_server(
    variant: str, helm: Helm, kubectl: Kubectl, crd: None, make_namespace: MakeNamespace
) -> None:
    release_namespace = make_namespace("operators", RESTRICTED)
    watched = [make_namespace("watched", RESTRICTED) for _ in range(2)]
    variants: dict[str, dict[str, Any]] = {
        "defaults": {},
        "namespaced": {"watchNamespaces": watched},
        "existing-secret": {"credentials": {"existingSecret": "yc-sa-key"}},
        "authorized-key": {"credentials": {"authorizedKey": json.dumps({"id": "k"})}},
        "metadata": {
            "credentials": {"metadata": True},
            "serviceAccount": {"annotations": {"yandex.cloud/federated-yc-service-account-id": "aje1"}},
        },
        "templated-crd": {"crds": {"templated": True}},
        "everything": {
            "watchNamespaces": watched,
            "credentials": {"existingSecret": "yc-sa-key", "key": "sa.json"},
            "cloud": {"transport": "grpc", "maxConcurrency": 2, "requestsPerSecond": 0.5},
            "reconcile": {"resyncSeconds": 60},
            "podDisruptionBudget": {"enabled": True},
            "crds": {"templated": True},
            "extraEnv": [{"name": "TZ", "value": "UTC"}],
        },
    }
    objects = helm.render(variants[variant], release=f"dio-{variant}", namespace=release_namespace)
    result = _apply_dry_run(kubectl, yaml.safe_dump_all(objects))
    assert result.stdout.count("(server dry run)") == len(objects)


@dataclass
class Check:
    verb: str
    resource: str
    where: str  # a namespace, "*" for all namespaces, "" for a cluster-scoped resource
    expected: bool
    subresource: str = ""

    def argv(self) -> list[str]:
        argv = ["auth", "can-i", self.verb, self.resource]
        if self.subresource:
            argv.append(f"--subresource={self.subresource}")
        if self.where == "*":
            argv.append("--all-namespaces")
        elif self.where:
            argv += ["-n", self.where]
        return argv


def _elected(release_namespace: str) -> dict[str, str | None]:
    """Run the operator as the chart does: electing a leader on a Lease in the release namespace."""
    return {
        "DESKTOP_IMAGE_OPERATOR_LEADER_ELECT": "true",
        "DESKTOP_IMAGE_OPERATOR_LEASE_NAMESPACE": release_namespace,
    }


def _lease_checks(release_namespace: str, elsewhere: str) -> list[Check]:
    """The Lease: read, created and updated in the release namespace only; never listed or deleted."""
    return [
        Check("get", "leases", release_namespace, True),
        Check("create", "leases", release_namespace, True),
        Check("update", "leases", release_namespace, True),
        Check("patch", "leases", release_namespace, False),
        Check("delete", "leases", release_namespace, False),
        Check("list", "leases", release_namespace, False),
        Check("watch", "leases", "*", False),
        Check("get", "leases", elsewhere, False),
        Check("create", "leases", elsewhere, False),
    ]


def _can_i_table(sa_kubeconfig: Path, identity: str, checks: list[Check]) -> tuple[str, list[str]]:
    """Run each check as the ServiceAccount itself (its token); the table and the unexpected answers."""
    rows, wrong = [], []
    for check in checks:
        completed = subprocess.run(
            [tools.kubectl(), f"--kubeconfig={sa_kubeconfig}", *check.argv()],
            capture_output=True,
            text=True,
            timeout=30,
        )
        answer = completed.stdout.strip()
        assert answer in ("yes", "no"), completed.stderr
        resource = check.resource + (f"/{check.subresource}" if check.subresource else "")
        where = {"*": "(all namespaces)", "": "(cluster)"}.get(check.where, check.where)
        ok = (answer == "yes") == check.expected
        rows.append(
            (check.verb, resource, where, "yes" if check.expected else "no", answer, "" if ok else "WRONG")
        )
        if not ok:
            wrong.append(" ".join(check.argv()))
    widths = [max(len(str(r[i])) for r in [*rows, _HEADER]) for i in range(len(_HEADER))]
    lines = [f"kubectl auth can-i as {identity}"]
    for row in [_HEADER, *rows]:
        lines.append(
            "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return "\n".join(lines), wrong


_HEADER = ("VERB", "RESOURCE", "WHERE", "EXPECTED", "ANSWER", "")


def _print(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n{text}\n")


def _service_account_kubeconfig(
    kubectl: Kubectl, control_plane: ControlPlane, namespace: str, name: str, path: Path
) -> Path:
    """A kubeconfig with nothing but a token of the ServiceAccount, as its pod would get."""
    token = kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
    assert token.count(".") == 2, "a JWT from the TokenRequest API"
    return token_kubeconfig(
        path, server=control_plane.server, ca_file=control_plane.ca_file, token=token, namespace=namespace
    )


def _install(helm: Helm, release: str, namespace: str, values: dict[str, Any]) -> str:
    result = helm(
        "install", release, str(CHART), "--namespace", namespace, "--values", str(helm.values_file(values))
    )
    assert "STATUS: deployed" in result.stdout, result.stdout
    return result.stdout


def _assert_pod_meets_restricted(kubectl: Kubectl, namespace: str, deployment: str) -> None:
    """Pods never run here (no kubelet), but admission of the Deployment's pod proves it passes the
    restricted level; the same pod without runAsNonRoot is refused, so the admission is really on."""
    spec = json.loads(kubectl("get", "deployment", deployment, "-n", namespace, "-o", "json").stdout)
    template = spec["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{deployment}-check",
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
    }
    kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))
    del pod["spec"]["securityContext"]["runAsNonRoot"]
    del pod["spec"]["containers"][0]["securityContext"]["runAsNonRoot"]
    pod["spec"]["securityContext"]["runAsUser"] = 0
    refused = kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod), check=False)
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr, refused.stderr


def _wait_ready(kubectl: Kubectl, namespace: str, name: str) -> None:
    kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"desktopimage/{name}", "--timeout=60s", timeout=90
    )


def _wait_event(kubectl: Kubectl, namespace: str, name: str, reason: str) -> None:
    def posted() -> bool:
        events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
        return any(e["involvedObject"]["name"] == name and e["reason"] == reason for e in events)

    wait_until(posted, timeout=30, what=f"event {reason} on {namespace}/{name}")


def _wait_secret_held(kubectl: Kubectl, namespace: str, name: str, *, held: bool) -> None:
    def as_expected() -> bool:
        secret = json.loads(kubectl("get", "secret", name, "-n", namespace, "-o", "json").stdout)
        return (CREDENTIALS_FINALIZER in secret["metadata"].get("finalizers", [])) == held

    state = "held" if held else "released"
    wait_until(as_expected, timeout=30, what=f"Secret {namespace}/{name} {state} by the operator")


# Not about permissions: a cluster-wide operator may meet objects left by other tests in namespaces
# being deleted, where the API server forbids new events.
NOT_PERMISSION_TROUBLE = "because it is being terminated"


def _assert_no_permission_trouble(operator: OperatorProcess) -> None:
    log = operator.logs()
    trouble = [
        line
        for line in log.splitlines()
        if any(marker in line for marker in PERMISSION_TROUBLE) and NOT_PERMISSION_TROUBLE not in line
    ]
    assert not trouble, "\n".join(trouble)


def test_cluster_wide_install_is_enough_for_the_operator_and_no_more(
    cluster_helm: Helm,
    kubectl: Kubectl,
    crd: None,
    cloud: FakeCloudProcess,
    control_plane: ControlPlane,
    make_namespace: MakeNamespace,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    release_namespace = make_namespace("operators", RESTRICTED)
    images_namespace = make_namespace("images")
    release = "dio-cluster"
    notes = _install(cluster_helm, release, release_namespace, {})
    assert "It serves DesktopImages in every namespace." in notes
    try:
        service_account = f"{release}-desktop-image-operator"
        _assert_pod_meets_restricted(kubectl, release_namespace, service_account)

        sa_kubeconfig = _service_account_kubeconfig(
            kubectl, control_plane, release_namespace, service_account, tmp_path / "sa.kubeconfig"
        )
        # Cluster-wide, as the chart's defaults run it; default credentials: the fake cloud's key file.
        operator = OperatorProcess(
            tmp_path,
            sa_kubeconfig,
            cloud,
            namespace=images_namespace,
            extra_env={"DESKTOP_IMAGE_OPERATOR_NAMESPACE": None, **_elected(release_namespace)},
        )
        try:
            kubectl(
                "apply",
                "-n",
                images_namespace,
                "-f",
                "-",
                stdin=manifests.text(manifests.desktop_image("wide")),
            )
            _wait_ready(kubectl, images_namespace, "wide")
            _wait_event(kubectl, images_namespace, "wide", "ImageReady")
            kubectl("delete", "-n", images_namespace, "desktopimage/wide", "--timeout=60s", timeout=90)
            assert cloud.images() == []
        finally:
            operator.stop()
        _assert_no_permission_trouble(operator)

        identity = f"system:serviceaccount:{release_namespace}:{service_account}"
        n = images_namespace
        checks = [
            Check("list", "desktopimages", "*", True),
            Check("watch", "desktopimages", "*", True),
            Check("get", "desktopimages", n, True),
            Check("patch", "desktopimages", n, True),
            Check("patch", "desktopimages", n, True, "status"),
            Check("update", "desktopimages", n, False, "status"),
            Check("create", "desktopimages", n, False),
            Check("update", "desktopimages", n, False),
            Check("delete", "desktopimages", n, False),
            Check("deletecollection", "desktopimages", n, False),
            Check("create", "events", n, True),
            Check("patch", "events", n, False),
            Check("delete", "events", n, False),
            Check("get", "secrets", n, True),
            Check("patch", "secrets", n, True),
            Check("update", "secrets", n, False),
            Check("delete", "secrets", n, False),
            # A watch of each Secret in use, by field selector: cluster-wide, like get.
            Check("list", "secrets", n, True),
            Check("watch", "secrets", "*", True),
            Check("create", "secrets", n, False),
            Check("list", "customresourcedefinitions", "", True),
            Check("watch", "customresourcedefinitions", "", True),
            Check("get", "customresourcedefinitions", "", False),
            Check("update", "customresourcedefinitions", "", False),
            Check("delete", "customresourcedefinitions", "", False),
            Check("list", "namespaces", "", False),
            # The cluster's identity: kube-system's UID, and no other namespace.
            Check("get", "namespaces/kube-system", "", True),
            Check("get", "namespaces/default", "", False),
            Check("update", "namespaces/kube-system", "", False),
            Check("get", "configmaps", n, False),
            Check("create", "pods", n, False),
            Check("list", "pods", "*", False),
            Check("create", "deployments", release_namespace, False),
            Check("create", "serviceaccounts", n, False, "token"),
            Check("create", "clusterrolebindings", "", False),
            Check("escalate", "clusterroles", "", False),
            Check("impersonate", "serviceaccounts", n, False),
            Check("create", "clusterkopfpeerings.kopf.dev", "", False),
            *_lease_checks(release_namespace, n),
        ]
        table, wrong = _can_i_table(sa_kubeconfig, identity, checks)
        _print(capsys, f"cluster-wide (watchNamespaces: [])\n{table}")
        assert not wrong, f"unexpected answers:\n{table}"

        upgraded = cluster_helm(
            "upgrade", release, str(CHART), "--namespace", release_namespace, "--set", "logs.level=DEBUG"
        )
        assert "STATUS: deployed" in upgraded.stdout
    finally:
        cluster_helm("uninstall", release, "--namespace", release_namespace, "--wait")
    assert kubectl("get", "clusterrole", f"{release}-desktop-image-operator", check=False).returncode != 0
    kubectl("get", "crd", "desktopimages.clouddesktop.yc.io")  # Helm never deletes crds/ CRDs


def test_namespaced_install_is_enough_for_the_operator_and_no_more(
    cluster_helm: Helm,
    kubectl: Kubectl,
    crd: None,
    cloud: FakeCloudProcess,
    control_plane: ControlPlane,
    make_namespace: MakeNamespace,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    release_namespace = make_namespace("operators", RESTRICTED)
    team_a, team_b = make_namespace("team-a"), make_namespace("team-b")
    outside = make_namespace("outside")
    release = "dio-teams"
    notes = _install(
        cluster_helm,
        release,
        release_namespace,
        {"watchNamespaces": [team_a, team_b], "credentials": {"existingSecret": "yc-default-key"}},
    )
    assert f"It serves DesktopImages in the namespaces {team_a}, {team_b}." in notes
    try:
        service_account = f"{release}-desktop-image-operator"
        sa_kubeconfig = _service_account_kubeconfig(
            kubectl, control_plane, release_namespace, service_account, tmp_path / "sa.kubeconfig"
        )
        # No default credentials: the image in team-b reaches the cloud only through its own Secret,
        # which the operator must be allowed to read.
        kubectl(
            "create", "secret", "generic", "yc-sa-key", "-n", team_b, f"--from-file={KEY}={cloud.key_file}"
        )
        operator = OperatorProcess(
            tmp_path,
            sa_kubeconfig,
            cloud,
            namespace=f"{team_a},{team_b}",
            extra_env={"DESKTOP_IMAGE_OPERATOR_CREDENTIALS_FILE": None, **_elected(release_namespace)},
        )
        try:
            image = manifests.desktop_image("scoped", credentialsRef={"name": "yc-sa-key", "key": KEY})
            kubectl("apply", "-n", team_b, "-f", "-", stdin=manifests.text(image))
            _wait_ready(kubectl, team_b, "scoped")
            _wait_event(kubectl, team_b, "scoped", "ImageReady")
            # The Secret in use is kept from deletion: the Role lets the operator patch its finalizers.
            _wait_secret_held(kubectl, team_b, "yc-sa-key", held=True)
            # An object outside the watched namespaces is not served.
            kubectl(
                "apply", "-n", outside, "-f", "-", stdin=manifests.text(manifests.desktop_image("ignored"))
            )
            kubectl("delete", "-n", team_b, "desktopimage/scoped", "--timeout=60s", timeout=90)
            _wait_secret_held(kubectl, team_b, "yc-sa-key", held=False)
            ignored = json.loads(kubectl("get", "-n", outside, "desktopimage/ignored", "-o", "json").stdout)
            assert "status" not in ignored
            assert not ignored["metadata"].get("finalizers")
        finally:
            operator.stop()
            kubectl("delete", "-n", outside, "desktopimage/ignored", "--ignore-not-found", "--wait=false")
        _assert_no_permission_trouble(operator)

        identity = f"system:serviceaccount:{release_namespace}:{service_account}"
        checks = [
            Check("list", "desktopimages", team_a, True),
            Check("watch", "desktopimages", team_b, True),
            Check("patch", "desktopimages", team_a, True),
            Check("patch", "desktopimages", team_b, True, "status"),
            Check("create", "events", team_b, True),
            Check("list", "desktopimages", team_b, True),
            Check("get", "secrets", team_b, True),
            Check("patch", "secrets", team_a, True),
            Check("patch", "secrets", team_b, True),
            Check("update", "secrets", team_b, False),
            Check("delete", "secrets", team_b, False),
            Check("list", "secrets", team_b, True),
            Check("watch", "secrets", team_a, True),
            Check("delete", "desktopimages", team_a, False),
            Check("list", "desktopimages", "*", False),
            Check("list", "desktopimages", outside, False),
            *_lease_checks(release_namespace, team_a),
            Check("patch", "desktopimages", outside, False, "status"),
            Check("create", "events", outside, False),
            Check("get", "secrets", outside, False),
            Check("patch", "secrets", outside, False),
            Check("watch", "secrets", outside, False),
            Check("get", "secrets", release_namespace, False),
            Check("list", "secrets", release_namespace, False),
            Check("patch", "secrets", release_namespace, False),
            Check("get", "secrets", "kube-system", False),
            Check("patch", "secrets", "*", False),
            Check("list", "secrets", "*", False),
            Check("watch", "secrets", "*", False),
            Check("list", "namespaces", "", True),
            Check("get", "namespaces/kube-system", "", True),
            Check("get", "namespaces/default", "", False),
            Check("watch", "namespaces", "", True),
            Check("get", "namespaces", "", False),
            Check("list", "customresourcedefinitions", "", True),
            Check("update", "customresourcedefinitions", "", False),
            Check("create", "pods", team_a, False),
            Check("create", "serviceaccounts", team_a, False, "token"),
        ]
        table, wrong = _can_i_table(sa_kubeconfig, identity, checks)
        _print(capsys, f"namespaced (watchNamespaces: [{team_a}, {team_b}])\n{table}")
        assert not wrong, f"unexpected answers:\n{table}"
    finally:
        cluster_helm("uninstall", release, "--namespace", release_namespace, "--wait")


def test_templated_crd_takes_over_the_existing_crd_in_a_dry_run_install(
    cluster_helm: Helm, crd: None, make_namespace: MakeNamespace
) -> None:
    """Switching to crds.templated where the CRD already exists (from crds/ or kubectl): Helm must be
    told to skip crds/ and to take the CRD over. `--dry-run=server` renders against the live API, writing
    nothing."""
    namespace = make_namespace("operators", RESTRICTED)
    args = ["install", "dio-dry", str(CHART), "--namespace", namespace, "--set", "crds.templated=true"]
    refused = cluster_helm(*args, "--dry-run=server", "--skip-crds", check=False)
    assert refused.returncode != 0
    assert "cannot be imported into the current release" in refused.stderr
    result = cluster_helm(*args, "--dry-run=server", "--skip-crds", "--take-ownership")
    manifest = result.stdout.split("MANIFEST:", 1)[1].split("NOTES:", 1)[0]
    kinds = sorted(doc["kind"] for doc in documents(manifest))
    assert "CustomResourceDefinition" in kinds
    assert "Deployment" in kinds
    assert "`helm upgrade` updates it" in result.stdout
