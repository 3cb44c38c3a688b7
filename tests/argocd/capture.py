"""Capture real DesktopImage objects in every state the Argo CD health check tells apart.

    .venv/bin/python -m tests.argocd.capture [--out deploy/argocd]

Starts the local control plane, the fake cloud and the operator, drives one object into each state, takes
`kubectl get -o yaml` of it (managedFields and kubectl's last-applied annotation removed: they are
bookkeeping that changes with every write and says nothing about health), and writes it to
`<out>/testdata/<state>.yaml`. Then it writes `<out>/health_test.yaml` (Argo CD's format) with the health
each state must have; its messages are spelled out here from the captured conditions, independently of the
Lua script, so the tests compare two readings of the same object. Takes under a minute once the control
plane is built; everything it starts is stopped, and its temporary directory removed, at the end (also on
failure).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from desktop_image_operator_dev.devenv.stack import Kubectl
from desktop_image_operator_dev.fakecloud import methods, seeds
from tests.support.kube import condition
from tests.support.manifests import desktop_image
from tests.support.processes import FakeCloudProcess, OperatorProcess, wait_until

log = logging.getLogger("capture")

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "clouddesktop.yc.io_desktopimages.yaml"
DEFAULT_OUT = REPO / "deploy" / "argocd"
NAMESPACE = "desktop-images"
PAUSED_ANNOTATION = "clouddesktop.yc.io/paused"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MISSING_DESKTOP_ID = "e3vdesktop9999999999"
LONG = 3600.0  # seconds an operation takes when it must still be running at capture time
WAIT = 120.0  # bound of every wait for a state
Message = Callable[[dict[str, Any]], str]


# --- the expected health messages, spelled out from the conditions ---------------------------------------


def describe(cond: dict[str, Any]) -> str:
    return ": ".join(part for part in (cond.get("reason", ""), cond.get("message", "")) if part)


def explain(obj: dict[str, Any]) -> str:
    """Ready's "Reason: message", with Synced's in parentheses when Synced failed for another reason."""
    ready, synced = condition(obj, "Ready"), condition(obj, "Synced")
    text = describe(ready)
    if synced.get("status") == "False" and synced.get("reason") != ready.get("reason"):
        text += f" (Synced: {describe(synced)})"
    return text


def paused(obj: dict[str, Any]) -> str:
    return describe(condition(obj, "Synced"))


def generation_behind(obj: dict[str, Any]) -> str:
    generation, observed = obj["metadata"]["generation"], obj["status"]["observedGeneration"]
    return (
        f"Waiting for the operator to observe generation {generation} (observed {observed}); "
        f"last reported {explain(obj)}"
    )


def pending_deletion(obj: dict[str, Any]) -> str:
    return (
        f"Pending deletion: waiting for the operator to release the cloud image; last reported {explain(obj)}"
    )


def no_status(obj: dict[str, Any]) -> str:
    return "Waiting for the operator to report status"


@dataclass(frozen=True)
class State:
    name: str  # the object's name and the testdata file's
    what: str  # how the object got there (a comment in the file)
    health: str
    message: Message


# --- driving the local stack --------------------------------------------------------------------------------


class Stack:
    def __init__(self, kubeconfig: Path, cloud: FakeCloudProcess, workdir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl = Kubectl(kubeconfig)
        self.cloud = cloud
        self.workdir = workdir
        self.operator: OperatorProcess | None = None
        self.captured: dict[str, tuple[State, dict[str, Any]]] = {}

    def start_operator(self) -> None:
        self.operator = OperatorProcess(
            self.workdir,
            self.kubeconfig,
            self.cloud,
            namespace=NAMESPACE,
            # Two tries per cloud call: a failing cloud shows on the object in seconds, not minutes of
            # backoff (429s also pause every call of the operator, with a growing cool-down).
            extra_env={"DESKTOP_IMAGE_OPERATOR_MAX_ATTEMPTS": "2"},
        )

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def create(self, object_name: str, /, **spec: Any) -> None:
        manifest = desktop_image(object_name)
        manifest["spec"].update(spec)  # spec.name too, which desktop_image() cannot take as a keyword
        manifest["metadata"]["namespace"] = NAMESPACE
        # `create`, not `apply`: no last-applied annotation, as an object synced by Argo CD has none.
        self.kubectl("create", "-f", "-", stdin=json.dumps(manifest))

    def get(self, name: str) -> dict[str, Any]:
        return dict(self.kubectl.json("get", "-n", NAMESPACE, "desktopimage", name))

    def wait_reason(self, name: str, kind: str, reason: str, *, timeout: float = WAIT) -> None:
        def reached() -> bool:
            return condition(self.get(name), kind).get("reason") == reason

        log.info("waiting for %s: %s %s", name, kind, reason)
        wait_until(reached, timeout=timeout, interval=0.3, what=f"{name} {kind} reason {reason}")

    def capture(self, state: State) -> None:
        raw = self.kubectl("get", "-n", NAMESPACE, "desktopimage", state.name, "-o", "yaml")
        obj = strip(yaml.safe_load(raw))
        self.captured[state.name] = (state, obj)
        log.info("captured %s (%s)", state.name, state.health)

    @contextlib.contextmanager
    def fault(self, **rule: Any) -> Iterator[None]:
        self.cloud.fault(**rule)
        try:
            yield
        finally:
            self.cloud.http.delete("/faults").raise_for_status()


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata", {})
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations") or {}
    annotations.pop(LAST_APPLIED, None)
    if not annotations:
        metadata.pop("annotations", None)
    return obj


def drive(stack: Stack) -> None:
    cloud = stack.cloud
    # Room for every object at once: the quota state sets its own limit.
    cloud.config(imageQuota=1000, copySeconds=1, operationSeconds=0.5)
    stack.start_operator()

    # Objects that first need to be Ready; each is taken to another state below.
    later = ("name-owner", "image-gone", "paused", "deleting", "delete-pending", "update-pending")
    stack.create("ready", description="Analysts' base image", labels={"team": "analytics"})
    stack.create("name-owner", name="shared-name")
    for name in later[1:]:
        stack.create(name)
    for name in ("ready", *later):
        stack.wait_reason(name, "Ready", "Available")
    stack.capture(State("ready", "copied and ACTIVE", "Healthy", explain))

    # Copies that outlast the capture. First, while nothing else polls an operation, two whose every poll
    # the cloud fails; then one with nothing wrong.
    cloud.config(copySeconds=LONG)
    for name, code, reason, what in (
        ("copying-throttled", "RESOURCE_EXHAUSTED", "Throttled", "copying; the cloud throttles the polls"),
        ("copying-unavailable", "UNAVAILABLE", "CloudUnavailable", "copying; the cloud is unavailable"),
    ):
        with stack.fault(method=methods.OPERATION_GET, code=code):
            stack.create(name)
            stack.wait_reason(name, "Synced", reason)
            stack.wait_reason(name, "Ready", "Copying")
            stack.capture(State(name, what, "Progressing", explain))
    stack.create("copying")
    stack.wait_reason("copying", "Ready", "Copying")
    stack.wait_reason("copying", "Synced", "ReconcileSuccess")
    stack.capture(State("copying", "a copy running in the cloud", "Progressing", explain))
    cloud.config(copySeconds=1)

    # The next copy's operation fails in the cloud.
    with stack.fault(
        method=methods.COPY_FROM_DESKTOP, failOperation=1, code="INTERNAL", message="Disk snapshot failed"
    ):
        stack.create("copy-failed")
        stack.wait_reason("copy-failed", "Ready", "CopyFailed")
    stack.capture(State("copy-failed", "the copy operation ended with an error", "Degraded", explain))

    stack.create("name-conflict", name="shared-name")
    stack.wait_reason("name-conflict", "Ready", "NameConflict")
    stack.capture(State("name-conflict", "spec.name taken by another object's image", "Degraded", explain))

    stack.create("credentials-invalid", credentialsRef={"name": "missing-secret", "key": "key.json"})
    stack.wait_reason("credentials-invalid", "Ready", "CredentialsInvalid")
    stack.capture(State("credentials-invalid", "credentialsRef names a missing Secret", "Degraded", explain))

    stack.create("source-not-found", source={"desktopId": MISSING_DESKTOP_ID})
    stack.wait_reason("source-not-found", "Ready", "SourceNotFound")
    stack.capture(State("source-not-found", "the source desktop does not exist", "Degraded", explain))

    stack.create("source-not-ready", source={"desktopId": seeds.RUNNING_DESKTOP_ID})
    stack.wait_reason("source-not-ready", "Ready", "SourceNotReady")
    stack.capture(State("source-not-ready", "the source desktop is running", "Degraded", explain))

    cloud.config(imageQuota=0)
    stack.create("quota-exceeded")
    stack.wait_reason("quota-exceeded", "Ready", "QuotaExceeded")
    stack.capture(State("quota-exceeded", "the cloud's image quota is used up", "Degraded", explain))
    cloud.config(imageQuota=1000)

    stack.kubectl("annotate", "-n", NAMESPACE, "desktopimage", "paused", f"{PAUSED_ANNOTATION}=true")
    stack.wait_reason("paused", "Synced", "ReconcilePaused")
    stack.capture(State("paused", "a Ready object given the paused annotation", "Suspended", paused))

    # The image is deleted behind the operator's back; annotating the object makes it look again at once
    # (a restart would not: settled objects are first looked at some time within the resync period).
    image_id = stack.get("image-gone")["status"]["imageId"]
    cloud.http.delete(f"/images/{image_id}").raise_for_status()
    stack.kubectl("annotate", "-n", NAMESPACE, "desktopimage", "image-gone", "example.com/look-again=1")
    stack.wait_reason("image-gone", "Ready", "ImageNotFound")
    stack.capture(
        State("image-gone", "its cloud image was deleted outside the operator", "Degraded", explain)
    )

    # Transient failures before any copy started: Ready itself carries them.
    with stack.fault(method=methods.DESKTOP_GET, code="RESOURCE_EXHAUSTED"):
        stack.create("throttled")
        stack.wait_reason("throttled", "Ready", "Throttled")
        stack.capture(State("throttled", "the cloud throttles every call", "Progressing", explain))
    with stack.fault(method=methods.DESKTOP_GET, code="UNAVAILABLE"):
        stack.create("cloud-unavailable")
        stack.wait_reason("cloud-unavailable", "Ready", "CloudUnavailable")
        stack.capture(State("cloud-unavailable", "the cloud is unavailable", "Progressing", explain))

    cloud.config(operationSeconds=LONG)
    stack.kubectl("delete", "-n", NAMESPACE, "desktopimage", "deleting", "--wait=false")
    stack.wait_reason("deleting", "Ready", "Deleting")
    stack.capture(State("deleting", "deleted; the cloud image's deletion running", "Progressing", explain))

    # The rest happens while no operator runs.
    stack.stop_operator()
    patch = {"spec": {"description": "A new description the operator has not seen"}}
    stack.kubectl(
        "patch", "-n", NAMESPACE, "desktopimage", "update-pending", "--type=merge", "-p", json.dumps(patch)
    )
    stack.capture(
        State(
            "update-pending", "spec changed while the operator was stopped", "Progressing", generation_behind
        )
    )
    stack.kubectl("delete", "-n", NAMESPACE, "desktopimage", "delete-pending", "--wait=false")
    stack.capture(
        State("delete-pending", "deleted while the operator was stopped", "Progressing", pending_deletion)
    )
    stack.create("new")
    stack.capture(State("new", "created while the operator was stopped: no status", "Progressing", no_status))


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (kopf's last-handled JSON ends in a newline) as literal blocks, like kubectl."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


def write(stack: Stack, out: Path) -> None:
    testdata = out / "testdata"
    shutil.rmtree(testdata, ignore_errors=True)
    testdata.mkdir(parents=True)
    tests = []
    for name, (state, obj) in stack.captured.items():
        header = f"# {state.what}; captured from the local stack by tests/argocd/capture.py\n"
        body = dump(obj)
        (testdata / f"{name}.yaml").write_text(header + body)
        tests.append(
            {
                "healthStatus": {"status": state.health, "message": state.message(obj)},
                "inputPath": f"testdata/{name}.yaml",
            }
        )
    header = (
        "# Health of each captured DesktopImage (Argo CD's health check test format).\n"
        "# Written by tests/argocd/capture.py; tests/argocd/test_health.py runs each case in gopher-lua.\n"
    )
    body = dump({"tests": tests})
    (out / "health_test.yaml").write_text(header + body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.argocd.capture", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where testdata/ and health_test.yaml go"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="argocd-capture-"))
    try:
        with contextlib.ExitStack() as cleanup:
            log.info("starting the local control plane")
            control_plane = cleanup.enter_context(ControlPlane())
            cloud = FakeCloudProcess(workdir)
            cleanup.callback(cloud.stop)
            stack = Stack(control_plane.kubeconfig, cloud, workdir)
            cleanup.callback(stack.stop_operator)
            stack.kubectl("apply", "-f", str(CRD_FILE))
            stack.kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/desktopimages.clouddesktop.yc.io",
                timeout=70,
            )
            stack.kubectl("create", "namespace", NAMESPACE)
            try:
                drive(stack)
            except BaseException:
                if stack.operator is not None:
                    sys.stderr.write(stack.operator.logs()[-20000:])
                raise
            write(stack, args.out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log.info(
        "captured %d states in %.0f s into %s", len(stack.captured), time.monotonic() - started, args.out
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
