"""When the controller first looks at an object it has just seen."""

from __future__ import annotations

from typing import Any

from desktop_image_operator.controller.controller import Controller
from desktop_image_operator.reconciler.annotations import FINALIZER
from desktop_image_operator.reconciler.reconciler import Reconciler


def new_object(version: int, *finalizers: str) -> dict[str, Any]:
    metadata = {
        "uid": "uid-1",
        "name": "image-1",
        "namespace": "ns",
        "generation": 1,
        "resourceVersion": str(version),
        "finalizers": list(finalizers),
    }
    return {"metadata": metadata, "spec": {"source": {"desktopId": "d1"}}}


async def test_a_new_object_is_first_reconciled_once_kopf_has_added_the_finalizer(
    served: tuple[Controller, Reconciler],
) -> None:
    controller, _ = served
    controller.notice(new_object(1))
    assert controller.due_in("uid-1") is None, "a copy could start before a deletion waits for it"

    controller.notice(new_object(2, FINALIZER))
    assert controller.due_in("uid-1") == 0.0


async def test_someone_elses_finalizer_does_not_stand_for_the_operators(
    served: tuple[Controller, Reconciler],
) -> None:
    controller, _ = served
    controller.notice(new_object(1, "example.com/keep"))
    assert controller.due_in("uid-1") is None
