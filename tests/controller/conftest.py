"""Fixtures shared by the controller's tests: a serving controller without a cloud, and the operator's
Kubernetes client against the real API server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from desktop_image_operator.controller.controller import Controller
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.reconciler.reconciler import Reconciler
from tests.support.counting_kube import CountingKube, counting_kube


class NoSecrets:
    """Credentials with no Secret kept: what a term of service starts from."""

    def clear(self) -> None:
        return None


class NoGuard:
    """A Secret guard with no Secret to look after."""

    async def sweep(self, namespaces: Sequence[str]) -> None:
        return None

    def forget(self, uid: str) -> None:
        return None


@pytest.fixture
async def served() -> AsyncIterator[tuple[Controller, Reconciler]]:
    # Only the bookkeeping around reconciles is exercised: no cloud, API server or Secrets are needed,
    # and no test lets an object fall due (so the scheduler never runs one).
    reconciler = Reconciler()
    controller = Controller(
        settings=RunSettings(resync_seconds=3600.0),
        reconciler=reconciler,
        credentials=NoSecrets(),  # type: ignore[arg-type]
        kube=None,  # type: ignore[arg-type]
        guard=NoGuard(),  # type: ignore[arg-type]
    )
    async with controller.serving():
        yield controller, reconciler


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[CountingKube]:
    async for api in counting_kube(kubeconfig):
        yield api
