"""The README's journeys as tests: "Install it on a real cluster" from its variables to a Ready DesktopImage
copied in the cloud, and "Uninstalling" back to a cluster with nothing of the operator's left.

Each shell block the README marks with `<!-- journey: NAME [ROLE] -->` runs in order, as written, with bash
(`set -euo pipefail`) in a directory of its own, the repository's kubectl, pinned Helm and command line first
on PATH. A block with a role needs something the local stack cannot give, and the test stands in for it:

- `set-up`: the variables, which the test sets (the fake cloud's folder and desktop, the checkout's chart);
- `cloud`: `yc` against the real cloud: the fake cloud's authorized key, and a listing of its images;
- `registry`: pushing the image and the chart: the checkout's chart stands in for the pushed one;
- `nodes`: the rollout of the chart's pod, which needs a kubelet: the operator started as the pod would
  run it (the rendered Deployment's arguments and environment, its ServiceAccount's token, its Secret
  volume), pointed at the fake cloud, until the pod's readiness probe would pass.

The journeys run on a control plane of their own: the uninstall journey deletes every DesktopImage of the
cluster and the CRD itself, which would pull the ground from under the rest of the session.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from desktop_image_operator.api.constants import (
    OWNER_CLUSTER_LABEL,
    OWNER_NAME_LABEL,
    OWNER_NAMESPACE_LABEL,
    OWNER_UID_LABEL,
)
from desktop_image_operator.commands.run import ENV_PREFIX
from desktop_image_operator.reconciler.annotations import CREDENTIALS_FINALIZER, FINALIZER
from desktop_image_operator_dev.devenv import processes
from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from desktop_image_operator_dev.devenv.stack import (
    LOOPBACK,
    StackError,
    child_environment,
    operator_wiring,
)
from desktop_image_operator_dev.fakecloud import methods, seeds
from desktop_image_operator_dev.helm import CHART, Helm
from tests.delivery.support import README, ProcessUnderTest, token_kubeconfig
from tests.support.kube import Kubectl, condition, kubectl_for
from tests.support.processes import FakeCloudProcess

# The variables the README's set-up block exports, and so the only ones its other blocks may use.
SET_UP_VARIABLES = frozenset({"FOLDER_ID", "DESKTOP_ID", "REGISTRY", "VERSION", "CHART"})
ROLES = frozenset({"", "set-up", "cloud", "registry", "nodes"})
MARKER = re.compile(r"^<!-- journey: (?P<journey>[a-z]+)(?: (?P<role>[a-z-]+))? -->$", re.MULTILINE)
SH_BLOCK = re.compile(r"```sh\n(?P<script>.*?)^```$", re.DOTALL | re.MULTILINE)
# The block whose success ends the install journey: the README's own wait for Ready.
VERIFY = re.compile(
    r"^kubectl -n (?P<namespace>\S+) wait desktopimage/(?P<name>\S+) --for=condition=Ready", re.MULTILINE
)
# An address no one can push to or pull from: the image is never pulled here (no kubelet).
REGISTRY = "registry.invalid/local"
# Each block's bound. The README's own waits are minutes long, for a real cloud; the fake copies in a second.
BLOCK_TIMEOUT = 120.0
OPERATOR_READY_TIMEOUT = 60.0
# Where `desktop-image-operator`, kubectl and the pytest running this come from: the repository's environment.
VENV_BIN = Path(sys.executable).parent
# Lines of the operator's log that mean the chart's RBAC refused it something.
PERMISSION_TROUBLE = ("Forbidden", "HTTP 403", "Not enough permissions", "may not read", "may not watch")
# The name the pod's downward API would give the operator (the Lease holder, its events' instance).
POD_NAME = "desktop-image-operator-journey"


# -- the README's journeys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    journey: str
    role: str  # "" for a block run as written
    script: str
    line: int  # of its marker in the README, for messages

    def __str__(self) -> str:
        role = f" {self.role}" if self.role else ""
        return f"README.md:{self.line} (journey: {self.journey}{role})"


def readme_blocks() -> list[Block]:
    """Every marked block of the README, in order; a marker without a shell block right after it fails."""
    text = README.read_text()
    blocks = []
    for marker in MARKER.finditer(text):
        line = text.count("\n", 0, marker.start()) + 1
        following = SH_BLOCK.match(text, marker.end() + 1)
        assert following, f"README.md:{line}: no ```sh block right after {marker[0]}"
        blocks.append(Block(marker["journey"], marker["role"] or "", following["script"], line))
    assert text.count("<!-- journey") == len(blocks), "a journey marker not of the form MARKER reads"
    return blocks


def journey(name: str) -> list[Block]:
    blocks = [block for block in readme_blocks() if block.journey == name]
    assert blocks, f"the README marks no block of the {name} journey"
    return blocks


def exported(block: Block) -> dict[str, str]:
    """The variables a set-up block exports, with the values it shows; it may do nothing else, since the
    test sets the variables in its place."""
    variables = {}
    for line in block.script.splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            found = re.fullmatch(r"export ([A-Z_][A-Z0-9_]*)=(.+)", command)
            assert found, f"{block}: a line that is not `export NAME=value`: {line}"
            variables[found[1]] = found[2]
    return variables


def chart_version() -> str:
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert isinstance(version, str)
    return version


def single(pattern: str, block: Block) -> re.Match[str]:
    """The one match of `pattern` in the block: the stand-in for it relies on what it names."""
    found = list(re.finditer(pattern, block.script, re.MULTILINE))
    assert len(found) == 1, f"{block}: expected one match of {pattern!r} in:\n{block.script}"
    return found[0]


# -- running blocks ------------------------------------------------------------------------------------------


@dataclass
class Shell:
    """bash as a user runs the README's blocks: in one directory, with the set-up variables exported."""

    cwd: Path
    env: dict[str, str]

    def __call__(self, block: Block, *, timeout: float = BLOCK_TIMEOUT) -> str:
        # A session of its own, so that a block outlasting its bound is killed with every command it started.
        process = subprocess.Popen(
            ["bash", "-c", f"set -euo pipefail\n{block.script}"],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            raise AssertionError(f"{block} did not finish within {timeout:.0f} s:\n{output}") from None
        assert process.returncode == 0, f"{block} failed ({process.returncode}):\n{block.script}\n{output}"
        return output


def shell_environment(helm: Helm, variables: dict[str, str], home: Path) -> dict[str, str]:
    """Our environment for the blocks: the repository's tools first on PATH, the local stack's admin
    kubeconfig, Helm's and kubectl's state in `home`, and none of our own operator settings (the
    command line would read them)."""
    env = {
        name: value
        for name, value in child_environment().items()
        if not name.startswith(ENV_PREFIX) and name != "BASH_ENV"
    }
    path = [str(VENV_BIN), str(helm.binary.parent), env.get("PATH", "")]
    env.update({name: value for name, value in helm.env.items() if name.startswith("HELM_")})
    env.update(KUBECONFIG=helm.env["KUBECONFIG"])
    env.update(PATH=os.pathsep.join(path), KUBECACHEDIR=str(home / "kube-cache"), **variables)
    return env


# -- the stand-ins -------------------------------------------------------------------------------------------


def stand_in_for_cloud(block: Block, cwd: Path, cloud: FakeCloudProcess) -> list[dict[str, Any]] | None:
    """What a `yc` block does, done in the fake cloud: the key it creates is the fake's own service
    account's; the images it lists are the fake's (returned)."""
    if "yc iam key create" in block.script:
        account = single(r"yc iam service-account create --name (\S+)", block)
        assert account[1] == seeds.SERVICE_ACCOUNT_NAME, "the fake's service account stands in for it"
        key_file = cwd / single(r"yc iam key create .*--output (\S+)", block)[1]
        key_file.write_text(cloud.key_file.read_text())
        return None
    single(r'^yc desktops image list --folder-id "\$FOLDER_ID"', block)
    response = cloud.http.get("/images", params={"folderId": seeds.FOLDER_ID})
    response.raise_for_status()
    return list(response.json()["images"])


def pod_environment(container: dict[str, Any], mounts: dict[str, Path]) -> dict[str, str]:
    """The container's environment as the kubelet would give it: literal values, the pod's name from the
    downward API, and paths under a Secret volume's mount moved to where the test wrote that volume."""
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            value = str(item["value"])
        else:
            field_path = item["valueFrom"]["fieldRef"]["fieldPath"]
            assert field_path == "metadata.name", f"no stand-in for {item}"
            value = POD_NAME
        for mount_path, local in mounts.items():
            if value.startswith(mount_path + "/"):
                value = str(local) + value.removeprefix(mount_path)
        env[item["name"]] = value
    return env


def secret_volumes(
    kubectl: Kubectl, namespace: str, pod: dict[str, Any], container: dict[str, Any], root: Path
) -> dict[str, Path]:
    """Each Secret volume of the pod written to a directory under `root`, as the kubelet would mount it;
    the mount path of each, mapped to its directory."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    mounts = {}
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]].get("secret")
        if source is None:
            continue  # an emptyDir: the operator writes nothing there locally
        secret = json.loads(
            kubectl("get", "secret", source["secretName"], "-n", namespace, "-o", "json").stdout
        )
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True)
        for item in source.get("items") or [{"key": key, "path": key} for key in secret["data"]]:
            assert item["key"] in secret["data"], f"Secret {source['secretName']} has no key {item['key']}"
            (directory / item["path"]).write_bytes(base64.b64decode(secret["data"][item["key"]]))
        mounts[mount["mountPath"]] = directory
    return mounts


def stand_in_for_rollout(
    block: Block, kubectl: Kubectl, control_plane: ControlPlane, cloud: FakeCloudProcess, workdir: Path
) -> ProcessUnderTest:
    """Start the Deployment's pod as a local process: the image's entry point (the command line) with the
    container's arguments and environment, logged in with a token of the pod's ServiceAccount, and its
    Secret volume on disk. Only what must differ locally is changed: the cloud's endpoints (the fake's) and
    where it listens (loopback, free ports). Done when the container's readiness probe answers."""
    rollout = single(r"^kubectl -n (\S+) rollout status deployment/(\S+) --timeout=\S+$", block)
    namespace, name = rollout[1], rollout[2]
    deployment = json.loads(kubectl("get", "deployment", name, "-n", namespace, "-o", "json").stdout)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "command" not in container, "the image's entry point, the command line, runs the container"
    service_account = pod["serviceAccountName"]
    token = kubectl("create", "token", service_account, "-n", namespace, "--duration=1h").stdout.strip()
    sa_kubeconfig = token_kubeconfig(
        workdir / "service-account.kubeconfig",
        server=control_plane.server,
        ca_file=control_plane.ca_file,
        token=token,
        namespace=namespace,
    )
    mounts = secret_volumes(kubectl, namespace, pod, container, workdir / "pod")
    health_port = processes.free_port()
    wiring = operator_wiring(cloud, metrics_port=processes.free_port(), health_port=health_port)
    del wiring["CREDENTIALS_FILE"]  # the chart's own: the key in the README's Secret
    env = {
        name: value
        for name, value in child_environment(KUBECONFIG=str(sa_kubeconfig)).items()
        if not name.startswith(ENV_PREFIX)
    }
    chart_env = pod_environment(container, mounts)
    # The readiness probe asks the port the operator serves its health endpoints on.
    probe = container["readinessProbe"]["httpGet"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert str(ports[probe["port"]]) == chart_env[ENV_PREFIX + "HEALTH_PORT"], (probe, ports)
    env.update(chart_env)
    env.update({ENV_PREFIX + name: value for name, value in wiring.items()})
    argv = [VENV_BIN / "desktop-image-operator", *container.get("args", [])]
    operator = ProcessUnderTest(argv, env=env, log=workdir / "operator.log", cwd=workdir)
    operator.wait_http(f"http://{LOOPBACK}:{health_port}{probe['path']}", timeout=OPERATOR_READY_TIMEOUT)
    return operator


# -- the install journey, once for the module ---------------------------------------------------------------


@dataclass
class Installed:
    """The install journey, run to its end, and what it left: the stack the uninstall journey runs on."""

    kubectl: Kubectl
    helm: Helm
    shell: Shell
    cloud: FakeCloudProcess
    operator: ProcessUnderTest  # still running
    desktop_image: dict[str, Any]  # as the verify block left it
    verify_output: str  # of the verify block
    listed_images: list[dict[str, Any]]  # what the verify `yc` block lists
    operator_log: str  # up to the end of the install journey


@pytest.fixture(scope="module")
def control_plane_of_its_own() -> Iterator[ControlPlane]:
    """A control plane for the journeys alone. No controller manager: no pod runs without a kubelet and
    no namespace is deleted, so nothing here needs one."""
    with ControlPlane(with_controller_manager=False) as control_plane:
        yield control_plane


@pytest.fixture(scope="module")
def installed(
    control_plane_of_its_own: ControlPlane,
    fake_cloud_process: FakeCloudProcess,
    helm_bin: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installed]:
    """The install journey, block by block; the operator it starts runs until the module ends."""
    control_plane, cloud = control_plane_of_its_own, fake_cloud_process
    cloud.reset()
    workdir = tmp_path_factory.mktemp("journey")
    # An empty directory, not the checkout: the blocks run here need nothing of it but the chart, by path.
    cwd = workdir / "work"
    cwd.mkdir()
    helm = Helm(helm_bin, workdir / "helm", control_plane.kubeconfig)
    kubectl = kubectl_for(control_plane.kubeconfig)
    shell = Shell(cwd, shell_environment(helm, the_set_up_variables(), workdir))
    blocks = journey("install")
    (verify,) = [block for block in blocks if VERIFY.search(block.script)]
    operator: ProcessUnderTest | None = None
    listed: list[dict[str, Any]] | None = None
    verify_output = ""
    try:
        try:
            for block in blocks:
                if block.role == "set-up":
                    continue  # the test sets its variables (the_set_up_variables)
                if block.role == "cloud":
                    listed = stand_in_for_cloud(block, cwd, cloud) or listed
                elif block.role == "registry":
                    continue  # the checkout's chart stands in for the pushed one; the image is never pulled
                elif block.role == "nodes":
                    operator = stand_in_for_rollout(block, kubectl, control_plane, cloud, workdir)
                else:
                    output = shell(block)
                    verify_output = output if block is verify else verify_output
        except (AssertionError, StackError) as failure:
            raise AssertionError(f"{failure}\n\n{diagnosis(kubectl, operator)}") from None
        assert operator is not None, "the install journey starts the operator"
        assert listed is not None, "the install journey lists the cloud's images"
        found = VERIFY.search(verify.script)
        assert found
        desktop_image = json.loads(
            kubectl("get", "desktopimage", found["name"], "-n", found["namespace"], "-o", "json").stdout
        )
        yield Installed(
            kubectl, helm, shell, cloud, operator, desktop_image, verify_output, listed, operator.logs()
        )
    finally:
        if operator is not None:
            operator.stop()


def diagnosis(kubectl: Kubectl, operator: ProcessUnderTest | None) -> str:
    """What a failed block leaves to look at: the DesktopImages' conditions and the operator's log."""
    columns = "NS:.metadata.namespace,NAME:.metadata.name,READY:.status.conditions[0].status,"
    columns += "REASON:.status.conditions[0].reason,MESSAGE:.status.conditions[0].message"
    listed = kubectl("get", "desktopimages", "-A", "-o", f"custom-columns={columns}", check=False)
    log = operator.tail() if operator is not None else "(not started)"
    return f"DesktopImages:\n{listed.stdout}{listed.stderr}\nthe operator's log:\n{log}"


def the_set_up_variables() -> dict[str, str]:
    """What the set-up block's variables are here: the fake cloud's folder and stopped desktop, a registry
    nothing is pushed to, the chart's version, and the checkout's chart."""
    return {
        "FOLDER_ID": seeds.FOLDER_ID,
        "DESKTOP_ID": seeds.STOPPED_DESKTOP_ID,
        "REGISTRY": REGISTRY,
        "VERSION": chart_version(),
        "CHART": str(CHART),
    }


def operator_finalizers(kubectl: Kubectl) -> list[str]:
    """Every object of the cluster, of every kind it lists, that carries a finalizer of the operator's."""
    kinds = kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
    listed = json.loads(kubectl("get", ",".join(kinds), "--all-namespaces", "-o", "json").stdout)
    return [
        f"{item['kind']} {item['metadata'].get('namespace', '')}/{item['metadata']['name']}: {finalizer}"
        for item in listed["items"]
        for finalizer in item["metadata"].get("finalizers", [])
        if finalizer in (FINALIZER, CREDENTIALS_FINALIZER)
    ]


# -- the tests -----------------------------------------------------------------------------------------------


def test_the_readme_marks_its_journeys_and_its_set_up_exports_the_variables_the_journey_sets() -> None:
    install, (uninstall,) = journey("install"), journey("uninstall")
    assert {block.role for block in install} <= ROLES, [str(block) for block in install]
    assert uninstall.role == "", "the uninstall journey runs as written"
    (set_up,) = [block for block in install if block.role == "set-up"]
    assert set_up is install[0], "the variables come first"
    variables = exported(set_up)
    assert set(variables) == SET_UP_VARIABLES == set(the_set_up_variables()), set_up.script
    # The version the README builds and installs is this checkout's.
    assert variables["VERSION"] == chart_version()
    assert f"# or {CHART.relative_to(README.parent)}" in set_up.script
    assert [block.role for block in install].count("nodes") == 1
    assert len([block for block in install if VERIFY.search(block.script)]) == 1
    # Every other block uses no variable but the set-up's (and those it defines itself).
    for block in [*install[1:], uninstall]:
        defined = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", block.script, re.MULTILINE))
        used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", block.script))
        assert used <= SET_UP_VARIABLES | defined, f"{block} uses {sorted(used - SET_UP_VARIABLES - defined)}"


@pytest.mark.controlplane
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_install_journey_ends_with_the_desktop_image_ready_and_its_copy_in_the_cloud(
    installed: Installed,
) -> None:
    desktop_image = installed.desktop_image
    ready = condition(desktop_image)
    assert ready.get("status") == "True", ready
    metadata, spec, status = desktop_image["metadata"], desktop_image["spec"], desktop_image["status"]
    assert re.search(rf"^{metadata['name']}\s+True\s", installed.verify_output, re.MULTILINE), (
        installed.verify_output
    )
    # The copy the `yc` listing shows: in the desktop's folder, named after the object, with the spec's
    # labels and the operator's ownership labels naming the object.
    (image,) = installed.listed_images
    assert image["id"] == status["imageId"]
    assert image["status"] == "ACTIVE"
    assert image["folderId"] == seeds.FOLDER_ID
    assert image["name"] == metadata["name"]
    labels = image["labels"]
    assert spec["labels"].items() <= labels.items()
    assert labels[OWNER_UID_LABEL] == metadata["uid"]
    assert labels[OWNER_NAMESPACE_LABEL] == metadata["namespace"]
    assert labels[OWNER_NAME_LABEL] == metadata["name"]
    assert labels[OWNER_CLUSTER_LABEL]
    # The chart's RBAC let the operator do all of it.
    trouble = [
        line for line in installed.operator_log.splitlines() if any(t in line for t in PERMISSION_TROUBLE)
    ]
    assert not trouble, "\n".join(trouble)
    # Copied with the key the README put in the Secret the chart mounts: the fake's service account.
    account = json.loads(installed.cloud.key_file.read_text())["service_account_id"]
    copies = installed.cloud.requests(methods.COPY_FROM_DESKTOP)
    assert copies
    assert {copy["principal"] for copy in copies} == {account}


@pytest.mark.controlplane
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_uninstall_journey_leaves_no_finalizer_crd_release_or_cloud_image_behind(
    installed: Installed,
) -> None:
    (block,) = journey("uninstall")
    cloud, kubectl = installed.cloud, installed.kubectl
    # The README deletes the DesktopImages while the operator still runs: it deletes their cloud images.
    installed.operator.check()
    assert installed.desktop_image["spec"].get("deletionPolicy", "Delete") == "Delete"
    deletes_before = len(cloud.requests(methods.DELETE))
    output = installed.shell(block)
    # The command ran to its end: it reports what it let go, here nothing (the operator had done it all).
    assert "Removed the operator's finalizers from 0 Secret(s) and 0 DesktopImage(s)." in output, output

    missing = kubectl("get", "crd", "desktopimages.clouddesktop.yc.io", check=False)
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr, missing.stderr
    # The CRD is gone only once no DesktopImage is left; every other object is listed.
    assert operator_finalizers(kubectl) == []
    # In any state Helm keeps a release in (an uninstall keeping its history would leave one).
    states = ["--deployed", "--failed", "--pending", "--superseded", "--uninstalled", "--uninstalling"]
    assert installed.helm("list", "--all-namespaces", "--short", *states).stdout.strip() == ""
    assert cloud.images() == []
    deletes = cloud.requests(methods.DELETE)[deletes_before:]
    assert "OK" in [delete["code"] for delete in deletes], deletes
