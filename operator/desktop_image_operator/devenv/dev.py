"""`desktop-image-operator dev`: the whole local stack in one command (what `make run` runs).

Starts the local control plane, the fake Yandex Cloud, the CRD, the operator and the examples, then shows
the DesktopImages reaching Ready. Ctrl-C or SIGTERM stops everything it started and removes its files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from desktop_image_operator.api.constants import CONDITION_READY, CRD_NAME, GROUP, PLURAL
from desktop_image_operator.devenv import processes, tools

if TYPE_CHECKING:
    from desktop_image_operator.devenv.controlplane import ControlPlane

LOOPBACK = "127.0.0.1"
# The repository's examples/, next to operator/ (an editable install, as `make run` makes).
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FAKE_CLOUD_TIMEOUT = 30.0
OPERATOR_TIMEOUT = 60.0
KUBECTL_TIMEOUT = 60.0
LIST_TIMEOUT = 10.0
REFRESH_SECONDS = 1.0
SLOW_READY_SECONDS = 120.0  # after this long without all Ready, point at the operator's log
MAX_LIST_FAILURES = 30  # consecutive failed listings (about half a minute) before giving up
# Operator settings from our own environment that would fight the ones `dev` chooses.
CONFLICTING_OPERATOR_ENV = (
    "DESKTOP_IMAGE_OPERATOR_IAM_TOKEN",
    "DESKTOP_IMAGE_OPERATOR_METADATA_CREDENTIALS",
    "DESKTOP_IMAGE_OPERATOR_NAMESPACE",
)
FIELD_MANAGER = "desktop-image-operator-dev"
TABLE_HEADER = ("NAMESPACE", "NAME", "READY", "REASON", "STATUS", "IMAGE ID", "AGE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig-out", type=Path, metavar="PATH", help="also write the kubeconfig here (removed on exit)"
    )
    parser.add_argument(
        "--fake-cloud-port",
        type=int,
        default=0,
        metavar="P",
        help="HTTP port of the fake cloud (default: free)",
    )
    parser.add_argument("--no-operator", action="store_true", help="do not start the operator")
    parser.add_argument("--no-examples", action="store_true", help="do not apply the examples")
    parser.add_argument(
        "--examples",
        type=Path,
        default=EXAMPLES,
        metavar="DIR",
        help="directory of manifests to apply (default: the repository's examples/)",
    )
    parser.add_argument(
        "--copy-seconds",
        type=float,
        default=5.0,
        metavar="S",
        help="how long the fake cloud's copy operations take (default: 5)",
    )
    parser.add_argument(
        "--transport", choices=("rest", "grpc"), default="rest", help="the operator's cloud API transport"
    )


class StackError(Exception):
    """A part of the stack failed; the message names it and carries the end of its log."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM. A BaseException, so no `except Exception` on the way swallows it."""


class Interrupts:
    """Turns the first SIGINT or SIGTERM into `Interrupted`; once disarmed (cleanup), signals are ignored."""

    def __init__(self) -> None:
        self.armed = True

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.armed:
            self.armed = False  # a second Ctrl-C must not cut the cleanup short
            raise Interrupted(signal.Signals(signum).name)

    def disarm(self) -> None:
        self.armed = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def say(text: str = "") -> None:
    print(text, flush=True)


# -- child processes ----------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def check(self) -> None:
        """Raise StackError when the child has exited: it should run as long as we do."""
        code = self.process.poll()
        if code is not None:
            raise StackError(f"the {self.name} exited with code {code}; the end of its log:\n{self.tail()}")

    def tail(self) -> str:
        return processes.tail(self.log) or "(empty)"


def child_environment(**extra: str) -> dict[str, str]:
    env = processes.environment_without_kube_settings()
    # Everything here talks to loopback; a proxy from the environment must not get in the way.
    no_proxy = ",".join(p for p in (env.get("NO_PROXY", ""), "127.0.0.1,localhost") if p)
    env.update(NO_PROXY=no_proxy, no_proxy=no_proxy, PYTHONUNBUFFERED="1", **extra)
    return env


def spawn(
    name: str, argv: Sequence[str], workdir: Path, env: dict[str, str], cleanup: contextlib.ExitStack
) -> Child:
    log = workdir / f"{name.replace(' ', '-')}.log"
    process = processes.start(argv, log_path=log, env=env)
    cleanup.callback(processes.stop, process)
    return Child(name, process, log)


def answers(url: str) -> bool:
    """Whether `url` answers 200, ignoring any proxy settings (it is on loopback)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


# -- kubectl ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = KUBECTL_TIMEOUT) -> str:
        command = f"kubectl {' '.join(args)}"
        try:
            completed = subprocess.run(
                [tools.kubectl(), f"--kubeconfig={self.kubeconfig}", *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=child_environment(),
            )
        except subprocess.TimeoutExpired:
            raise StackError(f"{command} did not finish within {timeout:.0f} s") from None
        if completed.returncode != 0:
            output = (completed.stderr or completed.stdout).strip()
            raise StackError(f"{command} failed with code {completed.returncode}:\n{output}")
        return completed.stdout


# -- the parts of the stack, in start order -----------------------------------------------------------


def start_control_plane(cleanup: contextlib.ExitStack) -> ControlPlane:
    from desktop_image_operator.devenv.controlplane import ControlPlane, ControlPlaneError

    say("Starting the local control plane (etcd, kube-apiserver, kube-controller-manager)...")
    try:
        return cleanup.enter_context(ControlPlane())
    except (ControlPlaneError, RuntimeError, OSError, subprocess.CalledProcessError) as error:
        raise StackError(f"the local control plane did not start: {error}") from None


def publish_kubeconfig(source: Path, target: Path | None, cleanup: contextlib.ExitStack) -> Path:
    """The kubeconfig to tell people about: a copy at `target` when asked for (removed on exit)."""
    if target is None:
        return source
    cleanup.callback(target.unlink, missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(0o600)
    return target


@dataclass(frozen=True)
class FakeCloudInfo:
    endpoints: dict[str, str]
    key_file: Path

    @property
    def admin_url(self) -> str:
        return self.endpoints["admin"]


REQUIRED_ENDPOINTS = ("cloudDesktop", "operation", "iam", "metadata", "admin", "grpc")


def fake_cloud_summary(log_text: str) -> dict[str, Any] | None:
    """The JSON line `fake-cloud --json` prints once it serves, if it is there yet."""
    for line in log_text.splitlines():
        if not line.startswith("{"):
            continue
        with contextlib.suppress(json.JSONDecodeError):
            summary = json.loads(line)
            if isinstance(summary, dict) and isinstance(summary.get("endpoints"), dict):
                return summary
    return None


def start_fake_cloud(
    args: argparse.Namespace, workdir: Path, cleanup: contextlib.ExitStack
) -> tuple[Child, FakeCloudInfo]:
    say("Starting the fake Yandex Cloud...")
    key_file = workdir / "fake-cloud-key.json"
    argv = [
        sys.executable, "-m", "desktop_image_operator", "fake-cloud", "--json",
        "--host", LOOPBACK, "--port", str(args.fake_cloud_port),
        "--key-out", str(key_file), "--copy-seconds", str(args.copy_seconds),
    ]  # fmt: skip
    child = spawn("fake cloud", argv, workdir, child_environment(), cleanup)
    deadline = time.monotonic() + FAKE_CLOUD_TIMEOUT
    while time.monotonic() < deadline:
        child.check()
        summary = fake_cloud_summary(child.log.read_text(errors="replace") if child.log.exists() else "")
        if summary is not None:
            return child, fake_cloud_info(summary, key_file)
        time.sleep(0.1)
    raise StackError(
        f"the fake cloud did not report its endpoints within {FAKE_CLOUD_TIMEOUT:.0f} s; "
        f"the end of its log:\n{child.tail()}"
    )


def fake_cloud_info(summary: dict[str, Any], key_file: Path) -> FakeCloudInfo:
    endpoints = {str(k): str(v) for k, v in summary["endpoints"].items()}
    missing = [name for name in REQUIRED_ENDPOINTS if name not in endpoints]
    if missing:
        raise StackError(f"the fake cloud reported no {', '.join(missing)} endpoint")
    if not key_file.is_file():
        raise StackError(f"the fake cloud wrote no authorized key to {key_file}")
    return FakeCloudInfo(endpoints, key_file)


def apply_crd(kubectl: Kubectl) -> None:
    from desktop_image_operator.api.crd import render_crd

    say("Applying the DesktopImage CRD...")
    kubectl("apply", "-f", "-", stdin=render_crd())
    kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{CRD_NAME}", timeout=40)


def operator_arguments(
    transport: str, fake: FakeCloudInfo, metrics_port: int | str, health_port: int | str
) -> list[str]:
    """`desktop-image-operator run` options pointing the operator at the fake cloud."""
    return [
        "--transport", transport,
        "--desktop-endpoint", fake.endpoints["cloudDesktop"],
        "--operation-endpoint", fake.endpoints["operation"],
        "--iam-endpoint", fake.endpoints["iam"],
        "--metadata-endpoint", fake.endpoints["metadata"],
        "--desktop-grpc-target", fake.endpoints["grpc"],
        "--operation-grpc-target", fake.endpoints["grpc"],
        "--grpc-insecure",
        "--credentials-file", str(fake.key_file),
        "--metrics-port", str(metrics_port),
        "--health-port", str(health_port),
        "--bind-address", LOOPBACK,
    ]  # fmt: skip


@dataclass(frozen=True)
class OperatorInfo:
    child: Child
    metrics_url: str


def start_operator(
    args: argparse.Namespace,
    fake: FakeCloudInfo,
    kubeconfig: Path,
    workdir: Path,
    cleanup: contextlib.ExitStack,
) -> OperatorInfo:
    say(f"Starting the operator ({args.transport} transport)...")
    metrics_port, health_port = processes.free_port(), processes.free_port()
    argv = [sys.executable, "-m", "desktop_image_operator", "run"]
    argv += operator_arguments(args.transport, fake, metrics_port, health_port)
    env = child_environment(KUBECONFIG=str(kubeconfig))
    for name in CONFLICTING_OPERATOR_ENV:
        env.pop(name, None)
    child = spawn("operator", argv, workdir, env, cleanup)
    health_url = f"http://{LOOPBACK}:{health_port}/healthz"
    deadline = time.monotonic() + OPERATOR_TIMEOUT
    while time.monotonic() < deadline:
        child.check()
        if answers(health_url):
            return OperatorInfo(child, f"http://{LOOPBACK}:{metrics_port}/metrics")
        time.sleep(0.2)
    raise StackError(
        f"the operator did not answer {health_url} within {OPERATOR_TIMEOUT:.0f} s; "
        f"the end of its log:\n{child.tail()}"
    )


def example_documents(directory: Path) -> list[dict[str, Any]]:
    import yaml

    if not directory.is_dir():
        raise StackError(f"no examples directory at {directory}; pass --examples DIR or --no-examples")
    documents: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            documents += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        except yaml.YAMLError as error:
            raise StackError(f"{path} is not valid YAML: {error}") from None
    if not documents:
        raise StackError(f"no manifests in {directory}")
    return documents


def with_real_credentials(document: dict[str, Any], key_json: str) -> dict[str, Any]:
    """An example Secret carries a placeholder: fill each of its entries with the fake's authorized key."""
    if not is_secret(document):
        return document
    entries = [*(document.get("stringData") or {}), *(document.get("data") or {})]
    filled = {k: v for k, v in document.items() if k not in ("data", "stringData")}
    filled["stringData"] = dict.fromkeys(entries, key_json)
    return filled


def is_secret(document: dict[str, Any]) -> bool:
    return document.get("apiVersion") == "v1" and document.get("kind") == "Secret"


def apply_examples(kubectl: Kubectl, directory: Path, key_file: Path) -> None:
    say(f"Applying the examples in {directory}...")
    key_json = key_file.read_text(encoding="utf-8")
    documents = [with_real_credentials(d, key_json) for d in example_documents(directory)]
    secrets = [d for d in documents if is_secret(d)]
    others = [d for d in documents if not is_secret(d)]
    # Keys go through standard input, never the command line. Secrets are applied server-side: a
    # client-side apply would copy the key into the last-applied-configuration annotation.
    output = ""
    if secrets:
        # First: an object whose credentials are missing would wait out a slow retry.
        output += kubectl(
            "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", stdin=as_list(secrets)
        )
    if others:
        output += kubectl("apply", "-f", "-", stdin=as_list(others))
    for line in output.splitlines():
        say(f"  {line}")


def as_list(documents: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})


# -- the live view ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    namespace: str
    name: str
    ready: str
    reason: str
    status: str
    image_id: str
    created: datetime | None
    is_ready: bool

    def cells(self, now: datetime) -> tuple[str, ...]:
        age = "-" if self.created is None else format_age((now - self.created).total_seconds())
        return (self.namespace, self.name, self.ready, self.reason, self.status, self.image_id, age)

    def key(self) -> tuple[str, ...]:
        """What a change is judged by: everything but the age, which changes every second."""
        return (self.namespace, self.name, self.ready, self.reason, self.status, self.image_id)


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def row_from_object(obj: dict[str, Any]) -> Row:
    metadata, status = obj.get("metadata") or {}, obj.get("status") or {}
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    ready: dict[str, Any] = next((c for c in conditions if c.get("type") == CONDITION_READY), {})
    # Ready counts only for the spec the operator has seen, as `kubectl wait` judges it.
    current = ready.get("observedGeneration", metadata.get("generation")) == metadata.get("generation")
    return Row(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        ready=str(ready.get("status", "-")),
        reason=str(ready.get("reason", "-")),
        status=str(status.get("imageStatus", "-")),
        image_id=str(status.get("imageId", "-")),
        created=parse_time(metadata.get("creationTimestamp")),
        is_ready=ready.get("status") == "True" and current,
    )


def rows_from_list(data: dict[str, Any]) -> list[Row]:
    rows = [row_from_object(item) for item in data.get("items") or []]
    return sorted(rows, key=lambda r: (r.namespace, r.name))


def format_age(seconds: float) -> str:
    """Like kubectl's AGE column: 42s, 3m5s, 25m, 5h, 3d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes, s = divmod(s, 60)
    if minutes < 10:
        return f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


def render_table(rows: Sequence[Row], now: datetime) -> list[str]:
    if not rows:
        return ["No DesktopImages yet."]
    table = [TABLE_HEADER, *(row.cells(now) for row in rows)]
    if len({row.namespace for row in rows}) == 1:
        table = [line[1:] for line in table]  # one namespace: its column would only cost width
    widths = [max(len(cell) for cell in column) for column in zip(*table, strict=True)]
    return [
        "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]


def all_ready(rows: Sequence[Row]) -> bool:
    return bool(rows) and all(row.is_ready for row in rows)


def summary_line(rows: Sequence[Row], elapsed: float) -> str:
    ready = sum(row.is_ready for row in rows)
    return f"[{elapsed:6.1f} s] DesktopImages Ready: {ready}/{len(rows)}"


class Display:
    """A terminal gets the table redrawn in place; anything else gets plain snapshots, only on change."""

    def __init__(self, stream: TextIO, interactive: bool) -> None:
        self.stream = stream
        self.interactive = interactive
        self._drawn = 0  # lines of the block drawn last (terminal)
        self._last_key: object = None

    def show(self, lines: Sequence[str], key: object) -> None:
        if self.interactive:
            self._redraw(lines)
        elif key != self._last_key:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        self._last_key = key

    def _redraw(self, lines: Sequence[str]) -> None:
        width = max(20, shutil.get_terminal_size().columns - 1)
        text = "\n".join(line[:width] for line in lines) + "\n"  # cut, so no line wraps and the count holds
        erase = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
        self.stream.write(erase + text)
        self.stream.flush()
        self._drawn = len(lines)


def is_interactive(stream: TextIO) -> bool:
    return stream.isatty() and os.environ.get("TERM", "") != "dumb"


@dataclass
class Watcher:
    """Polls the DesktopImages once a second until all are Ready, watching the children meanwhile."""

    kubectl: Kubectl
    children: Sequence[Child]
    display: Display
    started: float
    operator_log: Path | None

    def until_all_ready(self) -> float:
        """Return the seconds from start to all Ready; runs as long as that takes (Ctrl-C ends it)."""
        failures = 0
        while True:
            for child in self.children:
                child.check()
            elapsed = time.monotonic() - self.started
            try:
                rows = rows_from_list(json.loads(self._list()))
                failures, note = 0, ""
            except (StackError, json.JSONDecodeError) as error:
                failures += 1
                if failures >= MAX_LIST_FAILURES:
                    raise StackError(f"the API server stopped answering: {error}") from None
                rows, note = [], f"cannot list DesktopImages: {str(error).splitlines()[0]}"
            if elapsed > SLOW_READY_SECONDS and rows and not all_ready(rows):
                note = "\n".join(filter(None, (note, self._slow_hint())))
            self._show(rows, elapsed, note)
            if all_ready(rows):
                return elapsed
            time.sleep(REFRESH_SECONDS)

    def _list(self) -> str:
        return self.kubectl(
            "get", f"{PLURAL}.{GROUP}", "--all-namespaces", "-o", "json", timeout=LIST_TIMEOUT
        )

    def _show(self, rows: Sequence[Row], elapsed: float, note: str) -> None:
        lines = [summary_line(rows, elapsed), *render_table(rows, datetime.now(UTC))]
        lines += note.splitlines()
        self.display.show(lines, (tuple(row.key() for row in rows), note))

    def _slow_hint(self) -> str:
        if self.operator_log is None:
            return "Not all Ready yet: the operator is not running (--no-operator)."
        return f"Not all Ready after {SLOW_READY_SECONDS:.0f} s: see the operator's log, {self.operator_log}"

    def forever(self) -> None:
        """Keep serving until a signal ends us; stop with an error when a child dies."""
        while True:
            for child in self.children:
                child.check()
            time.sleep(REFRESH_SECONDS)


# -- putting it together ------------------------------------------------------------------------------


def banner(
    args: argparse.Namespace,
    kubeconfig: Path,
    server: str,
    fake: FakeCloudInfo,
    operator: OperatorInfo | None,
    elapsed: float,
) -> list[str]:
    lines = [
        "",
        f"The local stack is up ({elapsed:.1f} s). To use kubectl in another terminal:",
        f"  export KUBECONFIG={kubeconfig}",
        "  kubectl get deskimg -A -o wide",
        f"kube-apiserver: {server}",
        f"fake cloud admin API: {fake.admin_url}  (e.g. {fake.admin_url}/images, {fake.admin_url}/requests)",
    ]
    if operator is not None:
        lines.append(f"operator metrics: {operator.metrics_url}")
        lines.append(f"operator log: {operator.child.log}  (removed on exit)")
    else:
        # Ports 0: no metrics or health servers, so a debugger run clashes with nothing.
        command = ["desktop-image-operator", "run", *operator_arguments(args.transport, fake, 0, 0)]
        lines.append("operator: not started (--no-operator); to run it against this stack:")
        lines.append(f"  KUBECONFIG={kubeconfig} {shlex.join(command)}")
    lines += ["Ctrl-C stops everything.", ""]
    return lines


def start_and_watch(args: argparse.Namespace, cleanup: contextlib.ExitStack, started: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="desktop-image-operator-dev-"))
    cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)  # registered first, so removed last
    control_plane = start_control_plane(cleanup)
    kubeconfig = publish_kubeconfig(control_plane.kubeconfig, args.kubeconfig_out, cleanup)
    say(f"  kube-apiserver {control_plane.server} ({time.monotonic() - started:.1f} s)")
    fake_child, fake = start_fake_cloud(args, workdir, cleanup)
    say(f"  fake cloud {fake.endpoints['cloudDesktop']}, gRPC {fake.endpoints['grpc']}")
    kubectl = Kubectl(control_plane.kubeconfig)
    apply_crd(kubectl)
    operator = None
    if not args.no_operator:
        operator = start_operator(args, fake, control_plane.kubeconfig, workdir, cleanup)
    if not args.no_examples:
        apply_examples(kubectl, args.examples, fake.key_file)
    for line in banner(args, kubeconfig, control_plane.server, fake, operator, time.monotonic() - started):
        say(line)
    children = [fake_child] + ([operator.child] if operator else [])
    watcher = Watcher(
        kubectl, children, Display(sys.stdout, is_interactive(sys.stdout)), started,
        operator.child.log if operator else None,
    )  # fmt: skip
    elapsed = watcher.until_all_ready()
    say(f"All DesktopImages are Ready, {elapsed:.1f} s after start. Ctrl-C stops everything.")
    watcher.forever()


def main(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.copy_seconds < 0:
        print("error: --copy-seconds must not be negative", file=sys.stderr)
        return 2
    started = time.monotonic()
    interrupts = Interrupts()
    failure: StackError | None = None
    with interrupts.installed(), contextlib.ExitStack() as cleanup:
        try:
            start_and_watch(args, cleanup, started)
        except Interrupted:
            pass  # the way `dev` is meant to end
        except StackError as error:
            failure = error
        finally:
            interrupts.disarm()  # from here on, signals must not cut the cleanup short
            if sys.stdout.isatty():
                say()  # a terminal has just echoed ^C
            say("Stopping the operator, the fake cloud and the control plane...")
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr, flush=True)
        return 1
    say("Stopped; temporary files removed.")
    return 0
