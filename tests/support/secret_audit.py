"""A local control plane whose audit log records every read and watch of a Secret, and counts of them.

The control plane audits nothing, or (for benchmarks) writes only; this one's policy, in place of that,
logs Secret `get` and `watch` requests at the Metadata level (who, which Secret, never its data) and
nothing else, so a test counts what the API server served rather than what a client says it asked for.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from desktop_image_operator_dev.devenv.controlplane import ControlPlane

# The operator's own client names itself so (kopf's is `kopf/...`, kubectl's `kubectl/...`).
OPERATOR_AGENT = "desktop-image-operator/"


class SecretAuditingControlPlane(ControlPlane):
    """The control plane, with Secret reads and watches in `audit_log` (JSON lines)."""

    def _audit_flags(self) -> list[str]:
        policy = self.workdir / "secret-audit-policy.yaml"
        secrets = [{"group": "", "resources": ["secrets"]}]
        rules = [
            # A get is logged when answered; a watch when it starts streaming (it may never complete).
            {"level": "Metadata", "verbs": ["get"], "resources": secrets, "omitStages": ["RequestReceived"]},
            {
                "level": "Metadata",
                "verbs": ["watch"],
                "resources": secrets,
                "omitStages": ["RequestReceived", "ResponseComplete"],
            },
            {"level": "None"},
        ]
        policy.write_text(yaml.safe_dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": rules}))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
        ]


@dataclass(frozen=True)
class SecretRequests:
    """The operator's Secret requests in a namespace, as the API server logged them."""

    reads: Counter[str]  # GETs by Secret name
    watches: int  # watch requests started (a field selector names the Secret, not the path)


def secret_requests(audit_log: Path, namespace: str, agent: str = OPERATOR_AGENT) -> SecretRequests:
    reads: Counter[str] = Counter()
    watches = 0
    for event in _events(audit_log):
        target = event.get("objectRef") or {}
        if not str(event.get("userAgent", "")).startswith(agent) or target.get("namespace") != namespace:
            continue
        if event.get("verb") == "get" and event.get("stage") == "ResponseComplete":
            reads[str(target.get("name"))] += 1
        elif event.get("verb") == "watch" and event.get("stage") == "ResponseStarted":
            watches += 1
    return SecretRequests(reads, watches)


def _events(audit_log: Path) -> list[dict[str, Any]]:
    if not audit_log.exists():
        return []
    # The last line may be half written: only complete lines count.
    lines = audit_log.read_text().split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]
