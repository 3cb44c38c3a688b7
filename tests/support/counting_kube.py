"""The operator's Kubernetes client against a real API server, remembering which calls reached it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config

from desktop_image_operator.controller.kube import KubeApi

T = TypeVar("T")


class CountingKube(KubeApi):
    """The real client; `calls` names each call that was made, in order."""

    def __init__(self, configuration: client.Configuration) -> None:
        super().__init__(configuration, timeout_seconds=10)
        self.calls: list[str] = []

    async def _call(
        self, what: str, function: Callable[..., T], *args: Any, within: float | None = None
    ) -> T:
        self.calls.append(what)
        return await super()._call(what, function, *args, within=within)

    @property
    def secret_reads(self) -> int:
        return sum(1 for call in self.calls if call.startswith("read of Secret"))


def counting_kube(kubeconfig: Path) -> Iterator[CountingKube]:
    """A CountingKube for the cluster of `kubeconfig`, closed afterwards (a fixture's body)."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    api = CountingKube(configuration)
    yield api
    api.close()
