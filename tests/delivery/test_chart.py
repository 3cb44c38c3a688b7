"""The Helm chart without a cluster: lint, the CRD copies, the values schema, and what each value renders."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest
import yaml

from desktop_image_operator.commands.run import add_arguments, settings_values
from desktop_image_operator.controller.settings import RunSettings
from desktop_image_operator_dev.helm import CHART, CHART_CRD_FILE, CRD_FILE, REPO, Helm
from tests.delivery.support import container_env, find, only

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
}


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


def test_default_values_render_eight_objects(helm: Helm) -> None:
    objects = helm.render()
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
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
    assert not find(single, "Role")
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


def test_rbac_cluster_wide(helm: Helm) -> None:
    objects = helm.render()
    (role,) = find(objects, "Role")
    assert role["metadata"] == {**role["metadata"], "namespace": "operators"}
    assert _rules(role) == LEASE_RULE
    (lease_binding,) = find(objects, "RoleBinding")
    assert lease_binding["roleRef"]["name"] == role["metadata"]["name"]
    assert _rules(only(objects, "ClusterRole")) == {**CRD_RULE, **IDENTITY_RULE, **OPERATOR_RULES}
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
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["operators", "team-a", "team-b"]
    assert [_rules(role) for role in roles if role["metadata"]["namespace"] == "operators"] == [LEASE_RULE]
    assert all(
        _rules(role) == OPERATOR_RULES for role in roles if role["metadata"]["namespace"] != "operators"
    )
    bindings = find(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["operators", "team-a", "team-b"]
    assert all(b["subjects"][0]["namespace"] == "operators" for b in bindings)


def test_rbac_without_secret_access(helm: Helm) -> None:
    for values in ({}, {"watchNamespaces": ["team-a"]}):
        objects = helm.render({**values, "rbac": {"credentialsSecrets": False}})
        for role in find(objects, "ClusterRole") + find(objects, "Role"):
            assert ("", "secrets") not in _rules(role)


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
    objects = helm.render({"clusterId": "prod-eu"})
    assert ("", "namespaces/kube-system") not in _rules(only(objects, "ClusterRole"))
    env = {
        e["name"]: e.get("value")
        for e in only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["DESKTOP_IMAGE_OPERATOR_CLUSTER_ID"] == "prod-eu"
