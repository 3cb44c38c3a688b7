"""Tenancy end to end: the operator's credentials serve only the namespaces and folders its grants name.

Each test starts the operator with a grants document of its own (a file, as outside a cluster the
operator reads it; the chart's ConfigMap holds the same text) and judges by the fake cloud's request log:
a refused object makes no cloud call at all, or none in the folder it may not reach.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from desktop_image_operator.commands.run import ENV_PREFIX
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator_dev.fakecloud import seeds
from tests.support.images import make_image
from tests.support.kube import (
    Kubectl,
    StartOperator,
    apply,
    condition,
    create_key_secret,
    delete_object,
    kubectl_json,
    wait_ready_at,
    wait_reason,
)
from tests.support.manifests import desktop_image
from tests.support.processes import FakeCloudProcess

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

MUTATING = {"DesktopImageService.Copy", "DesktopImageService.CopyFromDesktop", "DesktopImageService.Update"}
OTHER_FOLDER = "b1gotherteamfolder00"


def write_grants(tmp_path: Path, *grants: dict[str, Any]) -> Path:
    """The grants document this test gives the operator (rewritten to give or take back a grant)."""
    path = tmp_path / "tenancy-grants.yaml"
    path.write_text(yaml.safe_dump({"grants": list(grants)}))
    return path


def start_with_grants(start_operator: StartOperator, tmp_path: Path, *grants: dict[str, Any]) -> None:
    path = write_grants(tmp_path, *grants)
    start_operator(
        extra_env={f"{ENV_PREFIX}GRANTS_FILE": str(path), f"{ENV_PREFIX}GRANTS_REFRESH_SECONDS": "1"}
    )


def for_namespace(namespace: str, **fields: Any) -> dict[str, Any]:
    selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return {"name": f"grant-{namespace}", "namespaceSelector": selector, **fields}


def seq_now(cloud: FakeCloudProcess) -> int:
    return max((entry["seq"] for entry in cloud.requests()), default=0)


def methods_since(cloud: FakeCloudProcess, seq: int) -> list[str]:
    return [entry["method"] for entry in cloud.requests(after=seq)]


def test_a_namespace_without_a_grant_is_refused_without_a_single_cloud_call(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    start_with_grants(start_operator, tmp_path, for_namespace("team-a", credentials={"operator": True}))
    seq = seq_now(cloud)
    apply(kubectl, namespace, desktop_image("golden"))
    refused = wait_reason(kubectl, namespace, "golden", r.NOT_GRANTED, timeout=30)
    message = condition(refused, "Ready")["message"]
    assert f"Namespace {namespace} has no grant" in message
    assert methods_since(cloud, seq) == []  # not even a token exchange
    events = kubectl_json(kubectl, "get", "events", "-n", namespace)["items"]
    assert any(event["reason"] == r.NOT_GRANTED for event in events)
    delete_object(kubectl, namespace, "golden")  # the finalizer lets go without the cloud
    assert methods_since(cloud, seq) == []


def test_a_grant_given_while_an_object_is_refused_takes_effect_within_a_refresh(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    start_with_grants(start_operator, tmp_path)  # no grant at all: the chart's secure default
    apply(kubectl, namespace, desktop_image("golden"))
    wait_reason(kubectl, namespace, "golden", r.NOT_GRANTED, timeout=30)
    grant = for_namespace(namespace, credentials={"operator": True}, folderIds=[seeds.FOLDER_ID])
    write_grants(tmp_path, grant)
    obj = wait_ready_at(kubectl, namespace, "golden", 1)
    assert obj["status"]["folderId"] == seeds.FOLDER_ID


def test_a_folder_outside_the_grant_is_refused_for_copies_adoption_and_observation(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    image_id = make_image(cloud, "team-b-image")  # in the desktop's folder, which the grant leaves out
    grant = for_namespace(namespace, credentials={"operator": True}, folderIds=[OTHER_FOLDER])
    start_with_grants(start_operator, tmp_path, grant)
    seq = seq_now(cloud)
    adopt = {"source": {"imageId": image_id}, "deletionPolicy": "Delete"}
    apply(
        kubectl,
        namespace,
        desktop_image("copy"),
        desktop_image("adopt", **adopt),
        desktop_image("observe", source={"imageId": image_id}, managementPolicy="Observe"),
    )
    for name in ("copy", "adopt", "observe"):
        refused = wait_reason(kubectl, namespace, name, r.FOLDER_NOT_GRANTED, timeout=30)
        message = condition(refused, "Ready")["message"]
        assert seeds.FOLDER_ID in message
        assert namespace in message
        assert f"grant-{namespace}" in message
        assert "imageName" not in refused.get("status", {})  # nothing of that folder reaches status
    calls = methods_since(cloud, seq)
    assert not MUTATING & set(calls), calls
    assert "DesktopImageService.List" not in calls  # the folder is not even listed
    delete_object(kubectl, namespace, "adopt")
    assert image_id in {image["id"] for image in cloud.images()}  # deleting the object never reaches it


def test_a_team_bringing_its_own_key_needs_no_grant_but_stays_within_the_folders_one_sets(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    team_key = cloud.http.post("/service-accounts", json={"name": "team-own"}).json()
    create_key_secret(kubectl, namespace, "team-key", team_key, tmp_path)
    fence = for_namespace(namespace, folderIds=[seeds.FOLDER_ID])  # no credentials: only a folder limit
    start_with_grants(start_operator, tmp_path, fence)
    own = {"credentialsRef": {"name": "team-key"}}
    apply(
        kubectl,
        namespace,
        desktop_image("own-key", **own),
        desktop_image("borrowing"),
        desktop_image(
            "elsewhere", folderId=OTHER_FOLDER, source={"computeImageId": seeds.COMPUTE_IMAGE_ID}, **own
        ),
    )
    wait_ready_at(kubectl, namespace, "own-key", 1)
    wait_reason(kubectl, namespace, "borrowing", r.NOT_GRANTED, timeout=30)
    wait_reason(kubectl, namespace, "elsewhere", r.FOLDER_NOT_GRANTED, timeout=30)
    principals = {entry["principal"] for entry in cloud.requests("DesktopImageService.CopyFromDesktop")}
    assert principals == {team_key["service_account_id"]}  # only the team's own key acted


def test_a_grant_may_lend_a_secret_of_the_operator_s_namespace_instead_of_its_own_credentials(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    lent = cloud.http.post("/service-accounts", json={"name": "lent"}).json()
    # Outside a cluster the operator's namespace is the one it watches: the lent Secret lives there.
    create_key_secret(kubectl, namespace, "team-lent-key", lent, tmp_path)
    start_with_grants(
        start_operator, tmp_path, for_namespace(namespace, credentials={"secretName": "team-lent-key"})
    )
    apply(kubectl, namespace, desktop_image("golden"))
    wait_ready_at(kubectl, namespace, "golden", 1)
    principals = {entry["principal"] for entry in cloud.requests("DesktopImageService.CopyFromDesktop")}
    assert principals == {lent["service_account_id"]}
    # Its deletion acts with the lent key too, not with the operator's own credentials.
    delete_object(kubectl, namespace, "golden")
    principals = {entry["principal"] for entry in cloud.requests("DesktopImageService.Delete")}
    assert principals == {lent["service_account_id"]}
