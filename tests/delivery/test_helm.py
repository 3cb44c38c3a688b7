"""The Helm chart on the local control plane: the API server accepts what it renders, it installs, and the
RBAC it grants is enough for the operator (run outside the cluster with the chart's ServiceAccount token)
and no more (a `kubectl auth can-i` table, printed). The operator reads its grants from the chart's
ConfigMap, as in a cluster: a fresh install grants nothing, and the README's set-ups grant what they say."""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.annotations import CREDENTIALS_FINALIZER
from desktop_image_operator_dev.devenv import tools
from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from desktop_image_operator_dev.fakecloud import seeds
from desktop_image_operator_dev.helm import CHART, Helm, documents
from tests.delivery.support import for_namespace, readme_set_up, token_kubeconfig
from tests.support import manifests
from tests.support.kube import Kubectl, MakeNamespace, condition, create_key_secret, wait_reason
from tests.support.processes import FakeCloudProcess, OperatorProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow, pytest.mark.timeout(900)]

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}
KEY = "key.json"
OTHER_FOLDER = "b1gotherteamfolder00"
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
        "operations",
        "tenancy",
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
            "grants": [
                {
                    "name": "watched",
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": watched[0]}},
                    "credentials": {"secretName": "yc-lent-key"},
                    "folderIds": [seeds.FOLDER_ID],
                }
            ],
        },
        # The parts of the operations kit a cluster without prometheus-operator accepts; another user still
        # meets the restricted level.
        "operations": {
            "networkPolicy": {
                "enabled": True,
                "egress": {"dns": {"to": [{"namespaceSelector": {}}]}},
                "ingress": {"metricsFrom": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}]},
            },
            "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Operators"}},
            "extraVolumes": [{"name": "egress-ca", "configMap": {"name": "egress-proxy-ca"}}],
            "extraVolumeMounts": [
                {"name": "egress-ca", "mountPath": "/etc/ssl/egress-proxy", "readOnly": True}
            ],
            "extraArgs": ["--max-attempts=3"],
            "podSecurityContext": {"runAsUser": 1001, "fsGroup": None},
            "securityContext": {"runAsUser": 1001},
        },
        # Cluster-wide, with the Secret admission policy: grants of the operator's credentials, of a lent
        # Secret, and of folders alone.
        "tenancy": {
            "credentials": {"existingSecret": "yc-sa-key"},
            "grants": [
                *readme_set_up("a folder per team")["grants"],
                {
                    "name": "team-d-own-account",
                    "namespaceSelector": {
                        "matchExpressions": [{"key": "team", "operator": "In", "values": ["d"]}]
                    },
                    "credentials": {"secretName": "team-d-yc-key"},
                },
                *readme_set_up("teams bringing their own keys")["grants"],
            ],
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


def _as_the_chart_runs_it(kubectl: Kubectl, release_namespace: str, deployment: str) -> dict[str, str | None]:
    """Run the operator as the chart's Deployment does: electing a leader on a Lease in the release namespace,
    and reading its grants from the ConfigMap the Deployment names there, not the local stack's grants file.
    The grants are read again every second, so that a test need not wait for a change to take effect."""
    spec = json.loads(kubectl("get", "deployment", deployment, "-n", release_namespace, "-o", "json").stdout)
    (container,) = spec["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    return {
        "DESKTOP_IMAGE_OPERATOR_LEADER_ELECT": "true",
        "DESKTOP_IMAGE_OPERATOR_LEASE_NAMESPACE": release_namespace,
        "DESKTOP_IMAGE_OPERATOR_GRANTS_CONFIG_MAP": env["DESKTOP_IMAGE_OPERATOR_GRANTS_CONFIG_MAP"],
        "DESKTOP_IMAGE_OPERATOR_GRANTS_FILE": None,
        "DESKTOP_IMAGE_OPERATOR_GRANTS_REFRESH_SECONDS": "1",
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


def _grants_config_map(release: str) -> str:
    return f"{release}-desktop-image-operator-grants"


def _policy(release: str) -> str:
    return f"{release}-desktop-image-operator-secret-finalizer-only"


def _assert_secret_data_patch_refused_by_the_policy(
    sa_kubeconfig: Path, namespace: str, secret: str, policy: str
) -> None:
    """The operator's own token may not rewrite a Secret, though RBAC lets it patch every one: the admission
    policy refuses (server dry runs pass through admission and change nothing)."""
    patch = json.dumps({"data": {KEY: "e30="}})

    def refused() -> subprocess.CompletedProcess[str] | None:
        argv = ["patch", "secret", secret, "-n", namespace, "-p", patch, "--dry-run=server"]
        completed = subprocess.run(
            [tools.kubectl(), f"--kubeconfig={sa_kubeconfig}", *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return completed if completed.returncode != 0 else None

    completed = wait_until(refused, timeout=30, what=f"the operator's Secret patches checked by {policy}")
    assert f"ValidatingAdmissionPolicy '{policy}'" in completed.stderr, completed.stderr


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
    images_namespace, elsewhere = make_namespace("images"), make_namespace("elsewhere")
    release = "dio-cluster"
    # The README's first set-up: one team's namespace may use the operator's credentials.
    values = readme_set_up("one team")
    (grant,) = values["grants"]
    notes = _install(
        cluster_helm,
        release,
        release_namespace,
        {**values, "grants": [for_namespace(grant, images_namespace)]},
    )
    assert "It serves DesktopImages in every namespace." in notes
    assert f"{grant['name']}: namespaces matching" in notes
    try:
        service_account = f"{release}-desktop-image-operator"
        _assert_pod_meets_restricted(kubectl, release_namespace, service_account)

        sa_kubeconfig = _service_account_kubeconfig(
            kubectl, control_plane, release_namespace, service_account, tmp_path / "sa.kubeconfig"
        )
        kubectl(
            "create",
            "secret",
            "generic",
            "yc-own-key",
            "-n",
            images_namespace,
            f"--from-file={KEY}={cloud.key_file}",
        )
        # Cluster-wide, as the chart's defaults run it; default credentials: the fake cloud's key file.
        operator = OperatorProcess(
            tmp_path,
            sa_kubeconfig,
            cloud,
            namespace=images_namespace,
            extra_env={
                "DESKTOP_IMAGE_OPERATOR_NAMESPACE": None,
                **_as_the_chart_runs_it(kubectl, release_namespace, service_account),
            },
        )
        try:
            own_key = manifests.desktop_image("own-key", credentialsRef={"name": "yc-own-key", "key": KEY})
            kubectl(
                "apply",
                "-n",
                images_namespace,
                "-f",
                "-",
                stdin=manifests.text(manifests.desktop_image("wide"), own_key),
            )
            kubectl(
                "apply", "-n", elsewhere, "-f", "-", stdin=manifests.text(manifests.desktop_image("refused"))
            )
            _wait_ready(kubectl, images_namespace, "wide")
            _wait_event(kubectl, images_namespace, "wide", "ImageReady")
            # A namespace the grant does not select is refused the operator's credentials.
            wait_reason(kubectl, elsewhere, "refused", r.NOT_GRANTED, timeout=30)
            # The admission policy lets the operator's finalizer come and go on a Secret in use.
            _wait_ready(kubectl, images_namespace, "own-key")
            _wait_secret_held(kubectl, images_namespace, "yc-own-key", held=True)
            kubectl(
                "delete",
                "-n",
                images_namespace,
                "desktopimage/wide",
                "desktopimage/own-key",
                "--timeout=60s",
                timeout=90,
            )
            _wait_secret_held(kubectl, images_namespace, "yc-own-key", held=False)
            kubectl("delete", "-n", elsewhere, "desktopimage/refused", "--timeout=60s", timeout=90)
            assert cloud.images() == []
        finally:
            operator.stop()
        _assert_no_permission_trouble(operator)
        _assert_secret_data_patch_refused_by_the_policy(
            sa_kubeconfig, images_namespace, "yc-own-key", _policy(release)
        )

        identity = f"system:serviceaccount:{release_namespace}:{service_account}"
        n = images_namespace
        grants = f"configmaps/{_grants_config_map(release)}"
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
            # Allowed by RBAC; what a patch may change, the admission policy decides.
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
            # Any namespace by name, for the labels the grants select by (and kube-system's UID); no listing.
            Check("get", "namespaces/kube-system", "", True),
            Check("get", "namespaces/default", "", True),
            Check("list", "namespaces", "", False),
            Check("watch", "namespaces", "", False),
            Check("update", "namespaces/kube-system", "", False),
            Check("patch", "namespaces/default", "", False),
            # The grants: read, never written; no other ConfigMap.
            Check("get", grants, release_namespace, True),
            Check("update", grants, release_namespace, False),
            Check("patch", grants, release_namespace, False),
            Check("get", "configmaps", release_namespace, False),
            Check("list", "configmaps", release_namespace, False),
            Check("get", "configmaps", n, False),
            # Nor may it take the admission policy away.
            Check("delete", f"validatingadmissionpolicies/{_policy(release)}", "", False),
            Check("delete", f"validatingadmissionpolicybindings/{_policy(release)}", "", False),
            Check("create", "validatingadmissionpolicybindings", "", False),
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
    policy = kubectl("get", "validatingadmissionpolicy", _policy(release), check=False)
    assert policy.returncode != 0
    kubectl("get", "crd", "desktopimages.clouddesktop.yc.io")  # Helm never deletes crds/ CRDs


def test_a_fresh_install_grants_nothing_until_the_notes_line_grants_what_was_granted_before(
    cluster_helm: Helm,
    kubectl: Kubectl,
    crd: None,
    cloud: FakeCloudProcess,
    control_plane: ControlPlane,
    make_namespace: MakeNamespace,
    tmp_path: Path,
) -> None:
    release_namespace = make_namespace("operators", RESTRICTED)
    images_namespace = make_namespace("images")
    release = "dio-fresh"
    notes = _install(cluster_helm, release, release_namespace, {})
    assert "none: no namespace may use the operator's credentials" in notes
    # Watching the test's namespace alone, so that objects other tests left elsewhere make no call; kopf
    # then lists and watches namespaces, which a cluster-wide operator never does: the test grants that.
    namespaces_reader = f"{release_namespace}-list-namespaces"
    try:
        service_account = f"{release}-desktop-image-operator"
        sa_kubeconfig = _service_account_kubeconfig(
            kubectl, control_plane, release_namespace, service_account, tmp_path / "sa.kubeconfig"
        )
        kubectl("create", "clusterrole", namespaces_reader, "--verb=list,watch", "--resource=namespaces")
        kubectl(
            "create",
            "clusterrolebinding",
            namespaces_reader,
            f"--clusterrole={namespaces_reader}",
            f"--serviceaccount={release_namespace}:{service_account}",
        )
        operator = OperatorProcess(
            tmp_path,
            sa_kubeconfig,
            cloud,
            namespace=images_namespace,
            extra_env=_as_the_chart_runs_it(kubectl, release_namespace, service_account),
        )
        try:
            kubectl(
                "apply",
                "-n",
                images_namespace,
                "-f",
                "-",
                stdin=manifests.text(manifests.desktop_image("golden")),
            )
            refused = wait_reason(kubectl, images_namespace, "golden", r.NOT_GRANTED, timeout=30)
            assert f"Namespace {images_namespace} has no grant" in condition(refused, "Ready")["message"]
            _wait_event(kubectl, images_namespace, "golden", r.NOT_GRANTED)
            assert 'desktop_image_operator_objects{reason="NotGranted"} 1.0' in operator.metrics()
            assert cloud.requests() == [], (
                "the operator's credentials were used for nothing, not even a token"
            )

            # The line the NOTES give an upgrade, as a user runs it.
            (line,) = (line for line in notes.splitlines() if "--set-json" in line)
            argv = shlex.split(line.replace("<chart>", str(CHART)))
            assert argv[:3] == ["helm", "upgrade", release]
            upgraded = cluster_helm(*argv[1:])
            assert "everyone: every namespace; the operator's own credentials; any folder." in upgraded.stdout
            _wait_ready(kubectl, images_namespace, "golden")
            kubectl("delete", "-n", images_namespace, "desktopimage/golden", "--timeout=60s", timeout=90)
        finally:
            operator.stop()
        _assert_no_permission_trouble(operator)
    finally:
        kubectl("delete", "clusterrolebinding,clusterrole", namespaces_reader, "--ignore-not-found")
        cluster_helm("uninstall", release, "--namespace", release_namespace, "--wait")


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
    # The README's folder per team, with team A lent a service account of its own (its key kept in the
    # release namespace), and the README's own keys for team B: a grant of its folder alone.
    (team_a_grant, _) = readme_set_up("a folder per team")["grants"]
    (team_b_grant,) = readme_set_up("teams bringing their own keys")["grants"]
    lent = "yc-team-a-key"
    grants = [
        {
            **for_namespace(team_a_grant, team_a),
            "credentials": {"secretName": lent},
            "folderIds": [seeds.FOLDER_ID],
        },
        {**for_namespace(team_b_grant, team_b), "folderIds": [seeds.FOLDER_ID]},
    ]
    notes = _install(
        cluster_helm,
        release,
        release_namespace,
        {
            "watchNamespaces": [team_a, team_b],
            "credentials": {"existingSecret": "yc-default-key"},
            "grants": grants,
        },
    )
    assert f"It serves DesktopImages in the namespaces {team_a}, {team_b}." in notes
    try:
        service_account = f"{release}-desktop-image-operator"
        sa_kubeconfig = _service_account_kubeconfig(
            kubectl, control_plane, release_namespace, service_account, tmp_path / "sa.kubeconfig"
        )
        # No default credentials: the image in team-b reaches the cloud only through its own Secret,
        # which the operator must be allowed to read; team-a's through the Secret its grant lends.
        kubectl(
            "create", "secret", "generic", "yc-sa-key", "-n", team_b, f"--from-file={KEY}={cloud.key_file}"
        )
        team_a_account = cloud.http.post("/service-accounts", json={"name": "team-a"}).json()
        create_key_secret(kubectl, release_namespace, lent, team_a_account, tmp_path)
        operator = OperatorProcess(
            tmp_path,
            sa_kubeconfig,
            cloud,
            namespace=f"{team_a},{team_b}",
            extra_env={
                "DESKTOP_IMAGE_OPERATOR_CREDENTIALS_FILE": None,
                **_as_the_chart_runs_it(kubectl, release_namespace, service_account),
            },
        )
        try:
            kubectl("apply", "-n", team_a, "-f", "-", stdin=manifests.text(manifests.desktop_image("lent")))
            image = manifests.desktop_image("scoped", credentialsRef={"name": "yc-sa-key", "key": KEY})
            elsewhere = manifests.desktop_image(
                "elsewhere",
                folderId=OTHER_FOLDER,
                source={"computeImageId": seeds.COMPUTE_IMAGE_ID},
                credentialsRef={"name": "yc-sa-key", "key": KEY},
            )
            kubectl("apply", "-n", team_b, "-f", "-", stdin=manifests.text(image, elsewhere))
            _wait_ready(kubectl, team_b, "scoped")
            _wait_event(kubectl, team_b, "scoped", "ImageReady")
            # The Secret in use is kept from deletion: the Role lets the operator patch its finalizers.
            _wait_secret_held(kubectl, team_b, "yc-sa-key", held=True)
            # Team B's own key stays within the folder its grant lists.
            wait_reason(kubectl, team_b, "elsewhere", r.FOLDER_NOT_GRANTED, timeout=30)
            # Team A's image is copied with the key its grant lends, read (and watched) by name alone.
            _wait_ready(kubectl, team_a, "lent")
            principals = {
                entry["principal"] for entry in cloud.requests("DesktopImageService.CopyFromDesktop")
            }
            assert team_a_account["service_account_id"] in principals
            # An object outside the watched namespaces is not served.
            kubectl(
                "apply", "-n", outside, "-f", "-", stdin=manifests.text(manifests.desktop_image("ignored"))
            )
            kubectl(
                "delete",
                "-n",
                team_b,
                "desktopimage/scoped",
                "desktopimage/elsewhere",
                "--timeout=60s",
                timeout=90,
            )
            kubectl("delete", "-n", team_a, "desktopimage/lent", "--timeout=60s", timeout=90)
            _wait_secret_held(kubectl, team_b, "yc-sa-key", held=False)
            ignored = json.loads(kubectl("get", "-n", outside, "desktopimage/ignored", "-o", "json").stdout)
            assert "status" not in ignored
            assert not ignored["metadata"].get("finalizers")
        finally:
            operator.stop()
            kubectl("delete", "-n", outside, "desktopimage/ignored", "--ignore-not-found", "--wait=false")
        _assert_no_permission_trouble(operator)

        identity = f"system:serviceaccount:{release_namespace}:{service_account}"
        grants_config_map = f"configmaps/{_grants_config_map(release)}"
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
            # In the release namespace the lent Secret and no other: read and watched, never patched.
            Check("get", f"secrets/{lent}", release_namespace, True),
            Check("list", f"secrets/{lent}", release_namespace, True),
            Check("watch", f"secrets/{lent}", release_namespace, True),
            Check("patch", f"secrets/{lent}", release_namespace, False),
            Check("get", "secrets/yc-default-key", release_namespace, False),
            Check("get", "secrets", release_namespace, False),
            Check("list", "secrets", release_namespace, False),
            Check("patch", "secrets", release_namespace, False),
            Check("get", "secrets", "kube-system", False),
            Check("patch", "secrets", "*", False),
            Check("list", "secrets", "*", False),
            Check("watch", "secrets", "*", False),
            # The grants ConfigMap, read only.
            Check("get", grants_config_map, release_namespace, True),
            Check("update", grants_config_map, release_namespace, False),
            Check("get", "configmaps", release_namespace, False),
            Check("get", "configmaps", team_a, False),
            Check("list", "namespaces", "", True),
            Check("get", "namespaces/kube-system", "", True),
            Check("get", "namespaces/default", "", False),
            Check("watch", "namespaces", "", True),
            Check("get", "namespaces", "", False),
            # Each watched namespace, for its labels: a read of namespace N is a request in namespace N.
            Check("get", f"namespaces/{team_a}", team_a, True),
            Check("get", f"namespaces/{team_b}", team_b, True),
            Check("get", f"namespaces/{team_b}", team_a, False),
            Check("get", f"namespaces/{outside}", outside, False),
            Check("update", f"namespaces/{team_a}", team_a, False),
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
