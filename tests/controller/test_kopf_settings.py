"""How the operator configures kopf: its bookkeeping under our names, and bounded bursts."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest

from desktop_image_operator.controller.handlers import (
    LIST_PAGE_SIZE,
    SPARE_CONNECTIONS,
    NoDiffBase,
    configure_kopf,
    connection_limit,
    kopf_session,
)
from desktop_image_operator.kube import kubeconfig_login
from desktop_image_operator.reconciler.annotations import FINALIZER


def configured() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    return settings


def test_kopf_lists_objects_in_pages_so_a_start_never_decodes_every_object_at_once() -> None:
    settings = configured()
    assert kopf.OperatorSettings().watching.chunk_size is None, "kopf's default lists everything at once"
    assert settings.watching.chunk_size == LIST_PAGE_SIZE
    assert 0 < LIST_PAGE_SIZE <= 500


def test_kopf_keeps_no_last_handled_copy_and_uses_the_operators_finalizer() -> None:
    settings = configured()
    assert isinstance(settings.persistence.diffbase_storage, NoDiffBase)
    assert settings.persistence.finalizer == FINALIZER


def test_kopf_workers_of_quiet_objects_end_within_a_second() -> None:
    assert configured().queueing.idle_timeout <= 1.0


def test_kopf_connections_are_bounded_with_room_for_every_watch() -> None:
    cluster_wide, two_namespaces = connection_limit([]), connection_limit(["team-a", "team-b"])
    assert SPARE_CONNECTIONS + 1 < cluster_wide < two_namespaces
    assert connection_limit([f"team-{n}" for n in range(50)]) > 50 + SPARE_CONNECTIONS


def test_kopf_connections_are_unbounded_when_namespace_patterns_leave_the_watches_unknown() -> None:
    assert connection_limit(["team-a", "team-*"]) == 0  # aiohttp's "no limit"


@pytest.mark.controlplane
@pytest.mark.timeout(60)
async def test_kopfs_session_logs_in_as_the_operator_with_a_bounded_pool(kubeconfig: Path) -> None:
    context = await kopf_session(kubeconfig_login(kubeconfig), ["team-a"])
    async with context.aiohttp_session as session:
        assert session.connector is not None
        assert session.connector.limit == connection_limit(["team-a"])
        async with session.get(f"{context.server}/api/v1/namespaces/kube-system") as response:
            assert response.status == 200
            assert (await response.json())["metadata"]["name"] == "kube-system"
