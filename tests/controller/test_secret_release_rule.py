"""The credentials finalizer's release rule against a stand-in for the API server, where a test decides
what each listing shows and when watch events arrive."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from desktop_image_operator.controller.secret_guard import SecretGuard
from desktop_image_operator.kube import SecretMeta
from desktop_image_operator.reconciler.annotations import CREDENTIALS_FINALIZER, FINALIZER

NAMESPACE, SECRET = "team-a", "team-key"


def terminating(uid: str) -> dict[str, Any]:
    """A DesktopImage naming the Secret, being deleted and still carrying the operator's finalizer."""
    metadata = {"uid": uid, "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": [FINALIZER]}
    return {"metadata": metadata, "spec": {"credentialsRef": {"name": SECRET}}}


class StandIn:
    """The Kubernetes calls the guard makes: one listing, shown as it was when its call went out, and
    `meanwhile` run while that call is in flight (a watch event arriving, say)."""

    def __init__(self, listing: list[dict[str, Any]], meanwhile: Callable[[], None] = lambda: None) -> None:
        self.listing = listing
        self.meanwhile = meanwhile
        self.secrets = {SECRET: [CREDENTIALS_FINALIZER], "another-key": [CREDENTIALS_FINALIZER]}

    @property
    def finalizers(self) -> list[str]:
        return self.secrets[SECRET]

    async def desktop_image_pages(self, namespace: str | None) -> AsyncGenerator[list[dict[str, Any]]]:
        page = list(self.listing)
        self.meanwhile()
        yield page

    async def secret_metadata(self, namespace: str, name: str) -> SecretMeta:
        finalizers = tuple(self.secrets[name])
        return SecretMeta(uid=f"{name}-uid", resource_version="1", finalizers=finalizers, deleting=True)

    async def remove_secret_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        self.secrets[name].remove(finalizer)


async def test_a_check_reading_a_listing_made_before_a_finished_object_went_still_counts_it_finished() -> (
    None
):
    stand_in = StandIn([terminating("first"), terminating("last")])
    guard = SecretGuard(stand_in)  # type: ignore[arg-type]
    await guard.release_if_unused(NAMESPACE, SECRET, leaving_uid="first")
    assert stand_in.finalizers == [CREDENTIALS_FINALIZER]  # "last" is still at work

    # "first" goes while the last check's listing, which still shows it, is on its way.
    stand_in.meanwhile = lambda: guard.forget("first")
    await guard.release_if_unused(NAMESPACE, SECRET, leaving_uid="last")
    assert stand_in.finalizers == []


async def test_an_object_that_finished_earlier_does_not_hold_the_secret_for_a_later_check() -> None:
    stand_in = StandIn([terminating("retried")])
    guard = SecretGuard(stand_in)  # type: ignore[arg-type]
    await guard.release_if_unused(NAMESPACE, "another-key", leaving_uid="retried")
    assert stand_in.finalizers == [CREDENTIALS_FINALIZER]

    await guard.release_if_unused(NAMESPACE, SECRET)  # a switch away, or the sweep at a term's start
    assert stand_in.finalizers == []
