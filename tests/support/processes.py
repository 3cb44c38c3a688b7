"""Driving the real pieces from tests: the fake cloud's CLI and the operator's CLI as child processes.

They are the local stack's (`desktop_image_operator_dev.devenv.stack`) with what tests want: quick operations
and retries, and a fake cloud that a test can reset to the config it started with.
"""

from __future__ import annotations

from pathlib import Path

from desktop_image_operator_dev.devenv.stack import FakeCloudChild, OperatorChild, wait_until

__all__ = ["FakeCloudProcess", "OperatorProcess", "wait_until"]

# Tests watch seconds, not minutes: poll and retry quickly.
QUICK_SETTINGS = {"OPERATION_POLL_SECONDS": "0.2", "RETRY_BASE_SECONDS": "1"}


class FakeCloudProcess(FakeCloudChild):
    """`desktop-image-operator fake-cloud` with quick operations, and its admin API."""

    def __init__(self, workdir: Path, *, copy_seconds: float = 1.0, operation_seconds: float = 0.5) -> None:
        super().__init__(workdir, copy_seconds=copy_seconds, operation_seconds=operation_seconds)
        self.defaults = self.config()

    def reset(self) -> None:
        """No images, requests or faults, and the config the fake started with."""
        super().reset()
        self.config(**self.defaults)


class OperatorProcess(OperatorChild):
    """`desktop-image-operator run` for a test's namespace, configured by environment variables.

    `extra_env` is applied last (None removes a variable). No liveness endpoint: starting waits for the
    metrics endpoint."""

    start_timeout = 30.0

    def __init__(
        self,
        workdir: Path,
        kubeconfig: Path,
        cloud: FakeCloudChild,
        *,
        namespace: str,
        transport: str = "rest",
        extra_env: dict[str, str | None] | None = None,
    ) -> None:
        super().__init__(
            workdir,
            cloud,
            kubeconfig=kubeconfig,
            settings={"NAMESPACE": namespace, "TRANSPORT": transport, **QUICK_SETTINGS},
            health_server=False,
            overrides=extra_env,
        )
