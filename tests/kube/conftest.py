"""Fixtures of the kube client's tests: the client against the real API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.counting_kube import CountingKube, counting_kube


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[CountingKube]:
    async for api in counting_kube(kubeconfig):
        yield api
