"""Loops waiting on an operation poll again at once when the operator learns how long such operations take."""

from __future__ import annotations

from typing import Any

from desktop_image_operator.controller.controller import Controller, ObjectState
from desktop_image_operator.controller.settings import RunSettings
from desktop_image_operator.reconciler.reconciler import Outcome, Reconciler, Result


def state_of(uid: str) -> ObjectState:
    body: dict[str, Any] = {"metadata": {"uid": uid, "name": uid, "namespace": "ns"}}
    return ObjectState(latest=body)


def controller_with(reconciler: Reconciler) -> Controller:
    # Only the bookkeeping after a reconcile is exercised: no cloud, API server or Secrets are needed.
    return Controller(
        settings=RunSettings(),
        reconciler=reconciler,
        credentials=None,
        kube=None,
        guard=None,  # type: ignore[arg-type]
    )


def test_the_first_learned_duration_wakes_every_loop_waiting_on_an_operation() -> None:
    reconciler = Reconciler()
    controller = controller_with(reconciler)
    waiting = [state_of(f"waiting-{n}") for n in range(3)]
    for state in waiting:
        controller.record(state, Outcome(Result.PROGRESSING, "Copying", requeue_after=8.0))
    assert all(state.delay is not None and state.delay >= 8.0 for state in waiting)

    reconciler.durations.observe("Copy", 10.0)  # one copy was seen to end
    controller.record(state_of("finished"), Outcome(Result.READY, "Available"))
    assert all(state.delay == 0.0 and state.wake.is_set() for state in waiting)


def test_later_durations_of_a_known_kind_wake_nobody() -> None:
    reconciler = Reconciler()
    controller = controller_with(reconciler)
    reconciler.durations.observe("Copy", 10.0)
    controller.record(state_of("first"), Outcome(Result.READY, "Available"))
    waiting = state_of("waiting")
    controller.record(waiting, Outcome(Result.PROGRESSING, "Copying", requeue_after=9.0))
    waiting.wake.clear()

    reconciler.durations.observe("Copy", 11.0)
    controller.record(state_of("second"), Outcome(Result.READY, "Available"))
    assert not waiting.wake.is_set()


def test_a_loop_no_longer_waiting_is_not_woken() -> None:
    reconciler = Reconciler()
    controller = controller_with(reconciler)
    settled = state_of("settled")
    controller.record(settled, Outcome(Result.PROGRESSING, "Copying", requeue_after=8.0))
    controller.record(settled, Outcome(Result.READY, "Available"))
    settled.wake.clear()

    reconciler.durations.observe("Copy", 10.0)
    controller.record(state_of("finished"), Outcome(Result.READY, "Available"))
    assert not settled.wake.is_set()
