"""Objects waiting on an operation poll again at once when the operator learns how long operations take."""

from __future__ import annotations

from typing import Any

from desktop_image_operator.controller.controller import Controller
from desktop_image_operator.reconciler.annotations import FINALIZER
from desktop_image_operator.reconciler.reconciler import Outcome, Reconciler, Result


def body_of(uid: str) -> dict[str, Any]:
    # Ready at its generation, nothing running: its first look is spread over the hour-long resync.
    ready = {"type": "Ready", "status": "True", "observedGeneration": 1}
    status = {"observedGeneration": 1, "conditions": [ready]}
    metadata = {"uid": uid, "name": uid, "namespace": "ns", "generation": 1, "finalizers": [FINALIZER]}
    return {"metadata": metadata, "status": status}


def finish(controller: Controller, uid: str, outcome: Outcome) -> None:
    """A reconcile of `uid` ended with `outcome`; its own next run is pushed far out of the test."""
    controller.notice(body_of(uid))
    controller.record(controller.state(uid), outcome)
    controller._scheduler.schedule(uid, 3000.0)  # type: ignore[union-attr]


def progressing(after: float) -> Outcome:
    return Outcome(Result.PROGRESSING, "Copying", requeue_after=after)


async def test_the_first_learned_duration_wakes_every_object_waiting_on_an_operation(
    served: tuple[Controller, Reconciler],
) -> None:
    controller, reconciler = served
    for n in range(3):
        finish(controller, f"waiting-{n}", progressing(8.0))
    assert all((controller.state(f"waiting-{n}").delay or 0.0) >= 8.0 for n in range(3))

    reconciler.durations.observe("Copy", 10.0)  # one copy was seen to end
    finish(controller, "finished", Outcome(Result.READY, "Available"))
    for n in range(3):
        assert controller.state(f"waiting-{n}").delay == 0.0
        assert controller.due_in(f"waiting-{n}") == 0.0


async def test_later_durations_of_a_known_kind_wake_nobody(served: tuple[Controller, Reconciler]) -> None:
    controller, reconciler = served
    reconciler.durations.observe("Copy", 10.0)
    finish(controller, "first", Outcome(Result.READY, "Available"))
    finish(controller, "waiting", progressing(9.0))

    reconciler.durations.observe("Copy", 11.0)
    finish(controller, "second", Outcome(Result.READY, "Available"))
    assert (controller.due_in("waiting") or 0.0) > 2000.0


async def test_an_object_no_longer_waiting_is_not_woken(served: tuple[Controller, Reconciler]) -> None:
    controller, reconciler = served
    finish(controller, "settled", progressing(8.0))
    finish(controller, "settled", Outcome(Result.READY, "Available"))

    reconciler.durations.observe("Copy", 10.0)
    finish(controller, "finished", Outcome(Result.READY, "Available"))
    assert (controller.due_in("settled") or 0.0) > 2000.0


async def test_a_deleted_object_is_forgotten_and_never_woken(served: tuple[Controller, Reconciler]) -> None:
    controller, reconciler = served
    finish(controller, "deleted", progressing(8.0))
    controller.forget(body_of("deleted"))

    reconciler.durations.observe("Copy", 10.0)
    finish(controller, "finished", Outcome(Result.READY, "Available"))
    assert controller.due_in("deleted") is None
