"""The local stack's parts as child processes: the fake cloud, the operator, and kubectl against the cluster.

`desktop-image-operator dev`, the integration tests and the benchmarks all start the fake Yandex Cloud and
the operator through their command lines, on loopback, and drive them over HTTP; this module does that for
all three. Every child is started through `processes`, so it dies with us even when we are killed with
SIGKILL, and every wait is bounded. Failures raise `StackError`, whose message names the part and carries
the end of its log.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from desktop_image_operator.commands.run import ENV_PREFIX, OPTIONS
from desktop_image_operator_dev.devenv import processes, tools

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
KUBECTL_TIMEOUT = 60.0
# What `fake-cloud --json` must report for the operator to be pointed at it.
REQUIRED_ENDPOINTS = ("cloudDesktop", "operation", "iam", "metadata", "admin", "grpc")
# Operator settings from our own environment that would fight the fake cloud's wiring (its key file).
CONFLICTING_OPERATOR_ENV = (
    ENV_PREFIX + "IAM_TOKEN",
    ENV_PREFIX + "METADATA_CREDENTIALS",
    ENV_PREFIX + "NAMESPACE",
)
# `run` options that are flags: on a command line they stand alone, without a value.
_FLAGS = frozenset(option.flag for option in OPTIONS if option.kind == "bool")


class StackError(RuntimeError):
    """A part of the stack failed; the message names it and carries the end of its log."""


class WaitTimeout(StackError, TimeoutError):
    """A bounded wait ran out."""


def wait_until(
    predicate: Callable[[], T | None], *, timeout: float, interval: float = 0.2, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy, and return that; WaitTimeout after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


def child_environment(**extra: str) -> dict[str, str]:
    """Our environment for a child on loopback: without our KUBECONFIG, with no proxy in the way for
    loopback, with unbuffered output (so its log is current), and with `extra`."""
    env = processes.environment_without_kube_settings()
    no_proxy = ",".join(p for p in (env.get("NO_PROXY", ""), "127.0.0.1,localhost") if p)
    env.update(NO_PROXY=no_proxy, no_proxy=no_proxy, PYTHONUNBUFFERED="1", **extra)
    return env


def answers(url: str) -> bool:
    """Whether `url` answers 200 within a second, ignoring any proxy settings (it is on loopback)."""
    try:
        return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


# -- kubectl ------------------------------------------------------------------------------------------------


class Kubectl:
    """kubectl against one kubeconfig (never the one in our environment), with a bounded run time."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.binary = tools.kubectl()

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = KUBECTL_TIMEOUT) -> str:
        """kubectl's standard output; StackError with its error output when it fails or outlasts `timeout`."""
        command = f"kubectl {' '.join(args)}"
        try:
            completed = subprocess.run(
                [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
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

    def json(self, *args: str, timeout: float = KUBECTL_TIMEOUT) -> Any:
        """`kubectl ... -o json`, parsed."""
        return json.loads(self(*args, "-o", "json", timeout=timeout))


# -- child processes ----------------------------------------------------------------------------------------


class Child:
    """A server of the stack as our child process, its output in a log file; it should run as long as we do.

    Subclasses set `name` (for messages) and the bounds `start_timeout` and `stop_grace`, and launch the
    process with `_launch`, which waits until it serves."""

    name = "child"
    start_timeout = 30.0
    stop_grace = 10.0
    process: subprocess.Popen[bytes]

    def __init__(self, argv: Sequence[str | Path], *, env: dict[str, str], log: Path) -> None:
        self.argv = [str(arg) for arg in argv]
        self.env = env
        self.log = log

    def _launch(self, serving: Callable[[], T | None], *, interval: float, waiting_for: str) -> T:
        """Start the process and poll `serving` until it returns something truthy, and return that.

        StackError as soon as the process exits, WaitTimeout after `start_timeout`; either way (or when
        interrupted) the process is stopped again."""

        def started() -> T | None:
            self.check()
            return serving()

        self.process = processes.start(self.argv, log_path=self.log, env=self.env)
        try:
            return wait_until(started, timeout=self.start_timeout, interval=interval, what=waiting_for)
        except WaitTimeout:
            message = (
                f"the {self.name} did not {waiting_for} within {self.start_timeout:.0f} s; "
                f"the end of its log:\n{self.tail()}"
            )
            processes.stop(self.process, grace=self.stop_grace)
            raise WaitTimeout(message) from None
        except BaseException:
            processes.stop(self.process, grace=self.stop_grace)
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def check(self) -> None:
        """StackError when the process has exited."""
        code = self.process.poll()
        if code is not None:
            raise StackError(f"the {self.name} exited with code {code}; the end of its log:\n{self.tail()}")

    def tail(self) -> str:
        """The end of the log, for messages."""
        return processes.tail(self.log) or "(empty)"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `stop_grace` seconds; nothing when it has already exited."""
        processes.stop(self.process, grace=self.stop_grace)


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


class FakeCloudChild(Child):
    """`desktop-image-operator fake-cloud` on loopback (free ports unless told), and its admin API.

    Its service account's authorized key is written to `key_file`; `endpoints` are the URLs and gRPC target
    it reported (`REQUIRED_ENDPOINTS`); `http` is a client of its admin API."""

    name = "fake cloud"
    admin_timeout = 10.0

    def __init__(
        self,
        workdir: Path,
        *,
        port: int = 0,
        copy_seconds: float | None = None,
        operation_seconds: float | None = None,
        strict_copy_fields: bool = False,
    ) -> None:
        self.key_file = workdir / "fake-cloud-key.json"
        argv = [
            sys.executable, "-m", "desktop_image_operator", "fake-cloud", "--json",
            "--host", LOOPBACK, "--port", str(port), "--key-out", str(self.key_file),
        ]  # fmt: skip
        if copy_seconds is not None:
            argv += ["--copy-seconds", str(copy_seconds)]
        if operation_seconds is not None:
            argv += ["--operation-seconds", str(operation_seconds)]
        if strict_copy_fields:
            argv.append("--strict-copy-fields")
        super().__init__(argv, env=child_environment(), log=workdir / "fake-cloud.log")
        self.endpoints = self._launch(
            self._reported_endpoints, interval=0.1, waiting_for="report its endpoints"
        )
        self.http = httpx.Client(base_url=self.admin_url, timeout=self.admin_timeout, trust_env=False)

    def _reported_endpoints(self) -> dict[str, str] | None:
        summary = fake_cloud_summary(self.logs())  # `processes.start` created the log
        if summary is None:
            return None
        endpoints = {str(k): str(v) for k, v in summary["endpoints"].items()}
        missing = [name for name in REQUIRED_ENDPOINTS if name not in endpoints]
        if missing:
            raise StackError(f"the fake cloud reported no {', '.join(missing)} endpoint")
        if not self.key_file.is_file():
            raise StackError(f"the fake cloud wrote no authorized key to {self.key_file}")
        return endpoints

    @property
    def admin_url(self) -> str:
        return self.endpoints["admin"]

    def stop(self) -> None:
        self.http.close()
        super().stop()

    # --- admin API ---------------------------------------------------------------------------------------

    def config(self, **changes: Any) -> dict[str, Any]:
        """The fake's whole config, after the given changes (none: just read it)."""
        response = self.http.post("/config", json=changes) if changes else self.http.get("/config")
        response.raise_for_status()
        return dict(response.json())

    def fault(self, **rule: Any) -> None:
        self.http.post("/faults", json=rule).raise_for_status()

    def requests(self, method: str | None = None, *, after: int | None = None) -> list[dict[str, Any]]:
        """The logged cloud calls: of one method if given, with a sequence number above `after` if given."""
        params = {"method": method} if method else {}
        if after is not None:
            params["after"] = str(after)
        response = self.http.get("/requests", params=params)
        response.raise_for_status()
        return list(response.json()["requests"])

    def calls(self) -> Counter[str]:
        """How often each method was called."""
        return Counter(entry["method"] for entry in self.requests())

    def images(self) -> list[dict[str, Any]]:
        response = self.http.get("/images")
        response.raise_for_status()
        return list(response.json()["images"])

    def reset(self) -> None:
        """Back to the seeded state: no images, requests or faults (the config stays as it is)."""
        self.http.post("/reset").raise_for_status()

    def set_desktop(self, desktop_id: str, **fields: Any) -> None:
        self.http.post(f"/desktops/{desktop_id}", json=fields).raise_for_status()


def operator_wiring(cloud: FakeCloudChild, *, metrics_port: int, health_port: int) -> dict[str, str]:
    """The `run` settings, by name, that point the operator at the fake cloud and serve its endpoints on
    loopback (port 0: that endpoint off)."""
    endpoints = cloud.endpoints
    return {
        "DESKTOP_ENDPOINT": endpoints["cloudDesktop"],
        "OPERATION_ENDPOINT": endpoints["operation"],
        "IAM_ENDPOINT": endpoints["iam"],
        "METADATA_ENDPOINT": endpoints["metadata"],
        "DESKTOP_GRPC_TARGET": endpoints["grpc"],
        "OPERATION_GRPC_TARGET": endpoints["grpc"],
        "GRPC_INSECURE": "true",
        "CREDENTIALS_FILE": str(cloud.key_file),
        "METRICS_PORT": str(metrics_port),
        "HEALTH_PORT": str(health_port),
        "BIND_ADDRESS": LOOPBACK,
    }


def as_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """`run` settings by name as its environment variables."""
    return {ENV_PREFIX + name: value for name, value in settings.items()}


def as_arguments(settings: Mapping[str, str]) -> list[str]:
    """`run` settings by name as its command-line options, in the same order. A flag stands alone when its
    value is "true" and is left out otherwise."""
    arguments: list[str] = []
    for name, value in settings.items():
        option = "--" + name.lower().replace("_", "-")
        if option not in _FLAGS:
            arguments += [option, value]
        elif value == "true":
            arguments.append(option)
    return arguments


# The local stack's one grant: every namespace may use the operator's own credentials (the fake cloud's
# key), in any folder. Tests of the grants themselves bring their own document.
LOCAL_GRANTS = """\
grants:
  - name: local-stack
    namespaceSelector: {}
    credentials:
      operator: true
"""


def local_grant(workdir: Path, settings: Mapping[str, str]) -> dict[str, str]:
    """The settings giving the operator the local stack's grant, unless `settings` name their own."""
    if "GRANTS_FILE" in settings or "GRANTS_CONFIG_MAP" in settings:
        return {}
    path = workdir / "local-stack-grants.yaml"
    path.write_text(LOCAL_GRANTS)
    return {"GRANTS_FILE": str(path)}


class OperatorChild(Child):
    """`desktop-image-operator run` against a fake cloud; restartable, killable with SIGKILL.

    `settings` are further `run` settings by name (NAMESPACE, TRANSPORT, ...); the wiring to the fake cloud
    comes on top; leader election is off unless they turn it on (LEADER_ELECT). `python` is the interpreter
    it runs on (this one, or that of the image's runtime environment). They reach the operator
    as environment variables, or as command-line options with `on_command_line`. Our own
    DESKTOP_IMAGE_OPERATOR_* variables are passed on, except those that would fight the wiring, unless
    `inherit_settings` is off; `overrides` are applied to the environment last (None removes a variable).
    The metrics endpoint is on a free port; so is the liveness endpoint, unless `health_server` is off.
    Starting waits until /healthz, or else /metrics, answers."""

    name = "operator"
    start_timeout = 60.0

    def __init__(
        self,
        workdir: Path,
        cloud: FakeCloudChild,
        *,
        kubeconfig: Path,
        settings: Mapping[str, str] | None = None,
        log: Path | None = None,
        health_server: bool = True,
        on_command_line: bool = False,
        inherit_settings: bool = True,
        overrides: Mapping[str, str | None] | None = None,
        python: str | Path = sys.executable,
    ) -> None:
        self.metrics_port = processes.free_port()
        self.health_port = processes.free_port() if health_server else 0
        self.settings = dict(settings or {})
        wiring = operator_wiring(cloud, metrics_port=self.metrics_port, health_port=self.health_port)
        # One instance, no Lease, unless the settings ask for leader election (the high-availability tests).
        options = {"LEADER_ELECT": "false", **local_grant(workdir, self.settings), **self.settings, **wiring}
        argv = [str(python), "-m", "desktop_image_operator", "run"]
        env = child_environment(KUBECONFIG=str(kubeconfig))
        if inherit_settings:
            for name in CONFLICTING_OPERATOR_ENV:
                env.pop(name, None)
        else:
            env = {name: value for name, value in env.items() if not name.startswith(ENV_PREFIX)}
        if on_command_line:
            argv += as_arguments(options)
        else:
            env.update(as_environment(options))
        for name, value in (overrides or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        super().__init__(argv, env=env, log=log or workdir / "operator.log")
        self.start()

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://{LOOPBACK}:{self.health_port}/healthz"

    def start(self) -> None:
        """Start the process (again, after `stop` or `kill9`) and wait until it answers."""
        url = self.health_url if self.health_port else self.metrics_url
        self._launch(lambda: answers(url), interval=0.2, waiting_for=f"answer {url}")

    def kill9(self) -> None:
        """End it with SIGKILL, as a crash would: no cleanup of its own."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def signal(self, number: signal.Signals) -> None:
        """Send it a signal (SIGTERM, SIGSTOP, SIGCONT...); nothing when it has exited."""
        if self.process.poll() is None:
            self.process.send_signal(number)

    def health(self) -> dict[str, Any] | None:
        """What /healthz answers (with leader election: {"instance", "leader"}); None when it does not."""
        try:
            response = httpx.get(self.health_url, timeout=1.0, trust_env=False)
        except httpx.HTTPError:
            return None
        return dict(response.json()) if response.status_code == 200 else None

    def metrics(self) -> str:
        """The Prometheus text it serves now."""
        return httpx.get(self.metrics_url, timeout=5, trust_env=False).text
