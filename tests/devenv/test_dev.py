"""`desktop-image-operator dev` end to end: the real command, as `make run` starts it, not on a terminal.

It must bring up the whole stack, get every example Ready, and on SIGINT or SIGTERM leave nothing behind:
no process, no listening port, no kubeconfig, no temporary directory.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from desktop_image_operator_dev.devenv.stack import Kubectl
from desktop_image_operator_dev.fakecloud import seeds
from tests.support.kube import condition

pytestmark = pytest.mark.controlplane

READY_TIMEOUT = 120.0
UP_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
EXAMPLE_IMAGES = 3


class Output:
    """The dev command's output, read in a thread, so the test can wait for a line with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._process = process
        self._stream = process.stdout
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "\n".join(self._lines)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first line satisfying `predicate`; fails with the whole output on timeout or early exit."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self._lines if predicate(line)), None)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._process.poll() is not None and not self._thread.is_alive()):
                    output = "\n".join(self._lines)
                    pytest.fail(f"dev did not print the expected line; its output:\n{output}")
                self._changed.wait(min(remaining, 1.0))

    def value_after(self, prefix: str, timeout: float = 5.0) -> str:
        """The rest of the first line starting with `prefix`, up to the first space."""
        line = self.wait_for(lambda text: text.startswith(prefix), timeout)
        return line[len(prefix) :].split()[0]

    def join(self) -> None:
        self._thread.join(timeout=10)


@contextlib.contextmanager
def dev(*args: str) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    """The dev command as a child; stopped (SIGTERM, then SIGKILL) if the test leaves it running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "desktop_image_operator", "dev", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, Output(process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def child_pids(parent: int) -> set[int]:
    """Pids whose parent is `parent`, from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name may hold spaces and parentheses: fields start after the last ')'.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def listening(url: str) -> bool:
    parts = urllib.parse.urlsplit(url if "//" in url else f"//{url}")
    assert parts.hostname == "127.0.0.1", url
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=1.0):
            return True
    except OSError:
        return False


def stop_and_check_clean(
    process: subprocess.Popen[str], output: Output, signum: signal.Signals, children: set[int]
) -> None:
    process.send_signal(signum)
    try:
        code = process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dev did not stop within {STOP_TIMEOUT:.0f} s; its output:\n{output.text}")
    output.join()
    assert code == 0, output.text
    assert "Stopped; temporary files removed." in output.text
    # The children were killed or reaped by now; allow the kernel a moment to finish with them.
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if alive(pid)]


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_dev_brings_every_example_to_ready_and_cleans_up(tmp_path: Path, transport: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    with dev("--kubeconfig-out", str(kubeconfig), "--copy-seconds", "1", "--transport", transport) as (
        process,
        output,
    ):
        output.wait_for(lambda line: line.startswith("All DesktopImages are Ready"), READY_TIMEOUT)
        server = output.value_after("kube-apiserver: ")
        admin = output.value_after("fake cloud admin API: ")
        metrics = output.value_after("operator metrics: ")
        workdir = Path(output.value_after("operator log: ")).parent
        assert output.value_after("  export KUBECONFIG=") == str(kubeconfig)
        assert "\x1b" not in output.text  # no cursor control when not on a terminal

        kubectl = Kubectl(kubeconfig)
        images = kubectl.json("get", "deskimg", "--all-namespaces")["items"]
        assert len(images) == EXAMPLE_IMAGES
        for image in images:
            ready = condition(image)
            assert ready.get("status") == "True", image
            assert ready.get("observedGeneration") == image["metadata"]["generation"]
            assert image["status"]["imageStatus"] == "ACTIVE"

        # The example Secret got the fake's real key instead of its placeholder.
        secret = kubectl.json("get", "secret", "yc-sa-key", "-n", "default")
        key = json.loads(base64.b64decode(secret["data"]["key.json"]))
        assert key["service_account_id"] == seeds.SERVICE_ACCOUNT_ID
        assert "PLACEHOLDER" not in json.dumps(key)
        # ... and nothing copied the key into an annotation (client-side apply would).
        assert key["private_key"] not in json.dumps(secret["metadata"])

        children = child_pids(process.pid)
        assert len(children) >= 5  # etcd, kube-apiserver, kube-controller-manager, fake cloud, operator
        assert all(listening(url) for url in (server, admin, metrics))

        stop_and_check_clean(process, output, signal.SIGINT, children)
        assert not kubeconfig.exists()
        assert not workdir.exists()
        assert not any(listening(url) for url in (server, admin, metrics))


def test_dev_without_operator_or_examples_comes_up_and_stops(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    with dev("--kubeconfig-out", str(kubeconfig), "--no-operator", "--no-examples") as (process, output):
        output.wait_for(lambda line: line == "No DesktopImages yet.", UP_TIMEOUT)
        server = output.value_after("kube-apiserver: ")
        admin = output.value_after("fake cloud admin API: ")
        assert "operator: not started (--no-operator)" in output.text

        kubectl = Kubectl(kubeconfig)
        crd = kubectl.json("get", "crd", "desktopimages.clouddesktop.yc.io")
        assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
        assert kubectl.json("get", "deskimg", "--all-namespaces")["items"] == []

        children = child_pids(process.pid)
        assert len(children) >= 4  # etcd, kube-apiserver, kube-controller-manager, fake cloud
        stop_and_check_clean(process, output, signal.SIGTERM, children)
        assert not kubeconfig.exists()
        assert not any(listening(url) for url in (server, admin))
