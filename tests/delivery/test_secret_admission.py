"""The chart's ValidatingAdmissionPolicy on the local control plane: the operator's ServiceAccount may add and
remove its finalizer on any Secret of the cluster, and the API server refuses it every other change.

The chart's RBAC and policy are applied as `helm template` renders them for a cluster-wide install; no
operator runs: kubectl impersonates its ServiceAccount, and sends the patches the operator sends (a strategic
merge of metadata.finalizers) next to the ones it must never be able to send.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from desktop_image_operator.reconciler.annotations import CREDENTIALS_FINALIZER
from desktop_image_operator_dev.helm import Helm
from tests.support.kube import Kubectl, kubectl_json, unique_name
from tests.support.processes import wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow, pytest.mark.timeout(600)]

# What decides the operator's Secret writes; the rest of the chart plays no part in them.
RBAC_AND_POLICY = {
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}
# A finalizer of someone else's, which the operator must leave alone.
OTHER_FINALIZER = "example.com/keep-until-audited"
ADD_OURS = {"metadata": {"finalizers": [CREDENTIALS_FINALIZER]}}
REMOVE_OURS = {"metadata": {"$deleteFromPrimitiveList/finalizers": [CREDENTIALS_FINALIZER]}}


@dataclass(frozen=True)
class Installed:
    kubectl: Kubectl
    namespace: str  # where the test Secrets live, a namespace the operator would serve
    user: str  # the operator's ServiceAccount, as the API server names it
    policy: str

    def as_operator(self, *args: str) -> Any:
        return self.kubectl(f"--as={self.user}", *args, check=False)

    def patch_as_operator(self, secret: str, patch: dict[str, Any], *, dry_run: bool = False) -> Any:
        args = ["patch", "secret", secret, "-n", self.namespace, "--type=strategic", "-p", json.dumps(patch)]
        return self.as_operator(*args, *(["--dry-run=server"] if dry_run else []))

    def secret(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = kubectl_json(self.kubectl, "get", "secret", name, "-n", self.namespace)
        return found

    def make_secret(self, **metadata: Any) -> str:
        """A Secret like a team's key, with labels and annotations and another party's finalizer, so that
        every comparison of the policy meets values on both sides."""
        name = unique_name("team-key")
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {"team": "a"},
                "annotations": {"owner": "team-a"},
                "finalizers": [OTHER_FINALIZER],
                **metadata,
            },
            "type": "Opaque",
            "stringData": {"key.json": '{"id": "key-id"}'},
        }
        self.kubectl("create", "-f", "-", stdin=json.dumps(secret))
        return name


@pytest.fixture(scope="module")
def installed(helm: Helm, kubectl: Kubectl) -> Iterator[Installed]:
    release_namespace, namespace = unique_name("operators"), unique_name("team-a")
    for name in (release_namespace, namespace):
        kubectl("create", "namespace", name)
    release = unique_name("dio-vap")
    objects = [
        obj
        for obj in helm.render(release=release, namespace=release_namespace)
        if obj["kind"] in RBAC_AND_POLICY
    ]
    (policy,) = (obj for obj in objects if obj["kind"] == "ValidatingAdmissionPolicy")
    rendered = yaml.safe_dump_all(objects)
    kubectl("apply", "-f", "-", stdin=rendered)
    user = f"system:serviceaccount:{release_namespace}:{release}-desktop-image-operator"
    try:
        yield Installed(kubectl, namespace, user, policy["metadata"]["name"])
    finally:
        kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=rendered)
        # The Secrets keep their namespace until their finalizers go.
        for secret in kubectl_json(kubectl, "get", "secrets", "-n", namespace)["items"]:
            name = secret["metadata"]["name"]
            patch = json.dumps({"metadata": {"finalizers": None}})
            kubectl("patch", "secret", name, "-n", namespace, "--type=merge", "-p", patch)
        kubectl("delete", "namespace", release_namespace, namespace, "--wait=false")


@pytest.fixture(scope="module")
def enforced(installed: Installed) -> Installed:
    """The API server applies a new policy once its informers have it: wait until it refuses (server dry runs
    go through admission and change nothing)."""
    probe = installed.make_secret()

    def refused() -> bool:
        result = installed.patch_as_operator(probe, {"data": {"extra": "eA=="}}, dry_run=True)
        return result.returncode != 0 and installed.policy in result.stderr

    wait_until(refused, timeout=30, what=f"ValidatingAdmissionPolicy {installed.policy} in force")
    return installed


def test_the_policy_type_checks_against_the_secret_schema(enforced: Installed) -> None:
    """The API server type-checks every expression against Secret's schema and reports what it doubts in the
    policy's status: a field misspelt or mistyped would otherwise only show as refusals at run time."""

    def checked() -> dict[str, Any] | None:
        policy = kubectl_json(enforced.kubectl, "get", "validatingadmissionpolicy", enforced.policy)
        status: dict[str, Any] = policy.get("status") or {}
        return status if status.get("observedGeneration") == policy["metadata"]["generation"] else None

    status = wait_until(checked, timeout=30, what=f"the type check of {enforced.policy}")
    assert not status.get("typeChecking", {}).get("expressionWarnings"), status


def test_the_operator_may_add_and_remove_its_finalizer_on_a_secret(enforced: Installed) -> None:
    name = enforced.make_secret()
    added = enforced.patch_as_operator(name, ADD_OURS)
    assert added.returncode == 0, added.stderr
    assert set(enforced.secret(name)["metadata"]["finalizers"]) == {OTHER_FINALIZER, CREDENTIALS_FINALIZER}
    removed = enforced.patch_as_operator(name, REMOVE_OURS)
    assert removed.returncode == 0, removed.stderr
    assert enforced.secret(name)["metadata"]["finalizers"] == [OTHER_FINALIZER]


def test_the_operator_may_release_its_finalizer_from_a_secret_being_deleted(enforced: Installed) -> None:
    """A namespace deletion marks the Secret first; the operator's last patch then lets it go."""
    name = enforced.make_secret(finalizers=[CREDENTIALS_FINALIZER])
    enforced.kubectl("delete", "secret", name, "-n", enforced.namespace, "--wait=false")
    assert enforced.secret(name)["metadata"].get("deletionTimestamp")
    removed = enforced.patch_as_operator(name, REMOVE_OURS)
    assert removed.returncode == 0, removed.stderr
    gone = enforced.kubectl("get", "secret", name, "-n", enforced.namespace, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr


@pytest.mark.parametrize(
    ("change", "patch"),
    [
        ("data", {"data": {"key.json": "eyJpZCI6ICJvdGhlciJ9"}}),
        ("data", {"data": {"another-key.json": "e30="}}),
        ("data", {"stringData": {"key.json": '{"id": "other"}'}}),
        ("immutable", {"immutable": True}),
        ("labels", {"metadata": {"labels": {"team": "b"}}}),
        ("labels", {"metadata": {"labels": {"extra": "x"}}}),
        ("annotations", {"metadata": {"annotations": {"owner": None}}}),
        (
            "ownerReferences",
            {
                "metadata": {
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "name": "takeover",
                            "uid": "00000000-0000-0000-0000-000000000001",
                        }
                    ]
                }
            },
        ),
        ("finalizer", {"metadata": {"finalizers": ["example.com/another"]}}),
        ("finalizer", {"metadata": {"$deleteFromPrimitiveList/finalizers": [OTHER_FINALIZER]}}),
        # Its own finalizer does not carry anything else through.
        ("data", {**ADD_OURS, "data": {"key.json": "e30="}}),
    ],
    ids=[
        "data",
        "a new data key",
        "stringData",
        "immutable",
        "a label",
        "a new label",
        "an annotation removed",
        "ownerReferences",
        "another finalizer added",
        "another finalizer removed",
        "its finalizer with data",
    ],
)
def test_the_operator_may_change_nothing_else_of_a_secret(
    enforced: Installed, change: str, patch: dict[str, Any]
) -> None:
    name = enforced.make_secret()
    before = enforced.secret(name)
    refused = enforced.patch_as_operator(name, patch)
    assert refused.returncode != 0, f"the patch went through: {patch}"
    assert f"ValidatingAdmissionPolicy '{enforced.policy}'" in refused.stderr, refused.stderr
    assert change in refused.stderr, refused.stderr
    after = enforced.secret(name)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_everyone_else_s_secret_writes_are_left_to_rbac(enforced: Installed) -> None:
    name = enforced.make_secret()
    patch = json.dumps({"data": {"key.json": "e30="}, "metadata": {"labels": {"team": "b"}}})
    enforced.kubectl("patch", "secret", name, "-n", enforced.namespace, "-p", patch)
    assert enforced.secret(name)["data"]["key.json"] == "e30="
