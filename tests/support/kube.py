"""kubectl as a user runs it, and what tests read and wait for on DesktopImages through it."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from desktop_image_operator_dev.devenv import tools
from desktop_image_operator_dev.helm import CRD_FILE
from tests.support.manifests import text
from tests.support.processes import OperatorProcess, wait_until

__all__ = ["CRD_FILE"]

# kubectl(*args, stdin=None, check=True, timeout=60) -> CompletedProcess (the `kubectl` fixture).
Kubectl = Callable[..., subprocess.CompletedProcess[str]]
# make_namespace(prefix="test", labels=None) -> a fresh namespace's name (the `make_namespace` fixture).
MakeNamespace = Callable[..., str]
# start_operator(**options) -> a started operator process (the `start_operator` fixture).
StartOperator = Callable[..., OperatorProcess]

# How long a test waits for the operator to act on one object.
WAIT = 30


def kubectl_for(kubeconfig: Path) -> Kubectl:
    """Run kubectl against `kubeconfig`; `check=False` to inspect failures."""

    def run(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 60) -> Any:
        completed = subprocess.run(
            [tools.kubectl(), f"--kubeconfig={kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and completed.returncode != 0:
            command = " ".join(args)
            output = completed.stderr + completed.stdout
            raise AssertionError(f"kubectl {command} failed ({completed.returncode}):\n{output}")
        return completed

    return run


def kubectl_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def unique_name(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- reading objects ----------------------------------------------------------------------------------------


def get(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return dict(kubectl_json(kubectl, "get", "-n", namespace, "desktopimage", name))


def condition(obj: dict[str, Any], kind: str = "Ready") -> dict[str, Any]:
    """The object's status condition of this type; empty when it has none (yet)."""
    conditions = obj.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c.get("type") == kind), {})


def is_ready_at(obj: dict[str, Any], generation: int) -> bool:
    ready = condition(obj)
    return (
        ready.get("status") == "True"
        and ready.get("observedGeneration") == generation
        and obj.get("status", {}).get("observedGeneration") == generation
    )


def acted_on(obj: dict[str, Any], generation: int) -> bool:
    """Whether the operator has written a condition for this generation (whatever it says)."""
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c.get("observedGeneration") == generation for c in conditions)


def event_reasons(kubectl: Kubectl, namespace: str, name: str) -> Counter[str]:
    """How many events of each reason the object got (repeats folded into one event count as many)."""
    selector = f"involvedObject.name={name}"
    events = kubectl_json(kubectl, "get", "events", "-n", namespace, "--field-selector", selector)
    reasons: Counter[str] = Counter()
    for event in events["items"]:
        reasons[event["reason"]] += event.get("count") or 1
    return reasons


# -- driving objects ----------------------------------------------------------------------------------------


def apply(kubectl: Kubectl, namespace: str, *manifests: dict[str, Any]) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=text(*manifests))


def patch_spec(kubectl: Kubectl, namespace: str, name: str, /, **spec: Any) -> int:
    """Merge-patch the spec (spec.name too: the object is named positionally); its new generation."""
    patch = json.dumps({"spec": spec})
    kubectl("patch", "-n", namespace, "desktopimage", name, "--type=merge", "-p", patch)
    return int(get(kubectl, namespace, name)["metadata"]["generation"])


def delete_object(kubectl: Kubectl, namespace: str, name: str) -> None:
    """`kubectl delete`, which returns only once the object is gone (or fails after WAIT seconds)."""
    kubectl("delete", "-n", namespace, "desktopimage", name, f"--timeout={WAIT}s", timeout=WAIT + 10)


def create_key_secret(kubectl: Kubectl, namespace: str, name: str, key: dict[str, Any], tmp: Path) -> None:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(key))
    kubectl("create", "secret", "generic", "-n", namespace, name, f"--from-file=key.json={path}")
    path.unlink()


# -- waiting ------------------------------------------------------------------------------------------------


def wait_ready(kubectl: Kubectl, namespace: str, *names: str, timeout: int = 60) -> None:
    kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"--timeout={timeout}s",
        *[f"desktopimage/{n}" for n in names], timeout=timeout + 10,
    )  # fmt: skip


def wait_reason(
    kubectl: Kubectl, namespace: str, name: str, reason: str, timeout: float = 60
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj = get(kubectl, namespace, name)
        return obj if condition(obj).get("reason") == reason else None

    result: dict[str, Any] = wait_until(reached, timeout=timeout, what=f"{name} Ready reason {reason}")
    return result


def wait_ready_at(kubectl: Kubectl, namespace: str, name: str, generation: int) -> dict[str, Any]:
    """The object once Ready=True for exactly this generation (an older Ready does not count)."""

    def reached() -> dict[str, Any] | None:
        obj = get(kubectl, namespace, name)
        return obj if is_ready_at(obj, generation) else None

    obj: dict[str, Any] = wait_until(reached, timeout=WAIT, what=f"{name} Ready at generation {generation}")
    return obj
