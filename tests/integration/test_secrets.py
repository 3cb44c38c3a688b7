"""Key material and tokens never reach logs, events, status or metrics, bad credentials say so plainly, and
each credentials Secret in use is read once however many objects use Secrets and however often."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from tests.support.kube import (
    Kubectl,
    StartOperator,
    apply,
    condition,
    create_key_secret,
    get,
    wait_ready,
    wait_reason,
)
from tests.support.manifests import desktop_image, from_compute_image, text
from tests.support.processes import FakeCloudProcess, wait_until
from tests.support.secret_audit import secret_requests

pytestmark = [pytest.mark.controlplane, pytest.mark.slow]


def unregistered_key(like: dict[str, Any]) -> dict[str, Any]:
    """An authorized key in the right format whose public half the cloud has never seen."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {**like, "private_key": pem}


def secret_fragments(key: dict[str, Any]) -> list[str]:
    """Pieces of a key that must never be seen: lines of the private key's body."""
    body = [
        line for line in key["private_key"].splitlines() if line and not line.startswith(("-----", "PLEASE"))
    ]
    return body[1:4]


def test_secrets_stay_secret_and_bad_credentials_are_clear(
    start_operator: StartOperator, cloud: FakeCloudProcess, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    token = cloud.http.post("/tokens", json={}).json()["iamToken"]
    team_key = cloud.http.post("/service-accounts", json={"name": "team-a"}).json()
    stranger = unregistered_key(team_key)
    create_key_secret(kubectl, namespace, "team-a-key", team_key, tmp_path)
    create_key_secret(kubectl, namespace, "stranger-key", stranger, tmp_path)

    operator = start_operator(
        extra_env={
            "DESKTOP_IMAGE_OPERATOR_CREDENTIALS_FILE": None,
            "DESKTOP_IMAGE_OPERATOR_IAM_TOKEN": token,  # default credentials: a plain token
            "DESKTOP_IMAGE_OPERATOR_LOG_LEVEL": "DEBUG",
            "DESKTOP_IMAGE_OPERATOR_LOG_FORMAT": "json",
        }
    )
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(
        desktop_image("default-token"),
        from_compute_image("team-key", credentialsRef={"name": "team-a-key"}),
        from_compute_image("stranger", credentialsRef={"name": "stranger-key"}),
        from_compute_image("no-secret", credentialsRef={"name": "missing"}),
    ))  # fmt: skip
    wait_ready(kubectl, namespace, "default-token", "team-key")

    stranger_obj = wait_reason(kubectl, namespace, "stranger", "CredentialsInvalid")
    assert "UNAUTHENTICATED" in condition(stranger_obj, "Ready")["message"]
    missing = wait_reason(kubectl, namespace, "no-secret", "CredentialsInvalid")
    assert f"Secret {namespace}/missing does not exist" in condition(missing, "Ready")["message"]

    # The team's key acted for its object: the cloud saw its service account.
    principals = {entry["principal"] for entry in cloud.requests("DesktopImageService.Copy")}
    assert team_key["service_account_id"] in principals

    seen = {
        "logs": operator.logs(),
        "metrics": operator.metrics(),
        "events": kubectl("get", "events", "-n", namespace, "-o", "json").stdout,
        "status": json.dumps(
            [
                get(kubectl, namespace, n).get("status")
                for n in ("default-token", "team-key", "stranger", "no-secret")
            ]
        ),
    }
    assert '"level"' in seen["logs"] or '"message"' in seen["logs"], "JSON logs expected"
    secrets = [token, *secret_fragments(team_key), *secret_fragments(stranger)]
    for where, content in seen.items():
        for secret in secrets:
            assert secret not in content, f"a secret leaked into {where}"


# More Secrets than the operator has threads or connections for its other Kubernetes calls (8).
SECRETS_IN_USE = 12
DRIFT_CHECKS = 3  # reconciles of each object after it was Ready, each using its Secret


def test_twelve_secrets_in_use_are_each_read_once_over_several_reconciles(
    start_operator: StartOperator,
    cloud: FakeCloudProcess,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
    control_plane: ControlPlane,
) -> None:
    cloud.config(imageQuota=1000, imageSizeQuota=1 << 50)
    accounts = []
    for number in range(SECRETS_IN_USE):
        key = cloud.http.post("/service-accounts", json={"name": f"team-{number}"}).json()
        create_key_secret(kubectl, namespace, f"key-{number}", key, tmp_path)
        accounts.append(key["service_account_id"])
    start_operator(extra_env={"DESKTOP_IMAGE_OPERATOR_RESYNC_SECONDS": "2"})  # a drift check every 2-2.2 s
    names = [f"image-{number}" for number in range(SECRETS_IN_USE)]
    refs = [{"name": f"key-{number}"} for number in range(SECRETS_IN_USE)]
    apply(
        kubectl,
        namespace,
        *[from_compute_image(n, credentialsRef=r) for n, r in zip(names, refs, strict=True)],
    )
    wait_ready(kubectl, namespace, *names, timeout=90)
    ready_seq = max(entry["seq"] for entry in cloud.requests())

    def checked_often_enough() -> bool:
        gets = cloud.requests("DesktopImageService.Get", after=ready_seq)
        return all(sum(g["principal"] == account for g in gets) >= DRIFT_CHECKS for account in accounts)

    wait_until(checked_often_enough, timeout=60, what=f"{DRIFT_CHECKS} drift checks of every image")

    # What the API server served the operator's own client, from its audit log.
    served = secret_requests(control_plane.audit_log, namespace)
    assert served.reads == {f"key-{number}": 1 for number in range(SECRETS_IN_USE)}
    assert served.watches >= SECRETS_IN_USE
