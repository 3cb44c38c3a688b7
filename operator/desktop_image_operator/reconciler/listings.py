"""Recent listings of folders, shared by every object that looks for its image in the same folder.

A look-up by ownership label must list the whole folder (List filters by name only). When thousands of
objects are created together, each would list the same folder: instead one listing serves them all for
a short while. A listing serves only look-ups it cannot mislead: one made before an object existed may
still hold an earlier object's image (deleted since) or miss one made since, so a look-up says from when
its listing must be (`not_before`). What a listing shows is read again by ID before anything acts on it.
A listing is dropped once it is too old to serve: a folder of thousands of images is not kept for nothing.

A listing is indexed by owner and by name when it is made: thousands of objects each scanning a folder of
thousands of images was the largest part of the operator's work in a burst of new objects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime
from typing import cast

from desktop_image_operator.cloud.types import CloudImage, DesktopImageClient
from desktop_image_operator.reconciler.ownership import Owner, is_ours


class Listing:
    """One folder's images, found the ways a look-up asks: by owning object, and by name."""

    def __init__(self, images: Iterable[CloudImage], listed_at: datetime | None = None) -> None:
        # When the List began: nothing made before this instant is missing from it.
        self.listed_at = listed_at or datetime.min.replace(tzinfo=UTC)
        self._by_uid: dict[str, list[CloudImage]] = {}
        self._by_place: dict[tuple[str, str, str], list[CloudImage]] = {}
        self._by_name: dict[str, list[CloudImage]] = {}
        for image in images:
            self.add(image)

    def add(self, image: CloudImage) -> None:
        if (owner := Owner.from_labels(image.labels)) is not None:
            self._by_uid.setdefault(owner.uid, []).append(image)
            self._by_place.setdefault(_place(owner), []).append(image)
        self._by_name.setdefault(image.name, []).append(image)

    def owned_by(self, me: Owner) -> list[CloudImage]:
        """The images that are `me`'s (see `is_ours`)."""
        # Only images stamped with our UID or with our cluster, namespace and name can be ours; the
        # ownership rules themselves stay in `is_ours`, which decides among these few.
        candidates = self._by_uid.get(me.uid, []) + self._by_place.get(_place(me), [])
        unique = {id(image): image for image in candidates}.values()
        return [image for image in unique if is_ours(image.labels, me)]

    def named(self, name: str) -> list[CloudImage]:
        return list(self._by_name.get(name, ()))


def _place(owner: Owner) -> tuple[str, str, str]:
    return owner.cluster, owner.namespace, owner.name


class FolderListings:
    def __init__(
        self,
        *,
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._max_age = max_age_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._listed: dict[tuple[Hashable, str], tuple[float, Listing]] = {}
        self._locks: dict[tuple[Hashable, str], asyncio.Lock] = {}

    async def listing(
        self, cloud: DesktopImageClient, folder_id: str, *, not_before: datetime | None = None
    ) -> Listing:
        """The folder's images, listed at most `max_age_seconds` ago with the same credentials, and not
        begun before `not_before` (a listing made by this very call always serves)."""
        key = (_credentials_of(cloud), folder_id)
        async with self._locks.setdefault(key, asyncio.Lock()):  # one listing at a time per folder
            listed = self._listed.get(key)
            if listed is not None and self._serves(listed, not_before):
                return listed[1]
            started = self._wall_clock()
            listing = Listing(await cloud.find_images(folder_id), listed_at=started)
            listed = self._listed[key] = (self._clock(), listing)
            asyncio.get_running_loop().call_later(self._max_age, self._expire, key, listed)
            return listing

    def _serves(self, listed: tuple[float, Listing], not_before: datetime | None) -> bool:
        young = self._clock() - listed[0] < self._max_age
        return young and (not_before is None or listed[1].listed_at >= not_before)

    @property
    def held(self) -> int:
        """How many folders' listings are kept now."""
        return len(self._listed)

    def _expire(self, key: tuple[Hashable, str], listed: tuple[float, Listing]) -> None:
        if self._listed.get(key) is listed:  # not replaced or forgotten meanwhile
            del self._listed[key]


def _credentials_of(cloud: DesktopImageClient) -> Hashable:
    # Objects share a listing only when they call with the same credentials (one token source per key),
    # so no object learns of images its own credentials could not list.
    return cast("Hashable", getattr(cloud, "token_source", cloud))
