"""The DesktopImage CRD refuses malformed manifests at the API server, as a user meets them.

Every case goes through `kubectl apply -f -` against the real kube-apiserver with the generated CRD
installed: a malformed manifest must be refused with an error whose field path names the offending field
and, for the rules written in CEL, the rule's own message; a few go through an API create as well. The
update rules (immutable source and folder) apply a valid object first and then the changed one. Positive
controls show that valid manifests, up to every limit, are accepted, so a CRD that refuses everything
cannot pass.

No operator runs here: accepted objects just sit in the API server.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from desktop_image_operator.api import cel
from desktop_image_operator.api import validation as v
from desktop_image_operator.api.constants import (
    API_VERSION,
    CRD_NAME,
    GROUP,
    KIND,
    OWNER_UID_LABEL,
    PLURAL,
    VERSION,
)
from tests.support.kube import Kubectl, kubectl_json

pytestmark = pytest.mark.controlplane

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "clouddesktop.yc.io_desktopimages.yaml"

NAME = "analysts-base"
DESKTOP = "e3vdesktop0000000001"
OTHER_DESKTOP = "e3vdesktop0000000002"
COMPUTE_IMAGE = "fd8image00000000001"
FOLDER = "b1gfolder0000000001"
OTHER_FOLDER = "b1gfolder0000000002"

# The kinds of field error the API server reports ("<path>: <kind>: <detail>").
FIELD_ERROR_KINDS = (
    "Invalid value",
    "Required value",
    "Unsupported value",
    "Too long",
    "Too many",
    "Forbidden",
)
# Signs of a CEL rule that failed to evaluate instead of refusing cleanly.
RULE_ERROR_SIGNS = ("no such key", "evaluating rule", "compilation failed", "cost budget")


@pytest.fixture(scope="module")
def desktopimage_crd(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(CRD_FILE))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s")


def manifest(spec: Any, *, name: str = NAME) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


def from_desktop(**extra: Any) -> dict[str, Any]:
    return {"source": {"desktopId": DESKTOP}, **extra}


def from_compute_image(**extra: Any) -> dict[str, Any]:
    return {"source": {"computeImageId": COMPUTE_IMAGE}, "folderId": FOLDER, **extra}


def many_labels(count: int) -> dict[str, str]:
    return {f"label-{i:02d}": f"value-{i:02d}" for i in range(count)}


def apply(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = kubectl(
        "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(obj), check=False
    )
    return result


def assert_refused(result: subprocess.CompletedProcess[str], path: str, message: str | None) -> None:
    output = result.stderr + result.stdout
    assert result.returncode != 0, f"accepted, expected a refusal naming {path}:\n{output}"
    kinds = "|".join(map(re.escape, FIELD_ERROR_KINDS))
    assert re.search(rf"(?<![\w.]){re.escape(path)}: ({kinds})", result.stderr), (
        f"the error does not name {path}:\n{output}"
    )
    if message is not None:
        assert message in result.stderr, f"the error lacks the message {message!r}:\n{output}"
    noise = [sign for sign in RULE_ERROR_SIGNS if sign in result.stderr]
    assert not noise, f"a rule failed to evaluate ({noise}):\n{output}"


def assert_accepted(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Apply `obj`, expect it accepted and stored as written; return the stored spec."""
    result = apply(kubectl, namespace, obj)
    assert result.returncode == 0, f"refused a valid manifest:\n{result.stderr}{result.stdout}"
    stored: dict[str, Any] = kubectl_json(
        kubectl, "get", "-n", namespace, "desktopimage", obj["metadata"]["name"]
    )["spec"]
    for key, value in obj["spec"].items():
        assert stored[key] == value, key
    return stored


def with_id(field: str, value: str) -> dict[str, Any]:
    """A manifest whose cloud ID `field` (its path below spec) is `value`, valid otherwise."""
    if field == "folderId":
        return manifest(from_compute_image(folderId=value))
    if field == "source.computeImageId":
        return manifest({"source": {"computeImageId": value}, "folderId": FOLDER})
    return manifest({"source": {field.removeprefix("source."): value}})


ID_FIELDS = ("source.desktopId", "source.computeImageId", "source.imageId", "folderId")
# Each would change a REST path (/cloud-desktop/v1/images/{imageId}) or is no ID the cloud gives out.
BAD_IDS = {"dot": ".", "dot-dot": "..", "dot-dot-slash": "../x", "uppercase": "A", "escape": "%2e"}
BAD_IDS |= {"slash": "e3v/x", "space": "e3v x", "colon": "e3v:copy", "leading-hyphen": "-e3v"}


@dataclass(frozen=True)
class Refusal:
    """A manifest the API server must refuse, the field path its error must name and, for our CEL rules,
    the rule's message."""

    obj: dict[str, Any]
    path: str
    message: str | None = None
    before: dict[str, Any] | None = None


ID_REFUSALS = {
    f"{field.rsplit('.', 1)[-1]}-{kind}": Refusal(with_id(field, value), f"spec.{field}")
    for field in ID_FIELDS
    for kind, value in BAD_IDS.items()
}

CREATE_REFUSALS = {
    # source: exactly one kind, and a folder with a Compute image
    "source-missing": Refusal(manifest({"folderId": FOLDER}), "spec.source"),
    "source-both": Refusal(
        manifest({"source": {"desktopId": DESKTOP, "computeImageId": COMPUTE_IMAGE}, "folderId": FOLDER}),
        "spec.source",
        cel.ONE_SOURCE_MESSAGE,
    ),
    "source-empty": Refusal(manifest({"source": {}}), "spec.source", cel.ONE_SOURCE_MESSAGE),
    "source-empty-desktop-id": Refusal(manifest({"source": {"desktopId": ""}}), "spec.source.desktopId"),
    "compute-image-without-folder": Refusal(
        manifest({"source": {"computeImageId": COMPUTE_IMAGE}}), "spec.folderId", cel.FOLDER_REQUIRED_MESSAGE
    ),
    # spec.name: the cloud's naming rule
    "name-too-long": Refusal(manifest(from_desktop(name="a" * (v.CLOUD_NAME_MAX_LENGTH + 1))), "spec.name"),
    "name-uppercase": Refusal(manifest(from_desktop(name="Analysts-base")), "spec.name"),
    "name-trailing-hyphen": Refusal(manifest(from_desktop(name="analysts-")), "spec.name"),
    "name-starts-with-digit": Refusal(manifest(from_desktop(name="1analysts")), "spec.name"),
    "name-empty": Refusal(manifest(from_desktop(name="")), "spec.name"),
    # metadata.name is the cloud name when spec.name is absent
    "metadata-name-with-dot": Refusal(
        manifest(from_desktop(), name="analysts.base"), "metadata.name", cel.METADATA_NAME_MESSAGE
    ),
    "metadata-name-too-long": Refusal(
        manifest(from_desktop(), name="a" * (v.CLOUD_NAME_MAX_LENGTH + 1)),
        "metadata.name",
        cel.METADATA_NAME_MESSAGE,
    ),
    "metadata-name-starts-with-digit": Refusal(
        manifest(from_desktop(), name="1analysts"), "metadata.name", cel.METADATA_NAME_MESSAGE
    ),
    # description
    "description-too-long": Refusal(
        manifest(from_desktop(description="d" * (v.DESCRIPTION_MAX_LENGTH + 1))), "spec.description"
    ),
    # labels: the cloud's 64 less the four ownership labels, the cloud's key and value rules, the operator's
    # own keys
    "labels-61": Refusal(
        manifest(from_desktop(labels=many_labels(v.LABELS_MAX_COUNT + 1))),
        "spec.labels",
        "must have at most 60 items",
    ),
    "label-key-uppercase": Refusal(
        manifest(from_desktop(labels={"Team": "a"})), "spec.labels", cel.LABEL_KEYS_MESSAGE
    ),
    "label-key-starts-with-digit": Refusal(
        manifest(from_desktop(labels={"1team": "a"})), "spec.labels", cel.LABEL_KEYS_MESSAGE
    ),
    "label-key-too-long": Refusal(
        manifest(from_desktop(labels={"k" * (v.LABEL_KEY_MAX_LENGTH + 1): "a"})),
        "spec.labels",
        cel.LABEL_KEYS_MESSAGE,
    ),
    "label-key-with-dot": Refusal(
        manifest(from_desktop(labels={"team.name": "a"})), "spec.labels", cel.LABEL_KEYS_MESSAGE
    ),
    "label-key-empty": Refusal(
        manifest(from_desktop(labels={"": "a"})), "spec.labels", cel.LABEL_KEYS_MESSAGE
    ),
    "label-value-uppercase": Refusal(manifest(from_desktop(labels={"team": "A"})), "spec.labels.team"),
    "label-value-too-long": Refusal(
        manifest(from_desktop(labels={"team": "a" * (v.LABEL_VALUE_MAX_LENGTH + 1)})), "spec.labels.team"
    ),
    "label-reserved-owner-uid": Refusal(
        manifest(from_desktop(labels={OWNER_UID_LABEL: "x"})), "spec.labels", cel.RESERVED_LABEL_MESSAGE
    ),
    # deletionPolicy
    "deletion-policy-keep": Refusal(manifest(from_desktop(deletionPolicy="Keep")), "spec.deletionPolicy"),
    # credentialsRef
    "credentials-ref-without-name": Refusal(
        manifest(from_desktop(credentialsRef={"key": "key.json"})), "spec.credentialsRef.name"
    ),
    "credentials-ref-name-invalid": Refusal(
        manifest(from_desktop(credentialsRef={"name": "YC_KEY"})), "spec.credentialsRef.name"
    ),
    "credentials-ref-key-dotdot": Refusal(
        manifest(from_desktop(credentialsRef={"name": "yc-sa-key", "key": "..x"})),
        "spec.credentialsRef.key",
        cel.SECRET_KEY_MESSAGE,
    ),
    "credentials-ref-key-dot": Refusal(
        manifest(from_desktop(credentialsRef={"name": "yc-sa-key", "key": "."})),
        "spec.credentialsRef.key",
        cel.SECRET_KEY_MESSAGE,
    ),
    "credentials-ref-key-slash": Refusal(
        manifest(from_desktop(credentialsRef={"name": "yc-sa-key", "key": "keys/key.json"})),
        "spec.credentialsRef.key",
    ),
    # wrong types
    "labels-as-list": Refusal(manifest(from_desktop(labels=["team=a"])), "spec.labels"),
    "source-as-string": Refusal(manifest({"source": DESKTOP}), "spec.source"),
    "folder-id-too-long": Refusal(
        manifest(from_compute_image(folderId="b" * (v.CLOUD_ID_MAX_LENGTH + 1))), "spec.folderId"
    ),
    **ID_REFUSALS,
}

UPDATE_REFUSALS = {
    "change-desktop-id": Refusal(
        before=manifest(from_desktop()),
        obj=manifest({"source": {"desktopId": OTHER_DESKTOP}}),
        path="spec.source",
        message=cel.SOURCE_IMMUTABLE_MESSAGE,
    ),
    "switch-desktop-to-compute-image": Refusal(
        before=manifest(from_desktop(folderId=FOLDER)),
        obj=manifest(from_compute_image()),
        path="spec.source",
        message=cel.SOURCE_IMMUTABLE_MESSAGE,
    ),
    "switch-compute-image-to-desktop": Refusal(
        before=manifest(from_compute_image()),
        obj=manifest(from_desktop(folderId=FOLDER)),
        path="spec.source",
        message=cel.SOURCE_IMMUTABLE_MESSAGE,
    ),
    "change-folder-id": Refusal(
        before=manifest(from_compute_image()),
        obj=manifest(from_compute_image(folderId=OTHER_FOLDER)),
        path="spec.folderId",
        message=cel.FOLDER_IMMUTABLE_MESSAGE,
    ),
    "add-folder-id": Refusal(
        before=manifest(from_desktop()),
        obj=manifest(from_desktop(folderId=FOLDER)),
        path="spec.folderId",
        message=cel.FOLDER_IMMUTABLE_MESSAGE,
    ),
    "remove-folder-id": Refusal(
        before=manifest(from_desktop(folderId=FOLDER)),
        obj=manifest(from_desktop()),
        path="spec.folderId",
        message=cel.FOLDER_IMMUTABLE_MESSAGE,
    ),
}

ACCEPTED = {
    "desktop-minimal": manifest(from_desktop()),
    "desktop-with-folder": manifest(from_desktop(folderId=FOLDER)),
    "compute-image-with-folder": manifest(from_compute_image()),
    "all-fields": manifest(
        from_desktop(
            folderId=FOLDER,
            name="analysts-base-2",
            description="Base image for the analysts' desktops.",
            labels={"team": "analysts", "cost_center": "a-42", "empty": ""},
            deletionPolicy="Retain",
            credentialsRef={"name": "yc-sa-key.v1", "key": "authorized_key.JSON"},
        )
    ),
    "max-lengths": manifest(
        {
            "source": {"computeImageId": "f" * v.CLOUD_ID_MAX_LENGTH},
            "folderId": "b" * v.CLOUD_ID_MAX_LENGTH,
            "name": "n" * v.CLOUD_NAME_MAX_LENGTH,
            "description": "d" * v.DESCRIPTION_MAX_LENGTH,
            "labels": {"k" * v.LABEL_KEY_MAX_LENGTH: "v" * v.LABEL_VALUE_MAX_LENGTH},
        }
    ),
    "labels-60": manifest(from_desktop(labels=many_labels(v.LABELS_MAX_COUNT))),
    "ids-of-lowercase-letters-digits-hyphens-and-underscores": manifest(
        {"source": {"computeImageId": "fd8abc123def456ghi78"}, "folderId": "b1g-xyz_0123456789"}
    ),
    "image-id-starting-with-a-digit": manifest({"source": {"imageId": "0e3vabcdefghijklmnop"}}),
    "name-one-letter": manifest(from_desktop(name="a")),
    "metadata-name-max-length": manifest(from_desktop(), name="a" * v.CLOUD_NAME_MAX_LENGTH),
    "metadata-name-with-dot-and-spec-name": manifest(from_desktop(name=NAME), name="analysts.base"),
    "metadata-name-too-long-and-spec-name": manifest(
        from_desktop(name=NAME), name="a" * (v.CLOUD_NAME_MAX_LENGTH + 1)
    ),
}

# Changes the design applies to the cloud image in place: name, description, labels (and the policy).
ACCEPTED_UPDATES = {
    "change-name-description-labels": (
        manifest(from_compute_image(name="first", description="one", labels={"team": "a", "old": "x"})),
        manifest(from_compute_image(name="second", description="two", labels={"team": "b", "tier": "x"})),
    ),
    "change-deletion-policy": (
        manifest(from_desktop(deletionPolicy="Delete")),
        manifest(from_desktop(deletionPolicy="Retain")),
    ),
}


@pytest.mark.usefixtures("desktopimage_crd")
@pytest.mark.parametrize("case", CREATE_REFUSALS.values(), ids=CREATE_REFUSALS.keys())
def test_malformed_manifest_refused(case: Refusal, kubectl: Kubectl, namespace: str) -> None:
    assert_refused(apply(kubectl, namespace, case.obj), case.path, case.message)


# The same refusals met through the API rather than kubectl: a controller or a GitOps tool creating objects.
API_REFUSALS = {
    name: CREATE_REFUSALS[name]
    for name in ("imageId-dot", "imageId-dot-dot-slash", "imageId-uppercase", "folderId-dot-dot", "labels-61")
}


@pytest.mark.usefixtures("desktopimage_crd")
@pytest.mark.parametrize("case", API_REFUSALS.values(), ids=API_REFUSALS.keys())
def test_malformed_object_refused_by_an_api_create_naming_the_field(
    case: Refusal, api_client: client.ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as caught:
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, case.obj)
    body = caught.value.body
    assert caught.value.status == 422, body
    assert body is not None
    details = json.loads(body)["details"]
    assert case.path in {cause.get("field") for cause in details["causes"]}, details


@pytest.mark.usefixtures("desktopimage_crd")
@pytest.mark.parametrize("case", UPDATE_REFUSALS.values(), ids=UPDATE_REFUSALS.keys())
def test_immutable_field_change_refused(case: Refusal, kubectl: Kubectl, namespace: str) -> None:
    assert case.before is not None
    assert_accepted(kubectl, namespace, case.before)
    result = apply(kubectl, namespace, case.obj)
    assert_refused(result, case.path, case.message)
    assert "immutable" in result.stderr
    # The refused change left the object as it was.
    stored = kubectl_json(kubectl, "get", "-n", namespace, "desktopimage", NAME)
    assert stored["spec"]["source"] == case.before["spec"]["source"]
    assert stored["spec"].get("folderId") == case.before["spec"].get("folderId")


@pytest.mark.usefixtures("desktopimage_crd")
@pytest.mark.parametrize("obj", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_valid_manifest_accepted(obj: dict[str, Any], kubectl: Kubectl, namespace: str) -> None:
    assert_accepted(kubectl, namespace, obj)


@pytest.mark.usefixtures("desktopimage_crd")
@pytest.mark.parametrize(("before", "after"), ACCEPTED_UPDATES.values(), ids=ACCEPTED_UPDATES.keys())
def test_mutable_field_change_accepted(
    before: dict[str, Any], after: dict[str, Any], kubectl: Kubectl, namespace: str
) -> None:
    assert_accepted(kubectl, namespace, before)
    # Stored as written: a label the new manifest drops is gone too.
    assert_accepted(kubectl, namespace, after)


def test_defaults_applied(desktopimage_crd: None, kubectl: Kubectl, namespace: str) -> None:
    result = apply(kubectl, namespace, manifest(from_desktop(credentialsRef={"name": "yc-sa-key"})))
    assert result.returncode == 0, result.stderr
    stored = kubectl_json(kubectl, "get", "-n", namespace, "desktopimage", NAME)["spec"]
    # No API default for deletionPolicy: the operator reads its absence as Delete for a copy, Retain for
    # an adopted image.
    assert "deletionPolicy" not in stored
    assert stored["credentialsRef"] == {"name": "yc-sa-key", "key": "key.json"}
