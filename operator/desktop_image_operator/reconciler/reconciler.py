"""The reconciler: observe the cloud, decide, take at most one action, say when to look again.

It is level-triggered: every run starts from the object as it is now and the cloud's answers, never from
which event woke it, so a restart, a replayed event or `kubectl replace` changes nothing. No run waits for
a cloud operation: a running one is recorded in `status.operation` and polled by later runs, so a spec
change, the pause annotation or a deletion takes effect while a long copy runs. The decisions themselves
are a pure function (`decide`) of an observation gathered first (`observe`); `act` performs the one
action decided on; the status a run builds and the outcome it ends with are in `run`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from desktop_image_operator.base import Fenced
from desktop_image_operator.cloud.types import CloudError, DesktopImageClient
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.act import act
from desktop_image_operator.reconciler.decide import decide, decide_release
from desktop_image_operator.reconciler.durations import OperationDurations
from desktop_image_operator.reconciler.failures import Failure, classify
from desktop_image_operator.reconciler.listings import FolderListings
from desktop_image_operator.reconciler.observe import Observer
from desktop_image_operator.reconciler.outcome import Events, Outcome, Result, StatusWriter
from desktop_image_operator.reconciler.ownership import AssumeOwnersExist, Owner, Owners
from desktop_image_operator.reconciler.resource import Resource
from desktop_image_operator.reconciler.timing import Timing
from desktop_image_operator.reconciler.working_state import Run

__all__ = ["Events", "Outcome", "Reconciler", "Result", "StatusWriter"]


class Reconciler:
    def __init__(
        self,
        *,
        timing: Timing | None = None,
        cluster_id: str = "",
        owners: Owners | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`cluster_id` identifies this cluster in the ownership labels; `owners` tells whether another
        object that owns an image still exists (by default it is assumed to)."""
        self.timing = timing or Timing()
        self.durations = OperationDurations()
        self.listings = FolderListings(
            max_age_seconds=self.timing.folder_listing_max_age_seconds, wall_clock=clock
        )
        self._observer = Observer(self.timing, self.listings, owners or AssumeOwnersExist())
        self._cluster_id = cluster_id
        self._now = clock

    def _run(self, resource: Resource, write: StatusWriter, events: Events) -> Run:
        me = Owner.of(resource.uid, self._cluster_id, resource.namespace, resource.name)
        return Run(resource, me, write, events, self._now(), self.timing, self.durations)

    async def report(
        self, resource: Resource, failure: Failure, write: StatusWriter, events: Events
    ) -> Outcome:
        """Record a failure found before any cloud call (no usable credentials, say)."""
        return await self._run(resource, write, events).fail(failure)

    # -- the live object ------------------------------------------------------------------------------

    async def reconcile(
        self, resource: Resource, cloud: DesktopImageClient, write: StatusWriter, events: Events
    ) -> Outcome:
        run = self._run(resource, write, events)
        if resource.paused:
            return await run.paused("Paused by the clouddesktop.yc.io/paused annotation.")
        try:
            seen = await self._observer.observe(resource, run.me, cloud, run.now)
        except CloudError as error:
            return await run.fail(classify(error, during="observe"))
        except Fenced as error:
            return await run.fail(fenced(error))
        try:
            return await act(run, cloud, seen, decide(seen, resource, run.now, self.timing))
        except Failure as failure:
            return await run.fail(failure)
        except Fenced as error:
            return await run.fail(fenced(error))

    # -- deletion -------------------------------------------------------------------------------------

    async def finalize(
        self, resource: Resource, cloud: DesktopImageClient | None, write: StatusWriter, events: Events
    ) -> Outcome:
        """Release the object: delete its cloud image (policy Delete) or leave it (Retain).

        Returns DELETED or RETAINED when the finalizer may go; otherwise an outcome to look again after.
        """
        run = self._run(resource, write, events)
        if resource.retains_image:
            if run.status.image_id:
                why = "observed only" if resource.observe_only else "deletionPolicy Retain"
                events.normal("ImageRetained", f"Cloud image {run.status.image_id} is kept ({why}).")
            return Outcome(Result.RETAINED, r.DELETING)
        if resource.paused:
            return await run.paused("Deletion waits: paused by the clouddesktop.yc.io/paused annotation.")
        assert cloud is not None, "only a Retain policy needs no cloud client"
        try:
            seen = await self._observer.observe(resource, run.me, cloud, run.now)
        except CloudError as error:
            return await run.fail(classify(error, during="delete"))
        except Fenced as error:
            return await run.fail(fenced(error))
        try:
            return await act(run, cloud, seen, decide_release(seen, resource, run.now))
        except Failure as failure:
            return await run.fail(failure)
        except Fenced as error:
            return await run.fail(fenced(error))


def fenced(error: Fenced) -> Failure:
    """A call the leader's fence refused or cancelled: its outcome is unknown, and nobody failed."""
    return Failure(r.CLOUD_UNAVAILABLE, str(error), fenced=True)
