"""The Helm chart without a cluster: lint, the CRD copies, the values schema, and what each value renders."""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

import pytest
import yaml

from desktop_image_operator.api.grants import GRANTS_KEY, GrantedCredentials, Grants
from desktop_image_operator.api.spec import DesktopImageSpec
from desktop_image_operator.commands.run import add_arguments, settings_values
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.access import Access
from desktop_image_operator.reconciler.annotations import CREDENTIALS_FINALIZER
from desktop_image_operator_dev import chart_readme
from desktop_image_operator_dev.helm import CHART, CHART_CRD_FILE, CRD_FILE, REPO, Helm
from tests.delivery.support import (
    TENANCY_SET_UPS,
    container_env,
    find,
    only,
    readme_set_up,
    readme_tenancy,
)

pytestmark = pytest.mark.timeout(900)  # the first test may build Helm

ENV = "DESKTOP_IMAGE_OPERATOR_"
KEY_JSON = json.dumps({"id": "key-id", "service_account_id": "sa-id", "private_key": "not a key"})

# Values exercising every optional part of the chart.
EVERYTHING: dict[str, Any] = {
    "watchNamespaces": ["team-a", "team-b"],
    "serviceAccount": {
        "annotations": {"yandex.cloud/federated-yc-service-account-id": "aje0000000000000000"}
    },
    "credentials": {"metadata": True},
    "cloud": {
        "transport": "grpc",
        "endpoints": {
            "desktop": "https://desktop.example.test",
            "operation": "https://operation.example.test",
            "iam": "https://iam.example.test",
            "metadata": "http://169.254.169.254",
            "desktopGrpc": "desktop.example.test:443",
            "operationGrpc": "operation.example.test:443",
        },
        "maxConcurrency": 4,
        "requestsPerSecond": 2.5,
        "maxAttempts": 7,
    },
    "reconcile": {
        "resyncSeconds": 900,
        "retryBaseSeconds": 2,
        "terminalRetrySeconds": 120,
        "operationPollSeconds": 0.5,
        "minResyncSeconds": 45,
        "defaultDeletionPolicy": "Retain",
        "defaultManagementPolicy": "Observe",
    },
    "logs": {"format": "plain", "level": "DEBUG"},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "podDisruptionBudget": {"enabled": True},
    "crds": {"templated": True},
    "leaderElection": {
        "leaseName": "dio-lock",
        "leaseDurationSeconds": 30,
        "renewDeadlineSeconds": 20,
        "retryPeriodSeconds": 4,
    },
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "grafanaDashboard": {"enabled": True},
    "networkPolicy": {"enabled": True},
    "extraArgs": ["--kube-workers=4"],
    "extraVolumes": [{"name": "egress-ca", "configMap": {"name": "egress-proxy-ca"}}],
    "extraVolumeMounts": [{"name": "egress-ca", "mountPath": "/etc/ssl/egress-proxy", "readOnly": True}],
    "grants": [
        {
            "name": "team-a",
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}},
            "credentials": {"operator": True},
            "folderIds": ["b1gteamafolder000000"],
        },
        {
            "name": "team-b",
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["b"]}]},
            "credentials": {"secretName": "team-b-yc-key", "key": "sa.json"},
        },
    ],
}
GRANTS_CONFIG_MAP = "dio-desktop-image-operator-grants"
GRANTS_ROLE = "dio-desktop-image-operator-grants"  # in the release namespace: the grants and lent Secrets


def test_chart_lints_strictly(helm: Helm) -> None:
    for values in ({}, EVERYTHING, {"credentials": {"authorizedKey": KEY_JSON}}):
        args = ["--values", str(helm.values_file(values))] if values else []
        result = helm("lint", "--strict", str(CHART), *args)
        assert "0 chart(s) failed" in result.stdout, result.stdout


def test_chart_crd_is_the_generated_one() -> None:
    copy, generated = CHART_CRD_FILE.relative_to(REPO), CRD_FILE.relative_to(REPO)
    assert CHART_CRD_FILE.read_bytes() == CRD_FILE.read_bytes(), (
        f"{copy} differs from {generated}: copy it again with `cp {generated} {copy}`"
    )


def test_templated_crd_is_opt_in_identical_and_kept(helm: Helm) -> None:
    assert not find(helm.render(), "CustomResourceDefinition"), "the CRD is a template only on request"
    crd = only(helm.render({"crds": {"templated": True}}), "CustomResourceDefinition")
    generated = yaml.safe_load(CRD_FILE.read_text())
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["name"] == generated["metadata"]["name"]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"]["labels"]["app.kubernetes.io/name"] == "desktop-image-operator"


def test_default_values_render_thirteen_objects(helm: Helm) -> None:
    objects = helm.render()
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "Role",
        "RoleBinding",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    assert all(obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "dio" for obj in objects)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2}, "additional properties 'replicas' not allowed"),
        ({"image": {"tag": "1", "registry": "x"}}, "additional properties 'registry' not allowed"),
        ({"cloud": {"transport": "soap"}}, "value must be one of 'rest', 'grpc'"),
        ({"cloud": {"endpoints": {"desktop": "desktop.example.test"}}}, "/cloud/endpoints/desktop"),
        ({"cloud": {"maxConcurrency": 0}}, "/cloud/maxConcurrency"),
        ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
        ({"logs": {"level": "TRACE"}}, "/logs/level"),
        ({"credentials": {"key": "a/b"}}, "/credentials/key"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        (
            {"credentials": {"metadata": True, "existingSecret": "key"}},
            "choose at most one of credentials.existingSecret, credentials.metadata",
        ),
        (
            {"podDisruptionBudget": {"enabled": True, "minAvailable": 1}},
            "set exactly one of minAvailable and maxUnavailable",
        ),
        (
            {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
            "metrics.serviceMonitor.enabled needs metrics.service.enabled",
        ),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name must name an existing ServiceAccount"),
        ({"leaderElection": {"enabled": False}}, "replicaCount above 1 needs leaderElection.enabled"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"leaderElection": {"leaseDurationSeconds": 0}}, "/leaderElection/leaseDurationSeconds"),
        (
            {"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}},
            "choose one of metrics.serviceMonitor and metrics.podMonitor",
        ),
        ({"metrics": {"podMonitor": {"interval": "often"}}}, "/metrics/podMonitor/interval"),
        (
            {"prometheusRule": {"alerts": {"cloudErrors": {"ratio": 2}}}},
            "/prometheusRule/alerts/cloudErrors/ratio",
        ),
        ({"prometheusRule": {"alerts": {"down": {"for": "5 minutes"}}}}, "/prometheusRule/alerts/down/for"),
        ({"prometheusRule": {"alerts": {"cloudErrors": {"ignoredCodes": ["NOPE"]}}}}, "ignoredCodes/0"),
        (
            {"prometheusRule": {"alerts": {"noLeader": {"page": True}}}},
            "additional properties 'page' not allowed",
        ),
        ({"prometheusRule": {"selector": '{job="x"}'}}, "/prometheusRule/selector"),
        ({"grafanaDashboard": {"labelValue": "not a value"}}, "/grafanaDashboard/labelValue"),
        (
            {"networkPolicy": {"egress": {"cloud": {"cidrs": ["10.0.0.1"]}}}},
            "/networkPolicy/egress/cloud/cidrs/0",
        ),
        (
            {"networkPolicy": {"egress": {"apiServer": {"ports": []}}}},
            "/networkPolicy/egress/apiServer/ports",
        ),
        ({"extraArgs": [3]}, "/extraArgs/0"),
        ({"extraVolumeMounts": [{"name": "ca"}]}, "missing property 'mountPath'"),
        ({"podSecurityContext": {"runAsUser": "root"}}, "/podSecurityContext/runAsUser"),
        ({"securityContext": {"readOnlyRootFilesystem": "yes"}}, "/securityContext/readOnlyRootFilesystem"),
        ({"grants": {"name": "everyone"}}, "/grants"),
        ({"grants": [{"name": "everyone"}]}, "missing property 'namespaceSelector'"),
        ({"grants": [{"name": "Team_A", "namespaceSelector": {}}]}, "/grants/0/name"),
        ({"grants": [{"name": "a", "namespaceSelector": {"team": "a"}}]}, "additional properties 'team'"),
        (
            {"grants": [{"name": "a", "namespaceSelector": {}, "credential": {"operator": True}}]},
            "additional properties 'credential' not allowed",
        ),
        ({"grants": [{"name": "a", "namespaceSelector": {}, "credentials": {}}]}, "/grants/0/credentials"),
        (
            {"grants": [{"name": "a", "namespaceSelector": {}, "credentials": {"operator": False}}]},
            "/grants/0/credentials/operator",
        ),
        (
            {
                "grants": [
                    {
                        "name": "a",
                        "namespaceSelector": {},
                        "credentials": {"operator": True, "secretName": "k"},
                    }
                ]
            },
            "/grants/0/credentials",
        ),
        (
            {
                "grants": [
                    {"name": "a", "namespaceSelector": {}, "credentials": {"operator": True, "key": "k"}}
                ]
            },
            "'secretName' required, if 'key' exists",
        ),
        (
            {
                "grants": [
                    {
                        "name": "a",
                        "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]},
                    }
                ]
            },
            "missing property 'values'",
        ),
        (
            {
                "grants": [
                    {"name": "a", "namespaceSelector": {"matchExpressions": [{"key": "t", "operator": "Is"}]}}
                ]
            },
            "/grants/0/namespaceSelector/matchExpressions/0/operator",
        ),
        # An empty list would mean any folder to the operator: the chart asks for the key to be left out.
        ({"grants": [{"name": "a", "namespaceSelector": {}, "folderIds": []}]}, "/grants/0/folderIds"),
        (
            {"grants": [{"name": "a", "namespaceSelector": {}, "folderIds": ["B1G 1"]}]},
            "/grants/0/folderIds/0",
        ),
        (
            {"grants": [{"name": "a", "namespaceSelector": {}}, {"name": "a", "namespaceSelector": {}}]},
            'grants: the name "a" appears more than once',
        ),
        ({"rbac": {"secretAdmissionPolicy": "yes"}}, "/rbac/secretAdmissionPolicy"),
        ({"reconcile": {"defaultDeletionPolicy": "Keep"}}, "/reconcile/defaultDeletionPolicy"),
    ],
)
def test_bad_values_are_refused_with_a_pointed_message(
    helm: Helm, values: dict[str, Any], message: str
) -> None:
    result = helm("template", "dio", str(CHART), "--values", str(helm.values_file(values)), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_every_setting_reaches_the_operator_as_it_understands_it(helm: Helm) -> None:
    env = container_env(helm.render(EVERYTHING))
    env[f"{ENV}LEADER_IDENTITY"] = "dio-7d9c-x2"  # the kubelet fills it in from the pod's name
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = RunSettings.model_validate(settings_values(parser.parse_args([]), env))
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.use_metadata_credentials
    assert settings.credentials_file is None
    assert (settings.metrics_port, settings.health_port, settings.bind_address) == (8080, 8081, "0.0.0.0")
    assert (settings.log_format, settings.log_level) == ("plain", "DEBUG")
    assert (settings.resync_seconds, settings.retry_base_seconds) == (900, 2)
    assert settings.terminal_retry_base_seconds == 120
    assert settings.min_resync_seconds == 45
    assert (settings.default_deletion_policy, settings.default_management_policy) == ("Retain", "Observe")
    cloud = settings.cloud
    assert cloud.transport == "grpc"
    assert (cloud.desktop_endpoint, cloud.operation_endpoint) == (
        "https://desktop.example.test",
        "https://operation.example.test",
    )
    assert (cloud.iam_endpoint, cloud.metadata_endpoint) == (
        "https://iam.example.test",
        "http://169.254.169.254",
    )
    assert (cloud.desktop_grpc_target, cloud.operation_grpc_target) == (
        "desktop.example.test:443",
        "operation.example.test:443",
    )
    assert (cloud.max_concurrency, cloud.requests_per_second, cloud.max_attempts) == (4, 2.5, 7)
    assert cloud.operation_poll_initial_seconds == 0.5
    assert settings.leader_elect
    assert (settings.lease_name, settings.lease_namespace) == ("dio-lock", "operators")
    assert settings.leader_identity == "dio-7d9c-x2"
    durations = (
        settings.lease_duration_seconds,
        settings.renew_deadline_seconds,
        settings.retry_period_seconds,
    )
    assert durations == (30, 20, 4)
    assert settings.grants_config_map == GRANTS_CONFIG_MAP
    assert all(name.startswith(ENV) for name in env), "the operator reads only its own variables"


def test_defaults_leave_the_operator_its_own_defaults(helm: Helm) -> None:
    env = container_env(helm.render())
    assert set(env) == {
        f"{ENV}LEADER_ELECT",
        f"{ENV}LEASE_NAMESPACE",
        f"{ENV}LEADER_IDENTITY",
        f"{ENV}TRANSPORT",
        f"{ENV}LOG_FORMAT",
        f"{ENV}LOG_LEVEL",
        f"{ENV}METRICS_PORT",
        f"{ENV}HEALTH_PORT",
        f"{ENV}BIND_ADDRESS",
        f"{ENV}GRANTS_CONFIG_MAP",
    }


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = only(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def _credentials_checksum(objects: list[dict[str, Any]]) -> str:
    annotations = only(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    return str(annotations["checksum/credentials"])


def test_credentials_none_secret_values_existing_secret_or_metadata(helm: Helm) -> None:
    # None: no file, no metadata, no Secret.
    objects = helm.render()
    env = container_env(objects)
    assert f"{ENV}CREDENTIALS_FILE" not in env
    assert f"{ENV}METADATA_CREDENTIALS" not in env
    assert not find(objects, "Secret")

    # From the values: the chart's Secret, mounted read-only, the pod rolled when the key changes.
    objects = helm.render({"credentials": {"authorizedKey": KEY_JSON}})
    secret = only(objects, "Secret")
    assert secret["metadata"]["name"] == "dio-desktop-image-operator-credentials"
    assert set(secret["data"]) == {"key.json"}
    pod = _pod(objects)
    assert container_env(objects)[f"{ENV}CREDENTIALS_FILE"] == (
        "/var/run/secrets/clouddesktop.yc.io/credentials/key.json"
    )
    volume = next(v for v in pod["volumes"] if v["name"] == "credentials")
    assert volume["secret"] == {
        "secretName": "dio-desktop-image-operator-credentials",
        "items": [{"key": "key.json", "path": "key.json"}],
        "defaultMode": 0o440,
    }
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "credentials")
    assert mount["readOnly"] is True
    other = helm.render({"credentials": {"authorizedKey": KEY_JSON.replace("key-id", "other")}})
    assert _credentials_checksum(other) != _credentials_checksum(objects)

    # An existing Secret: mounted under its own key, nothing created.
    objects = helm.render({"credentials": {"existingSecret": "yc-sa-key", "key": "sa.json"}})
    assert not find(objects, "Secret")
    assert container_env(objects)[f"{ENV}CREDENTIALS_FILE"].endswith("/sa.json")
    volume = next(v for v in _pod(objects)["volumes"] if v["name"] == "credentials")
    assert volume["secret"]["secretName"] == "yc-sa-key"

    # The metadata service, e.g. with Workload Identity Federation.
    objects = helm.render(
        {
            "credentials": {"metadata": True},
            "serviceAccount": {"annotations": {"yandex.cloud/federated-yc-service-account-id": "aje1"}},
        }
    )
    assert container_env(objects)[f"{ENV}METADATA_CREDENTIALS"] == "true"
    assert only(objects, "ServiceAccount")["metadata"]["annotations"] == {
        "yandex.cloud/federated-yc-service-account-id": "aje1"
    }
    assert not any(v["name"] == "credentials" for v in _pod(objects)["volumes"])


def test_pod_is_restricted_and_probed(helm: Helm) -> None:
    objects = helm.render()
    pod = _pod(objects)
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == only(objects, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["image"] == "desktop-image-operator:0.1.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 8080, "health": 8081}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]

    digest = "sha256:" + "a" * 64
    pinned = _pod(helm.render({"image": {"repository": "cr.yandex/crp1/dio", "digest": digest}}))
    assert pinned["containers"][0]["image"] == f"cr.yandex/crp1/dio@{digest}"


def test_two_replicas_elect_a_leader_roll_without_a_gap_and_spread_over_nodes(helm: Helm) -> None:
    objects = helm.render()
    deployment = only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    container = _pod(objects)["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    assert env[f"{ENV}LEADER_ELECT"]["value"] == "true"
    assert env[f"{ENV}LEASE_NAMESPACE"]["value"] == "operators"
    assert env[f"{ENV}LEADER_IDENTITY"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    (term,) = _pod(objects)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}


def test_affinity_and_spread_given_in_the_values_replace_the_default(helm: Helm) -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    spread = [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
    ]
    pod = _pod(helm.render({"affinity": affinity, "topologySpreadConstraints": spread}))
    assert pod["affinity"] == affinity
    assert pod["topologySpreadConstraints"] == spread


def test_one_replica_is_replaced_not_rolled_and_has_no_pdb_or_spread(helm: Helm) -> None:
    for election in (True, False):
        objects = helm.render({"replicaCount": 1, "leaderElection": {"enabled": election}})
        deployment = only(objects, "Deployment")
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        assert "affinity" not in _pod(objects)
        assert not find(objects, "PodDisruptionBudget")
        assert container_env(objects)[f"{ENV}LEADER_ELECT"] == str(election).lower()
    single = helm.render({"replicaCount": 1, "leaderElection": {"enabled": False}})
    assert [role["metadata"]["name"] for role in find(single, "Role")] == [GRANTS_ROLE]
    assert f"{ENV}LEADER_IDENTITY" not in container_env(single)
    probe = _pod(single)["containers"][0]["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"  # kopf's own endpoint, without election
    pdb_on = helm.render({"replicaCount": 1, "podDisruptionBudget": {"enabled": True}})
    assert find(pdb_on, "PodDisruptionBudget")


def _rules(role: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """Verbs by (group, resource); a rule limited to some objects counts as "resource/name"."""
    return {
        (group, "/".join([resource, *rule.get("resourceNames", [])])): rule["verbs"]
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


OPERATOR_RULES = {
    ("clouddesktop.yc.io", "desktopimages"): ["get", "list", "watch", "patch"],
    ("clouddesktop.yc.io", "desktopimages/status"): ["patch"],
    ("", "events"): ["create"],
    ("", "secrets"): ["get", "list", "watch", "patch"],
}
CRD_RULE = {("apiextensions.k8s.io", "customresourcedefinitions"): ["list", "watch"]}
LEASE_RULE = {("coordination.k8s.io", "leases"): ["get", "create", "update"]}
IDENTITY_RULE = {("", "namespaces/kube-system"): ["get"]}
# Any namespace by name: its labels for the grants' selectors (kube-system's UID among them).
NAMESPACES_RULE = {("", "namespaces"): ["get"]}
GRANTS_RULE = {("", f"configmaps/{GRANTS_CONFIG_MAP}"): ["get"]}


def _roles_by_name(objects: list[dict[str, Any]]) -> dict[str, dict[tuple[str, str], list[str]]]:
    return {role["metadata"]["name"]: _rules(role) for role in find(objects, "Role")}


def test_rbac_cluster_wide(helm: Helm) -> None:
    objects = helm.render()
    roles = find(objects, "Role")
    assert {role["metadata"]["namespace"] for role in roles} == {"operators"}
    assert _roles_by_name(objects) == {
        "dio-desktop-image-operator-leader-election": LEASE_RULE,
        GRANTS_ROLE: GRANTS_RULE,
    }
    bindings = {b["metadata"]["name"]: b["roleRef"]["name"] for b in find(objects, "RoleBinding")}
    assert bindings == {name: name for name in _roles_by_name(objects)}
    assert _rules(only(objects, "ClusterRole")) == {**CRD_RULE, **NAMESPACES_RULE, **OPERATOR_RULES}
    binding = only(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "dio-desktop-image-operator", "namespace": "operators"}
    ]


def test_rbac_namespaced_reads_no_secret_cluster_wide(helm: Helm) -> None:
    objects = helm.render({"watchNamespaces": ["team-a", "team-b"]})
    assert _rules(only(objects, "ClusterRole")) == {
        **CRD_RULE,
        **IDENTITY_RULE,
        ("", "namespaces"): ["list", "watch"],
    }
    roles = find(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["operators", "operators", "team-a", "team-b"]
    in_release_namespace = {
        role["metadata"]["name"]: _rules(role)
        for role in roles
        if role["metadata"]["namespace"] == "operators"
    }
    assert in_release_namespace == {
        "dio-desktop-image-operator-leader-election": LEASE_RULE,
        GRANTS_ROLE: GRANTS_RULE,
    }
    # Each watched namespace's Role lets the operator read that namespace's labels, and no other's.
    for role in roles:
        namespace = role["metadata"]["namespace"]
        if namespace != "operators":
            assert _rules(role) == {**OPERATOR_RULES, ("", f"namespaces/{namespace}"): ["get"]}
    bindings = find(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == [
        "operators",
        "operators",
        "team-a",
        "team-b",
    ]
    assert all(b["subjects"][0]["namespace"] == "operators" for b in bindings)
    assert not find(objects, "ValidatingAdmissionPolicy"), "namespaced installs patch no Secret cluster-wide"


def test_rbac_without_secret_access(helm: Helm) -> None:
    for values in ({}, {"watchNamespaces": ["team-a"]}):
        objects = helm.render({**values, "rbac": {"credentialsSecrets": False}})
        for role in find(objects, "ClusterRole") + find(objects, "Role"):
            assert ("", "secrets") not in _rules(role)
        assert not find(objects, "ValidatingAdmissionPolicy"), "no Secret patches to check"


def test_optional_objects(helm: Helm) -> None:
    objects = helm.render(EVERYTHING)
    monitor = only(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["selector"]["matchLabels"] == only(objects, "Service")["spec"]["selector"]
    assert only(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert not find(helm.render({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget")
    pdb = only(
        helm.render({"podDisruptionBudget": {"enabled": True, "maxUnavailable": None, "minAvailable": 1}}),
        "PodDisruptionBudget",
    )
    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]
    assert not find(helm.render({"metrics": {"service": {"enabled": False}}}), "Service")


def test_a_given_cluster_id_needs_no_read_of_kube_system(helm: Helm) -> None:
    namespaced = helm.render({"clusterId": "prod-eu", "watchNamespaces": ["team-a"]})
    assert ("", "namespaces/kube-system") not in _rules(only(namespaced, "ClusterRole"))
    # Cluster-wide the operator reads any namespace's labels for the grants anyway.
    objects = helm.render({"clusterId": "prod-eu"})
    assert _rules(only(objects, "ClusterRole"))[("", "namespaces")] == ["get"]
    env = {
        e["name"]: e.get("value")
        for e in only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["DESKTOP_IMAGE_OPERATOR_CLUSTER_ID"] == "prod-eu"


# -- tenancy: the grants and the Secret admission policy ---------------------------------------------------


def _grants(objects: list[dict[str, Any]]) -> Grants:
    """The grants document as the operator parses it from the chart's ConfigMap."""
    (config_map,) = find(objects, "ConfigMap", GRANTS_CONFIG_MAP)
    assert set(config_map["data"]) == {GRANTS_KEY}
    return Grants.model_validate(yaml.safe_load(config_map["data"][GRANTS_KEY]))


def _access(grants: Grants, namespace: str) -> Access:
    return Access.of(namespace, {"kubernetes.io/metadata.name": namespace}, grants)


def test_a_fresh_install_grants_the_operator_s_credentials_to_no_namespace(helm: Helm) -> None:
    objects = helm.render({"credentials": {"existingSecret": "yc-sa-key"}})
    grants = _grants(objects)
    assert grants == Grants()
    assert container_env(objects)[f"{ENV}GRANTS_CONFIG_MAP"] == GRANTS_CONFIG_MAP
    refusal = _access(grants, "team-a").refusal(has_own_credentials=False)
    assert refusal is not None
    assert refusal.reason == r.NOT_GRANTED
    # The operator may read the grants, and no Secret of the release namespace: none is lent.
    assert _roles_by_name(objects)[GRANTS_ROLE] == GRANTS_RULE


def test_grants_reach_the_operator_as_its_grants_document(helm: Helm) -> None:
    objects = helm.render(EVERYTHING)
    grants = _grants(objects)
    assert grants.model_dump(exclude_unset=True) == {"grants": EVERYTHING["grants"]}
    team_a = _access(grants, "team-a")
    assert team_a.borrowed() == GrantedCredentials(operator=True)
    assert team_a.folders == {"b1gteamafolder000000"}
    team_b = Access.of("team-b", {"team": "b"}, grants)
    assert team_b.borrowed() == GrantedCredentials(secret_name="team-b-yc-key", key="sa.json")
    assert team_b.folders is None
    assert _access(grants, "team-c").refusal(has_own_credentials=False) is not None


def test_a_lent_secret_is_the_only_secret_of_the_release_namespace_the_operator_reads(helm: Helm) -> None:
    lent = {"credentials": {"secretName": "team-b-yc-key"}}
    grants = [
        {"name": "team-b", "namespaceSelector": {"matchLabels": {"team": "b"}}, **lent},
        {"name": "team-b-staging", "namespaceSelector": {"matchLabels": {"team": "b-staging"}}, **lent},
        {"name": "team-c", "namespaceSelector": {}, "credentials": {"secretName": "team-c-yc-key"}},
    ]
    for values in ({}, {"watchNamespaces": ["team-a"]}):
        objects = helm.render({**values, "grants": grants})
        assert _roles_by_name(objects)[GRANTS_ROLE] == {
            **GRANTS_RULE,
            ("", "secrets/team-b-yc-key/team-c-yc-key"): ["get", "list", "watch"],
        }


def test_notes_say_how_to_grant_every_namespace_what_it_had_before_grants(helm: Helm) -> None:
    notes = helm("install", "dio", str(CHART), "--namespace", "operators", "--dry-run=client").stdout
    assert "DesktopImages without spec.credentialsRef are\n  refused before any cloud call" in notes
    assert "reason NotGranted" in notes
    (line,) = (line for line in notes.splitlines() if "--set-json" in line)
    argv = shlex.split(line)
    assert argv[:2] == ["helm", "upgrade"]
    assert "--reuse-values" in argv
    set_json = argv[argv.index("--set-json") + 1]
    grants = _grants(helm.render(args=["--set-json", set_json]))
    for namespace in ("default", "team-a", "anything"):
        access = _access(grants, namespace)
        assert access.refusal(has_own_credentials=False) is None
        assert access.borrowed() == GrantedCredentials(operator=True)
        assert access.folders is None
    # The READMEs give the same line.
    section, _ = readme_tenancy()
    assert f"--reuse-values --set-json '{set_json}'" in section
    assert set_json == chart_readme.GRANT_EVERYTHING
    granted = helm(
        "install", "dio", str(CHART), "--namespace", "operators", "--dry-run=client", "--set-json", set_json
    ).stdout
    assert "everyone: every namespace; the operator's own credentials; any folder." in granted
    assert "NotGranted" not in granted


def test_the_readme_shows_three_tenancy_set_ups_and_a_desktop_image_bringing_its_key() -> None:
    _, snippets = readme_tenancy()
    assert len(snippets) == len(TENANCY_SET_UPS) + 1
    (manifest,) = [snippet for snippet in snippets if "apiVersion" in snippet]
    spec = DesktopImageSpec.model_validate(manifest["spec"])
    assert spec.credentials_ref is not None


@pytest.mark.parametrize("set_up", TENANCY_SET_UPS)
def test_each_tenancy_set_up_of_the_readme_renders_what_it_says(helm: Helm, set_up: str) -> None:
    values = readme_set_up(set_up)
    lint = helm("lint", "--strict", str(CHART), "--values", str(helm.values_file(values)))
    assert "0 chart(s) failed" in lint.stdout, lint.stdout
    grants = _grants(helm.render(values))
    assert grants.model_dump(exclude_unset=True) == {"grants": values["grants"]}
    outside = _access(grants, "somebody-else")
    assert outside.refusal(has_own_credentials=False) is not None
    assert outside.folders is None
    match set_up:
        case "one team":
            assert _access(grants, "images").borrowed() == GrantedCredentials(operator=True)
            assert _access(grants, "images").folders is None
        case "a folder per team":
            for team in ("team-a", "team-b"):
                access = _access(grants, team)
                assert access.borrowed() == GrantedCredentials(operator=True)
                assert access.folders == {f"b1g{team.replace('-', '')}folder000000"}
        case "teams bringing their own keys":
            access = _access(grants, "team-c")
            assert access.refusal(has_own_credentials=True) is None
            assert access.refusal(has_own_credentials=False) is not None
            assert access.folders == {"b1gteamcfolder000000"}


def test_the_secret_admission_policy_lets_the_operator_change_only_its_finalizer(helm: Helm) -> None:
    objects = helm.render()
    policy = only(objects, "ValidatingAdmissionPolicy")
    name = policy["metadata"]["name"]
    assert name == "dio-desktop-image-operator-secret-finalizer-only"
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["secrets"]}
    ]
    assert [condition["expression"] for condition in spec["matchConditions"]] == [
        "request.userInfo.username == 'system:serviceaccount:operators:dio-desktop-image-operator'"
    ]
    expressions = " ".join(
        [v["expression"] for v in spec["validations"]] + [v["expression"] for v in spec["variables"]]
    )
    for field in ("data", "type", "immutable", "labels", "annotations", "ownerReferences", "finalizers"):
        assert f".?{field}" in expressions, field
    assert f"'{CREDENTIALS_FINALIZER}'" in expressions
    binding = only(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": name, "validationActions": ["Deny"]}
    # An existing ServiceAccount is matched by its own name.
    existing = helm.render({"serviceAccount": {"create": False, "name": "platform-operator"}})
    (condition,) = only(existing, "ValidatingAdmissionPolicy")["spec"]["matchConditions"]
    assert condition["expression"].endswith("'system:serviceaccount:operators:platform-operator'")


@pytest.mark.parametrize(
    "values",
    [
        {"rbac": {"secretAdmissionPolicy": False}},
        {"watchNamespaces": ["team-a"]},
        {"rbac": {"credentialsSecrets": False}},
        {"rbac": {"create": False}},
    ],
    ids=["turned off", "namespaced", "no secret access", "no rbac"],
)
def test_the_secret_admission_policy_is_left_out_where_the_operator_patches_no_secret_cluster_wide(
    helm: Helm, values: dict[str, Any]
) -> None:
    objects = helm.render(values)
    assert not find(objects, "ValidatingAdmissionPolicy")
    assert not find(objects, "ValidatingAdmissionPolicyBinding")


def test_a_cluster_older_than_the_admission_policy_is_told_to_turn_it_off(helm: Helm) -> None:
    args = ["template", "dio", str(CHART), "--kube-version", "1.29.0"]
    refused = helm(*args, check=False)
    assert refused.returncode != 0
    assert "set rbac.secretAdmissionPolicy=false" in refused.stderr, refused.stderr
    helm(*args, "--set", "rbac.secretAdmissionPolicy=false")


# -- the operations kit: monitoring, alerts, dashboard, network policy, pod customisation --------------------


def test_pod_monitor_scrapes_every_instance_by_the_deployments_selector(helm: Helm) -> None:
    monitor_values = {"enabled": True, "interval": "1m", "scrapeTimeout": "10s", "labels": {"team": "ops"}}
    values = {"metrics": {"podMonitor": monitor_values}}
    objects = helm.render(values)
    monitor = only(objects, "PodMonitor")
    assert monitor["metadata"]["labels"]["team"] == "ops"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["operators"]}
    assert monitor["spec"]["selector"] == only(objects, "Deployment")["spec"]["selector"]
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "1m", "scrapeTimeout": "10s"}
    ]
    assert not find(objects, "ServiceMonitor")


def _alerts(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (group,) = only(objects, "PrometheusRule")["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def test_prometheus_rule_holds_five_alerts_on_this_releases_series(helm: Helm) -> None:
    objects = helm.render({"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}}})
    rule = only(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    alerts = _alerts(objects)
    assert sorted(alerts) == [
        "DesktopImageCopyFailed",
        "DesktopImageNotReady",
        "DesktopImageOperatorCloudErrors",
        "DesktopImageOperatorDown",
        "DesktopImageOperatorNoLeader",
    ]
    # The ServiceMonitor's target: job is the metrics Service's name.
    service = only(objects, "Service")["metadata"]["name"]
    assert all(f'job="{service}", namespace="operators"' in a["expr"] for a in alerts.values())
    assert {a["labels"]["severity"] for a in alerts.values()} == {"warning", "critical"}
    assert all(a["annotations"]["summary"] and a["annotations"]["description"] for a in alerts.values())


def test_alert_thresholds_labels_and_selection_come_from_the_values(helm: Helm) -> None:
    values = {
        "metrics": {"podMonitor": {"enabled": True}},
        "prometheusRule": {
            "enabled": True,
            "alertLabels": {"team": "platform"},
            "alerts": {
                "notReady": {"for": "3h", "ignoredReasons": ["ReconcilePaused", "SourceNotReady"]},
                "copyFailed": {"enabled": False},
                "cloudErrors": {"ratio": 0.25, "window": "30m", "for": "1h", "ignoredCodes": ["NOT_FOUND"]},
                "down": {"severity": "page"},
            },
        },
    }
    alerts = _alerts(helm.render(values))
    assert "DesktopImageCopyFailed" not in alerts
    assert all(a["labels"]["team"] == "platform" for a in alerts.values())
    # The PodMonitor's target: job is "<namespace>/<PodMonitor name>".
    assert 'job="operators/dio-desktop-image-operator"' in alerts["DesktopImageOperatorDown"]["expr"]
    assert alerts["DesktopImageOperatorDown"]["labels"]["severity"] == "page"
    not_ready = alerts["DesktopImageNotReady"]
    assert not_ready["for"] == "3h"
    assert 'reason!~"Available|ReconcilePaused|SourceNotReady"' in not_ready["expr"]
    errors = alerts["DesktopImageOperatorCloudErrors"]
    assert errors["for"] == "1h"
    assert errors["expr"].endswith("> 0.25")
    assert errors["expr"].count("[30m]") == 2
    assert 'code!~"OK|NOT_FOUND"' in errors["expr"]

    others = {
        "copyFailed": {"window": "1h", "for": "5m"},
        "noLeader": {"for": "10m", "severity": "page"},
        "notReady": {"enabled": False},
    }
    chosen = _alerts(
        helm.render({"prometheusRule": {"enabled": True, "selector": 'job="dio"', "alerts": others}})
    )
    assert all("{job=" + '"dio"' in a["expr"] for a in chosen.values())
    assert "DesktopImageNotReady" not in chosen
    copy_failed = chosen["DesktopImageCopyFailed"]
    assert (copy_failed["for"], copy_failed["expr"].count("[1h]")) == ("5m", 1)
    no_leader = chosen["DesktopImageOperatorNoLeader"]
    assert (no_leader["for"], no_leader["labels"]["severity"]) == ("10m", "page")


def test_dashboard_configmap_carries_the_chart_dashboard_for_the_grafana_sidecar(helm: Helm) -> None:
    objects = helm.render({"grafanaDashboard": {"enabled": True}})
    (configmap,) = find(objects, "ConfigMap", "dio-desktop-image-operator-dashboard")
    assert configmap["metadata"]["namespace"] == "operators"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = configmap["data"].values()
    assert json.loads(text) == json.loads((CHART / "files" / "dashboard.json").read_text())

    elsewhere = {
        "enabled": True,
        "label": "example.com/dashboard",
        "labelValue": "yes",
        "namespace": "monitoring",
        "annotations": {"grafana_folder": "Operators"},
        "labels": {"team": "ops"},
    }
    (configmap,) = find(
        helm.render({"grafanaDashboard": elsewhere}), "ConfigMap", "dio-desktop-image-operator-dashboard"
    )
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Operators"}
    labels = configmap["metadata"]["labels"]
    assert (labels["example.com/dashboard"], labels["team"]) == ("yes", "ops")
    assert "grafana_dashboard" not in labels


def test_a_ca_bundle_for_an_egress_proxy_is_mounted_with_extra_volumes_and_arguments(helm: Helm) -> None:
    values: dict[str, Any] = {
        "credentials": {"existingSecret": "yc-sa-key"},
        "extraVolumes": [{"name": "egress-ca", "configMap": {"name": "egress-proxy-ca"}}],
        "extraVolumeMounts": [{"name": "egress-ca", "mountPath": "/etc/ssl/egress-proxy", "readOnly": True}],
        "extraEnv": [{"name": "SSL_CERT_FILE", "value": "/etc/ssl/egress-proxy/ca.crt"}],
        "extraArgs": ["--max-attempts=3"],
    }
    objects = helm.render(values)
    pod = _pod(objects)
    (container,) = pod["containers"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "credentials", "egress-ca"]
    assert pod["volumes"][-1]["configMap"] == {"name": "egress-proxy-ca"}
    assert [m["name"] for m in container["volumeMounts"]] == ["tmp", "credentials", "egress-ca"]
    assert container["volumeMounts"][-1] == values["extraVolumeMounts"][0]
    assert container_env(objects)["SSL_CERT_FILE"] == "/etc/ssl/egress-proxy/ca.crt"
    assert container["args"] == ["run", "--max-attempts=3"]
    assert _pod(helm.render())["containers"][0]["args"] == ["run"], "the operator, whatever the image's CMD"


def test_security_contexts_take_another_user_and_drop_keys_set_to_null(helm: Helm) -> None:
    values = {
        "podSecurityContext": {"runAsUser": 1001, "runAsGroup": None, "fsGroup": None},
        "securityContext": {"runAsUser": 1001, "readOnlyRootFilesystem": False},
    }
    pod = _pod(helm.render(values))
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["containers"][0]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _ports(rule: dict[str, Any]) -> list[tuple[Any, str]]:
    return [(port["port"], port["protocol"]) for port in rule["ports"]]


def test_network_policy_lets_through_dns_the_api_server_the_cloud_and_scrapes_only(helm: Helm) -> None:
    objects = helm.render({"networkPolicy": {"enabled": True}})
    policy = only(objects, "NetworkPolicy")["spec"]
    assert policy["podSelector"] == only(objects, "Deployment")["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (scrapes,) = policy["ingress"]
    assert scrapes == {"ports": [{"port": "metrics", "protocol": "TCP"}]}
    dns, api_server, cloud = policy["egress"]
    assert _ports(dns) == [(53, "UDP"), (53, "TCP")]
    assert "to" not in dns
    assert _ports(api_server) == [(443, "TCP"), (6443, "TCP")]
    assert _ports(cloud) == [(443, "TCP")]
    everywhere = [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
    assert api_server["to"] == cloud["to"] == everywhere
    assert not find(helm.render(), "NetworkPolicy")


def test_network_policy_narrows_to_the_given_addresses_and_peers(helm: Helm) -> None:
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    kube_dns = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    values: dict[str, Any] = {
        "enabled": True,
        "egress": {
            "dns": {"to": [kube_dns]},
            "apiServer": {"cidrs": ["10.96.0.1/32"], "ports": [6443]},
            "cloud": {"cidrs": ["10.20.0.5/32"], "ports": [3128]},
            "extra": [{"to": [{"ipBlock": {"cidr": "10.30.0.0/16"}}]}],
        },
        "ingress": {"metricsFrom": [prometheus], "extra": [{"ports": [{"port": 9999}]}]},
    }
    policy = only(helm.render({"networkPolicy": values}), "NetworkPolicy")["spec"]
    dns, api_server, proxy, extra = policy["egress"]
    assert dns["to"] == [kube_dns]
    assert (api_server["to"], _ports(api_server)) == (
        [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
        [(6443, "TCP")],
    )
    assert (proxy["to"], _ports(proxy)) == ([{"ipBlock": {"cidr": "10.20.0.5/32"}}], [(3128, "TCP")])
    assert extra == values["egress"]["extra"][0]
    scrapes, more = policy["ingress"]
    assert scrapes["from"] == [prometheus]
    assert more == {"ports": [{"port": 9999}]}
    without_dns = only(
        helm.render({"networkPolicy": {"enabled": True, "egress": {"dns": {"enabled": False}}}}),
        "NetworkPolicy",
    )
    assert all(rule["ports"][0]["port"] != 53 for rule in without_dns["spec"]["egress"])


def test_notes_say_to_apply_the_crd_with_server_side_apply_as_the_chart_ships_it(helm: Helm) -> None:
    notes = helm("install", "dio", str(CHART), "--namespace", "operators", "--dry-run=client").stdout
    assert "helm show crds" in notes
    assert "kubectl apply --server-side -f -" in notes
    assert "kubectl apply --server-side -f <the chart's directory>/crds/" in notes
    # What `helm show crds` gives is the CRD in the chart's crds/, the one to apply.
    shown = helm("show", "crds", str(CHART)).stdout
    assert yaml.safe_load(shown) == yaml.safe_load(CHART_CRD_FILE.read_text())
    monitored = {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}
    args = ["install", "dio", str(CHART), "--namespace", "operators", "--dry-run=client"]
    notes = helm(*args, "--values", str(helm.values_file(monitored))).stdout
    assert "Monitoring: a PrometheusRule with its alerts, the Grafana dashboard" in notes


def test_chart_readme_is_generated_from_the_values_schema() -> None:
    assert chart_readme.README.read_text() == chart_readme.expected(), (
        f"{chart_readme.README.relative_to(REPO)} is stale: regenerate it with `{chart_readme.COMMAND}`"
    )


def test_every_value_in_the_chart_readme_is_described() -> None:
    schema = json.loads(chart_readme.SCHEMA.read_text())
    values = yaml.safe_load(chart_readme.VALUES.read_text())
    rows = list(chart_readme.rows(schema, values))
    assert not [row.key for row in rows if not row.description]
    documented = {row.key.split(".")[0] for row in rows}
    assert set(values) <= documented, sorted(set(values) - documented)
