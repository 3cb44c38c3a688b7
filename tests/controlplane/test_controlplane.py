"""The local control plane serves what the operator needs: CRDs with status, watches, finalizers, RBAC
and service-account tokens. Everything goes through kubectl and the Python client, as users do."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from kubernetes import client, watch

from desktop_image_operator_dev.devenv import tools
from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from tests.support.kube import Kubectl, kubectl_json

pytestmark = pytest.mark.controlplane

GROUP, VERSION, PLURAL = "testbed.example.com", "v1", "widgets"

CRD = textwrap.dedent(
    f"""
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: {PLURAL}.{GROUP}
    spec:
      group: {GROUP}
      scope: Namespaced
      names: {{plural: {PLURAL}, singular: widget, kind: Widget}}
      versions:
        - name: {VERSION}
          served: true
          storage: true
          subresources: {{status: {{}}}}
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  properties:
                    size: {{type: integer, minimum: 1}}
                status:
                  type: object
                  properties:
                    phase: {{type: string}}
    """
)


@pytest.fixture(scope="module")
def widget_crd(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", stdin=CRD)
    kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=30s")


def widget(name: str, size: int = 1, finalizers: list[str] | None = None) -> str:
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name, **({"finalizers": finalizers} if finalizers else {})},
        "spec": {"size": size},
    }
    return json.dumps(manifest)


def readyz(kubeconfig: Path) -> str:
    """What the API server of `kubeconfig` answers on /readyz."""
    completed = subprocess.run(
        [tools.kubectl(), f"--kubeconfig={kubeconfig}", "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return completed.stdout


def test_versions_within_one_minor(kubectl: Kubectl) -> None:
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    client_minor = int(versions["clientVersion"]["minor"].rstrip("+"))
    server_minor = int(versions["serverVersion"]["minor"].rstrip("+"))
    assert abs(client_minor - server_minor) <= 1, versions
    assert versions["serverVersion"]["gitVersion"].startswith("v1.")


def test_crd_status_subresource_and_schema(widget_crd: None, kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=widget("a", size=2))

    refused = kubectl("apply", "-n", namespace, "-f", "-", stdin=widget("b", size=0), check=False)
    assert refused.returncode != 0
    assert "spec.size" in refused.stderr

    # Status goes through its own subresource; a plain patch of status is ignored.
    kubectl(
        "patch", "-n", namespace, "widget", "a", "--subresource=status", "--type=merge",
        "-p", '{"status": {"phase": "Ready"}}',
    )  # fmt: skip
    kubectl("patch", "-n", namespace, "widget", "a", "--type=merge", "-p", '{"status": {"phase": "Ignored"}}')
    got = kubectl_json(kubectl, "get", "-n", namespace, "widget", "a")
    assert got["status"] == {"phase": "Ready"}
    assert got["spec"] == {"size": 2}


def test_python_client_watch_and_status_patch(
    widget_crd: None, api_client: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api_client)
    events: list[tuple[str, str | None]] = []
    stream = watch.Watch()

    def collect() -> None:
        for event in stream.stream(
            custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, timeout_seconds=20
        ):
            obj = event["object"]
            events.append((event["type"], obj.get("status", {}).get("phase")))
            if event["type"] == "DELETED":
                stream.stop()

    watcher = threading.Thread(target=collect, daemon=True)
    watcher.start()
    time.sleep(0.5)  # let the watch start before the first change
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, json.loads(widget("w")))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "w", {"status": {"phase": "Copying"}}
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
    watcher.join(timeout=25)

    assert events == [("ADDED", None), ("MODIFIED", "Copying"), ("DELETED", "Copying")]


def test_finalizer_holds_deletion_until_removed(widget_crd: None, kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", stdin=widget("held", finalizers=["example.com/cleanup"]))
    kubectl("delete", "-n", namespace, "widget", "held", "--wait=false")

    held = kubectl_json(kubectl, "get", "-n", namespace, "widget", "held")
    assert held["metadata"]["deletionTimestamp"]

    kubectl("patch", "-n", namespace, "widget", "held", "--type=json", "-p",
            '[{"op": "remove", "path": "/metadata/finalizers"}]')  # fmt: skip
    kubectl("wait", "-n", namespace, "--for=delete", "widget/held", "--timeout=20s")


def test_rbac_and_service_account_tokens(
    kubectl: Kubectl, namespace: str, control_plane: ControlPlane
) -> None:
    kubectl("create", "serviceaccount", "-n", namespace, "robot")
    token = kubectl("create", "token", "-n", namespace, "robot", "--duration=10m").stdout.strip()
    as_robot = ["--token", token, "--server", control_plane.server, "--certificate-authority",
                str(control_plane.ca_file)]  # fmt: skip

    def robot(*args: str) -> subprocess.CompletedProcess[str]:
        # A kubeconfig-free call, so only the token identifies the caller.
        return subprocess.run(
            [tools.kubectl(), "--kubeconfig=/dev/null", *as_robot, *args],
            capture_output=True,
            text=True,
            timeout=30,
        )

    whoami = robot("auth", "whoami", "-o", "json")
    assert whoami.returncode == 0, whoami.stderr
    assert (
        json.loads(whoami.stdout)["status"]["userInfo"]["username"]
        == f"system:serviceaccount:{namespace}:robot"
    )

    denied = robot("get", "configmaps", "-n", namespace)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    kubectl("create", "role", "-n", namespace, "read-cm", "--verb=get,list", "--resource=configmaps")
    kubectl("create", "rolebinding", "-n", namespace, "robot-read-cm", "--role=read-cm",
            f"--serviceaccount={namespace}:robot")  # fmt: skip
    allowed = robot("get", "configmaps", "-n", namespace)
    assert allowed.returncode == 0, allowed.stderr


def test_controller_manager_finishes_namespace_deletion(kubectl: Kubectl) -> None:
    kubectl("create", "namespace", "doomed")
    kubectl("create", "configmap", "-n", "doomed", "data", "--from-literal=a=b")
    kubectl("delete", "namespace", "doomed", "--wait=false")
    kubectl("wait", "--for=delete", "namespace/doomed", "--timeout=60s")


def test_two_control_planes_side_by_side(control_plane: ControlPlane) -> None:
    with ControlPlane(with_controller_manager=False) as second:
        assert second.server != control_plane.server
        assert second.workdir != control_plane.workdir
        workdir = second.workdir
        assert readyz(second.kubeconfig) == "ok"
    assert not workdir.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_children_die_with_a_killed_parent() -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from desktop_image_operator_dev.devenv.controlplane import ControlPlane
        cp = ControlPlane(with_controller_manager=False)
        cp.start()
        print(" ".join(str(p.pid) for _, p in cp._processes), cp.workdir, flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    line: list[str] = []
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline().split()
        pids = [int(p) for p in line[:-1]]
        assert len(pids) == 2
        assert all(_alive(pid) for pid in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids)
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if line:
            # The parent never got to clean up: do it for it.
            shutil.rmtree(line[-1], ignore_errors=True)


def test_cli_serves_until_interrupted(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "desktop_image_operator", "controlplane", "--no-controller-manager",
         "--kubeconfig-out", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 90
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("export KUBECONFIG="):
                break
        assert lines, "the command printed nothing"
        assert lines[-1].strip() == f"export KUBECONFIG={kubeconfig}", "".join(lines)
        assert readyz(kubeconfig) == "ok"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert not kubeconfig.exists()
    finally:
        process.kill()
        process.wait(timeout=10)
