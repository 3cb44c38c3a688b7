"""The pieces under test as child processes on loopback: the fake cloud, the operator, and kubectl.

Every child is started through `desktop_image_operator.devenv.processes`, so it dies with us even when we are
killed; every wait here is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from benchmarks import system
from desktop_image_operator.devenv import processes, tools

T = TypeVar("T")
ENV_PREFIX = "DESKTOP_IMAGE_OPERATOR_"
LOOPBACK = "127.0.0.1"


class BenchmarkError(RuntimeError):
    pass


def wait_for(predicate: Callable[[], T | None], *, timeout: float, interval: float = 0.2, what: str) -> T:
    """Poll until `predicate` returns something truthy; BenchmarkError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise BenchmarkError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Kubectl:
    """kubectl against the local control plane; its user agent keeps its writes apart from the operator's."""

    def __init__(self, kubeconfig: Path) -> None:
        self.binary = tools.kubectl()
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 60.0) -> str:
        try:
            completed = subprocess.run(
                [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=processes.environment_without_kube_settings(),
            )
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"kubectl {' '.join(args)} did not finish within {timeout:.0f} s") from None
        if completed.returncode != 0:
            raise BenchmarkError(
                f"kubectl {' '.join(args)} failed ({completed.returncode}): {completed.stderr.strip()}"
            )
        return completed.stdout

    def json(self, *args: str, timeout: float = 60.0) -> Any:
        return json.loads(self(*args, "-o", "json", timeout=timeout))


class FakeCloud:
    """`desktop-image-operator fake-cloud` and its admin API (`/fake/...`)."""

    def __init__(self, workdir: Path, *, copy_seconds: float, operation_seconds: float) -> None:
        self.key_file = workdir / "fake-cloud-key.json"
        self.log = workdir / "fake-cloud.log"
        self.process = processes.start(
            [
                sys.executable, "-m", "desktop_image_operator", "fake-cloud", "--json", "--host", LOOPBACK,
                "--key-out", self.key_file,
                "--copy-seconds", str(copy_seconds), "--operation-seconds", str(operation_seconds),
            ],
            log_path=self.log,
        )  # fmt: skip
        try:
            line = wait_for(self._summary_line, timeout=30, what="the fake cloud to start")
            self.endpoints: dict[str, str] = json.loads(line)["endpoints"]
            self.admin = httpx.Client(base_url=self.endpoints["admin"], timeout=30)
        except BaseException:
            processes.stop(self.process)
            raise
        self._seq = 0

    def _summary_line(self) -> str | None:
        if self.process.poll() is not None:
            raise BenchmarkError(f"the fake cloud exited:\n{processes.tail(self.log)}")
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return next((line for line in text.splitlines() if line.startswith("{")), None)

    def stop(self) -> None:
        if hasattr(self, "admin"):
            self.admin.close()
        processes.stop(self.process)

    def configure(self, **changes: Any) -> dict[str, Any]:
        response = self.admin.post("/config", json=changes) if changes else self.admin.get("/config")
        response.raise_for_status()
        return dict(response.json())

    def mark(self) -> int:
        """The sequence number of the latest logged call: calls after it are `calls_since(mark)`."""
        self.calls_since(self._seq)
        return self._seq

    def calls_since(self, seq: int) -> list[dict[str, Any]]:
        response = self.admin.get("/requests", params={"after": str(seq)})
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()["requests"]
        if entries:
            self._seq = max(self._seq, max(int(entry["seq"]) for entry in entries))
        return entries

    def image_count(self) -> int:
        response = self.admin.get("/images")
        response.raise_for_status()
        return len(response.json()["images"])


class Operator:
    """`desktop-image-operator run` for one namespace, configured by environment variables."""

    def __init__(
        self,
        workdir: Path,
        label: str,
        *,
        kubeconfig: Path,
        cloud: FakeCloud,
        namespace: str,
        transport: str = "rest",
        settings: dict[str, str] | None = None,
    ) -> None:
        self.log = workdir / f"operator-{label}.log"
        self.health_port = processes.free_port()
        endpoints = cloud.endpoints
        # Settings of our own only: none inherited from the caller's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX) and k != "KUBECONFIG"}
        self.settings: dict[str, str] = {
            "NAMESPACE": namespace,
            "TRANSPORT": transport,
            **(settings or {}),
        }
        wiring = {
            "DESKTOP_ENDPOINT": endpoints["cloudDesktop"],
            "OPERATION_ENDPOINT": endpoints["operation"],
            "IAM_ENDPOINT": endpoints["iam"],
            "METADATA_ENDPOINT": endpoints["metadata"],
            "DESKTOP_GRPC_TARGET": endpoints["grpc"],
            "OPERATION_GRPC_TARGET": endpoints["grpc"],
            "GRPC_INSECURE": "true",
            "CREDENTIALS_FILE": str(cloud.key_file),
            "BIND_ADDRESS": LOOPBACK,
            "METRICS_PORT": str(processes.free_port()),
            "HEALTH_PORT": str(self.health_port),
        }
        env.update({ENV_PREFIX + key: value for key, value in {**wiring, **self.settings}.items()})
        env["KUBECONFIG"] = str(kubeconfig)
        self.process = processes.start(
            [sys.executable, "-m", "desktop_image_operator", "run"], log_path=self.log, env=env
        )
        try:
            wait_for(self._healthy, timeout=60, what="the operator's liveness endpoint")
        except BaseException:
            self.stop()
            raise
        self.started_at = time.time()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise BenchmarkError(f"the operator exited:\n{processes.tail(self.log)}")
        try:
            return httpx.get(f"http://{LOOPBACK}:{self.health_port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchmarkError(f"the operator exited:\n{processes.tail(self.log)}")

    def memory(self) -> dict[str, int]:
        self.check_alive()
        return system.process_memory(self.pid)

    def cpu_seconds(self) -> float:
        self.check_alive()
        return round(system.process_cpu_seconds(self.pid), 2)

    def stop(self) -> None:
        processes.stop(self.process, grace=30)
