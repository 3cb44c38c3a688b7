"""What the operator loads: the key-signing libraries only once an authorized key is used.

JWT and cryptography cost about 9 MB of resident memory; an operator whose credentials are tokens (static,
or from the metadata service) never needs them. Whether they are loaded is read from outside, in the
process's memory map, where cryptography's compiled extension appears once it is imported.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.kube import Kubectl, StartOperator, create_key_secret, wait_ready
from tests.support.manifests import desktop_image, from_compute_image, text
from tests.support.processes import FakeCloudProcess

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]


def loads_cryptography(pid: int) -> bool:
    return "/cryptography/" in Path(f"/proc/{pid}/maps").read_text()


def test_key_signing_is_loaded_only_when_an_object_uses_an_authorized_key(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    token = cloud.http.post("/tokens", json={}).json()["iamToken"]
    operator = start_operator(
        extra_env={"DESKTOP_IMAGE_OPERATOR_CREDENTIALS_FILE": None, "DESKTOP_IMAGE_OPERATOR_IAM_TOKEN": token}
    )
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(desktop_image("by-token")))
    wait_ready(kubectl, namespace, "by-token")
    assert not loads_cryptography(operator.pid), "loaded with no authorized key in use"

    key = cloud.http.post("/service-accounts", json={"name": "team-a"}).json()
    create_key_secret(kubectl, namespace, "team-a-key", key, tmp_path)
    keyed = from_compute_image("by-key", credentialsRef={"name": "team-a-key"})
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(keyed))
    wait_ready(kubectl, namespace, "by-key")
    assert loads_cryptography(operator.pid)
    principals = {entry["principal"] for entry in cloud.requests("DesktopImageService.Copy")}
    assert key["service_account_id"] in principals  # the key signed its object's calls
