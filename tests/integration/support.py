"""Driving the real pieces from tests: the fake cloud's CLI, the operator's CLI, kubectl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from desktop_image_operator.devenv import processes


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


class FakeCloudProcess:
    """`desktop-image-operator fake-cloud` as a child process, and its admin API."""

    def __init__(self, workdir: Path, *, copy_seconds: float = 1.0, operation_seconds: float = 0.5) -> None:
        self.workdir = workdir
        self.key_file = workdir / "fake-key.json"
        self._log = workdir / "fake-cloud.log"
        self._process = processes.start(
            [
                sys.executable, "-m", "desktop_image_operator", "fake-cloud", "--json",
                "--key-out", str(self.key_file),
                "--copy-seconds", str(copy_seconds), "--operation-seconds", str(operation_seconds),
            ],
            log_path=self._log,
        )  # fmt: skip
        line = wait_until(self._first_line, timeout=30, what="the fake cloud to start")
        self.info: dict[str, Any] = json.loads(line)
        self.endpoints: dict[str, str] = self.info["endpoints"]
        self.http = httpx.Client(base_url=self.endpoints["admin"], timeout=10)
        self.defaults = self.config()

    def _first_line(self) -> str | None:
        if self._process.poll() is not None:
            raise RuntimeError(f"fake cloud exited:\n{processes.tail(self._log)}")
        text = self._log.read_text() if self._log.exists() else ""
        return next((line for line in text.splitlines() if line.startswith("{")), None)

    def stop(self) -> None:
        self.http.close()
        processes.stop(self._process)

    # --- admin API -------------------------------------------------------------------------------------

    def reset(self) -> None:
        self.http.post("/reset").raise_for_status()
        self.http.post("/config", json=self.defaults).raise_for_status()

    def config(self, **changes: Any) -> dict[str, Any]:
        response = self.http.post("/config", json=changes) if changes else self.http.get("/config")
        response.raise_for_status()
        return dict(response.json())

    def fault(self, **rule: Any) -> None:
        self.http.post("/faults", json=rule).raise_for_status()

    def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        params = {"method": method} if method else {}
        response = self.http.get("/requests", params=params)
        response.raise_for_status()
        return list(response.json()["requests"])

    def calls(self) -> Counter[str]:
        return Counter(entry["method"] for entry in self.requests())

    def images(self) -> list[dict[str, Any]]:
        response = self.http.get("/images")
        response.raise_for_status()
        return list(response.json()["images"])

    def set_desktop(self, desktop_id: str, **fields: Any) -> None:
        self.http.post(f"/desktops/{desktop_id}", json=fields).raise_for_status()


class OperatorProcess:
    """`desktop-image-operator run` as a child process, restartable, killable with SIGKILL."""

    def __init__(
        self,
        workdir: Path,
        kubeconfig: Path,
        cloud: FakeCloudProcess,
        *,
        namespace: str,
        transport: str = "rest",
        extra_env: dict[str, str | None] | None = None,  # None removes a variable
    ) -> None:
        self.workdir = workdir
        self.log = workdir / "operator.log"
        self.metrics_port = processes.free_port()
        endpoints = cloud.endpoints
        env: dict[str, str | None] = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "DESKTOP_IMAGE_OPERATOR_NAMESPACE": namespace,
            "DESKTOP_IMAGE_OPERATOR_TRANSPORT": transport,
            "DESKTOP_IMAGE_OPERATOR_DESKTOP_ENDPOINT": endpoints["cloudDesktop"],
            "DESKTOP_IMAGE_OPERATOR_OPERATION_ENDPOINT": endpoints["operation"],
            "DESKTOP_IMAGE_OPERATOR_IAM_ENDPOINT": endpoints["iam"],
            "DESKTOP_IMAGE_OPERATOR_METADATA_ENDPOINT": endpoints["metadata"],
            "DESKTOP_IMAGE_OPERATOR_DESKTOP_GRPC_TARGET": endpoints["grpc"],
            "DESKTOP_IMAGE_OPERATOR_OPERATION_GRPC_TARGET": endpoints["grpc"],
            "DESKTOP_IMAGE_OPERATOR_GRPC_INSECURE": "true",
            "DESKTOP_IMAGE_OPERATOR_CREDENTIALS_FILE": str(cloud.key_file),
            "DESKTOP_IMAGE_OPERATOR_BIND_ADDRESS": "127.0.0.1",
            "DESKTOP_IMAGE_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "DESKTOP_IMAGE_OPERATOR_HEALTH_PORT": "0",
            # Tests watch seconds, not minutes: poll and retry quickly.
            "DESKTOP_IMAGE_OPERATOR_OPERATION_POLL_SECONDS": "0.2",
            "DESKTOP_IMAGE_OPERATOR_RETRY_BASE_SECONDS": "1",
        }
        env.pop("DESKTOP_IMAGE_OPERATOR_IAM_TOKEN", None)
        env.update(extra_env or {})
        self.env = {key: value for key, value in env.items() if value is not None}
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self._process = processes.start(
            [sys.executable, "-m", "desktop_image_operator", "run"], log_path=self.log, env=self.env
        )
        wait_until(self._serving, timeout=30, what="the operator's metrics endpoint")

    def _serving(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise RuntimeError(f"operator exited:\n{processes.tail(self.log)}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process is not None:
            processes.stop(self._process)

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def logs(self) -> str:
        return self.log.read_text(errors="replace")
