"""The operator's Kubernetes client against a real API server, remembering which calls reached it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from desktop_image_operator.kube import KubeApi, Login, kubeconfig_login


class CountingKube(KubeApi):
    """The real client; `calls` names each call that was made, in order."""

    def __init__(self, login: Login) -> None:
        super().__init__(login, timeout_seconds=10)
        self.calls: list[str] = []

    async def _call(
        self, what: str, method: str, path: str, *, within: float | None = None, **request: Any
    ) -> dict[str, Any]:
        self.calls.append(what)
        return await super()._call(what, method, path, within=within, **request)

    @property
    def secret_reads(self) -> int:
        return sum(1 for call in self.calls if call.startswith("read of Secret"))


async def counting_kube(kubeconfig: Path) -> AsyncIterator[CountingKube]:
    """A CountingKube for the cluster of `kubeconfig`, closed afterwards (a fixture's body)."""
    async with CountingKube(kubeconfig_login(kubeconfig)) as api:
        yield api
