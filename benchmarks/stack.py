"""The pieces under test as child processes on loopback: the fake cloud and the operator.

They are the local stack's (`desktop_image_operator_dev.devenv.stack`), whose children die with us even
when we are killed and whose waits are all bounded, with what the benchmarks add: windows on the fake
cloud's request log, and the operator's memory and CPU time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks import system
from desktop_image_operator_dev.devenv.stack import FakeCloudChild, OperatorChild


class FakeCloud(FakeCloudChild):
    """`desktop-image-operator fake-cloud` and its admin API (`/fake/...`)."""

    admin_timeout = 30.0

    def __init__(self, workdir: Path, *, copy_seconds: float, operation_seconds: float) -> None:
        super().__init__(workdir, copy_seconds=copy_seconds, operation_seconds=operation_seconds)
        self._seq = 0

    def mark(self) -> int:
        """The sequence number of the latest logged call: calls after it are `calls_since(mark)`."""
        self.calls_since(self._seq)
        return self._seq

    def calls_since(self, seq: int) -> list[dict[str, Any]]:
        entries = self.requests(after=seq)
        if entries:
            self._seq = max(self._seq, max(int(entry["seq"]) for entry in entries))
        return entries

    def image_count(self) -> int:
        return len(self.images())


class Operator(OperatorChild):
    """`desktop-image-operator run` for one namespace, configured by environment variables: settings of our
    own only, none inherited from the caller's environment."""

    stop_grace = 30.0

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
        python: str | Path = sys.executable,
    ) -> None:
        super().__init__(
            workdir,
            cloud,
            kubeconfig=kubeconfig,
            settings={"NAMESPACE": namespace, "TRANSPORT": transport, **(settings or {})},
            log=workdir / f"operator-{label}.log",
            inherit_settings=False,
            python=python,
        )

    def memory(self) -> dict[str, int]:
        self.check()
        return system.process_memory(self.pid)

    def cpu_seconds(self) -> float:
        self.check()
        return round(system.process_cpu_seconds(self.pid), 2)
