"""How the operator configures kopf: its bookkeeping under our names, and bounded bursts."""

from __future__ import annotations

import kopf

from desktop_image_operator.controller.handlers import LIST_PAGE_SIZE, NoDiffBase, configure_kopf
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
