"""Fixtures shared by the controller's tests against the real API server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.counting_kube import CountingKube, counting_kube


@pytest.fixture
def kube(kubeconfig: Path) -> Iterator[CountingKube]:
    yield from counting_kube(kubeconfig)
