"""What users of cloud operators ask for most, end to end: labels set by others are left alone, an object
sets its own resync period, and the operator applies its defaults where a spec is silent."""

from __future__ import annotations

import time
from typing import Any

import pytest

from desktop_image_operator.api.constants import OWNER_UID_LABEL
from desktop_image_operator.commands.run import ENV_PREFIX
from desktop_image_operator.reconciler.annotations import RESYNC_SECONDS
from tests.support.kube import Kubectl, StartOperator, apply, delete_object, wait_ready_at
from tests.support.manifests import desktop_image
from tests.support.processes import FakeCloudProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]

FAST_RESYNC = {f"{ENV_PREFIX}RESYNC_SECONDS": "3", f"{ENV_PREFIX}MIN_RESYNC_SECONDS": "1"}


def image_of(cloud: FakeCloudProcess, obj: dict[str, Any]) -> dict[str, Any]:
    [image] = [
        i for i in cloud.images() if i.get("labels", {}).get(OWNER_UID_LABEL) == obj["metadata"]["uid"]
    ]
    return image


def relabel(cloud: FakeCloudProcess, image_id: str, labels: dict[str, str]) -> None:
    """Change the image's labels behind the operator's back, as someone in the console would."""
    cloud.http.post(f"/images/{image_id}", json={"labels": labels}).raise_for_status()


def test_a_console_label_survives_a_resync_while_a_changed_label_of_the_spec_is_restored(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator(extra_env=FAST_RESYNC)
    apply(kubectl, namespace, desktop_image("golden", labels={"team": "a"}))
    image = image_of(cloud, wait_ready_at(kubectl, namespace, "golden", 1))
    relabel(cloud, image["id"], {**image["labels"], "team": "b", "cost-center": "42"})

    restored = wait_until(
        lambda: (
            (found := image_of(cloud, wait_ready_at(kubectl, namespace, "golden", 1)))["labels"]["team"]
            == "a"
            and found
        ),
        timeout=30,
        what="the spec's label restored",
    )
    assert restored["labels"]["cost-center"] == "42"  # someone else's label: left alone
    time.sleep(4)  # one more resync: still left alone, no Update war
    assert image_of(cloud, wait_ready_at(kubectl, namespace, "golden", 1))["labels"]["cost-center"] == "42"
    updates = cloud.requests("DesktopImageService.Update")
    assert len(updates) == 1, updates


def test_an_object_s_resync_annotation_is_honoured_and_others_keep_the_operator_s_period(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator(extra_env={f"{ENV_PREFIX}MIN_RESYNC_SECONDS": "1"})  # the default period: 600 s
    often = desktop_image("often")
    often["metadata"]["annotations"] = {RESYNC_SECONDS: "2"}
    apply(kubectl, namespace, often, desktop_image("seldom"))
    for name in ("often", "seldom"):
        wait_ready_at(kubectl, namespace, name, 1)
    seq = max(entry["seq"] for entry in cloud.requests())
    time.sleep(9)
    gets = cloud.requests("DesktopImageService.Get", after=seq)
    # Only the annotated object was looked at again: about every 2 s (jitter lengthens it up to 10 %).
    assert 3 <= len(gets) <= 6, gets


def test_the_operator_wide_defaults_apply_where_the_spec_leaves_a_policy_unset(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str
) -> None:
    start_operator(extra_env={f"{ENV_PREFIX}DEFAULT_DELETION_POLICY": "Retain"})
    apply(kubectl, namespace, desktop_image("kept"), desktop_image("told", deletionPolicy="Delete"))
    kept = image_of(cloud, wait_ready_at(kubectl, namespace, "kept", 1))
    told = image_of(cloud, wait_ready_at(kubectl, namespace, "told", 1))
    delete_object(kubectl, namespace, "kept")
    delete_object(kubectl, namespace, "told")
    remaining = {image["id"] for image in cloud.images()}
    assert kept["id"] in remaining  # the operator's default: Retain
    assert told["id"] not in remaining  # the spec's own word wins
