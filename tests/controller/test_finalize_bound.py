"""Deletions run a bounded number of steps at once, and release their credentials outside that bound."""

from __future__ import annotations

import asyncio
from typing import Any

from desktop_image_operator.cloud.settings import CloudSettings
from desktop_image_operator.controller.controller import Controller
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.reconciler.reasons import DELETING
from desktop_image_operator.reconciler.reconciler import Outcome, Result

OBJECTS = 40


def deleted_object(n: int) -> dict[str, Any]:
    metadata = {
        "uid": f"uid-{n}",
        "name": f"image-{n}",
        "namespace": "ns",
        "generation": 1,
        "resourceVersion": "1",
        "deletionTimestamp": "2026-01-01T00:00:00Z",
    }
    spec = {"source": {"imageId": "e3vimage"}, "credentialsRef": {"name": "team-key"}}
    return {"metadata": metadata, "spec": spec}


class CountingReconciler:
    """Deletes nothing; counts how many deletion steps run at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0

    async def finalize(self, *_: Any) -> Outcome:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        return Outcome(Result.RETAINED, DELETING)


class SlowGuard:
    """Releases that take long (waiting for a shared check, say); counts them and how many wait at once."""

    def __init__(self) -> None:
        self.released: list[str] = []
        self.waiting = 0
        self.most = 0

    async def release_if_unused(self, namespace: str, name: str, *, leaving_uid: str | None = None) -> None:
        self.waiting += 1
        self.most = max(self.most, self.waiting)
        await asyncio.sleep(0.05)
        self.waiting -= 1
        self.released.append(str(leaving_uid))


async def test_a_mass_deletion_runs_no_more_steps_at_once_than_it_has_threads_for_kubernetes_calls() -> None:
    settings = RunSettings(kube_workers=3, cloud=CloudSettings(max_concurrency=8))
    reconciler, guard = CountingReconciler(), SlowGuard()
    controller = Controller(
        settings=settings,
        reconciler=reconciler,  # type: ignore[arg-type]
        credentials=None,  # type: ignore[arg-type]
        kube=None,  # type: ignore[arg-type]
        guard=guard,  # type: ignore[arg-type]
    )
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(controller.finalize(deleted_object(n)) for n in range(OBJECTS))), timeout=10
    )
    assert {outcome.result for outcome in outcomes} == {Result.RETAINED}
    assert reconciler.most == 3
    assert sorted(guard.released) == sorted(f"uid-{n}" for n in range(OBJECTS))
    assert guard.most > 3  # waiting for a release takes no step's place
