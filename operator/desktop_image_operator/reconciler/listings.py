"""Recent listings of folders, shared by every object that looks for its image in the same folder.

A look-up by ownership label must list the whole folder (List filters by name only). When thousands of
objects are created together, each would list the same folder: instead one listing serves them all for
a short while. It stays safe because the look-up only has to see images made before this process's
copies were recorded: an image from an earlier process is older than the first listing, and a copy of
this process whose answer was lost drops the folder's listing (`forget`), so the next look-up lists anew.
A listing is dropped once it is too old to serve: a folder of thousands of images is not kept for nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from typing import cast

from desktop_image_operator.cloud.types import CloudImage, DesktopImageClient


class FolderListings:
    def __init__(self, *, max_age_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age = max_age_seconds
        self._clock = clock
        self._listed: dict[tuple[Hashable, str], tuple[float, list[CloudImage]]] = {}
        self._locks: dict[tuple[Hashable, str], asyncio.Lock] = {}

    async def images(self, cloud: DesktopImageClient, folder_id: str) -> list[CloudImage]:
        """The folder's images, listed at most `max_age_seconds` ago with the same credentials."""
        key = (_credentials_of(cloud), folder_id)
        async with self._locks.setdefault(key, asyncio.Lock()):  # one listing at a time per folder
            listed = self._listed.get(key)
            if listed is not None and self._clock() - listed[0] < self._max_age:
                return listed[1]
            images = await cloud.find_images(folder_id)
            listed = self._listed[key] = (self._clock(), images)
            asyncio.get_running_loop().call_later(self._max_age, self._expire, key, listed)
            return images

    def add(self, cloud: DesktopImageClient, image: CloudImage) -> None:
        """An image this process just made: later look-ups must find it even before the listing ages."""
        listed = self._listed.get((_credentials_of(cloud), image.folder_id))
        if listed is not None:
            listed[1].append(image)

    @property
    def held(self) -> int:
        """How many folders' listings are kept now."""
        return len(self._listed)

    def _expire(self, key: tuple[Hashable, str], listed: tuple[float, list[CloudImage]]) -> None:
        if self._listed.get(key) is listed:  # not replaced or forgotten meanwhile
            del self._listed[key]

    def forget(self, folder_id: str) -> None:
        """A copy into this folder may have made an image we were not told about: list anew next time."""
        for key in [key for key in self._listed if key[1] == folder_id]:
            del self._listed[key]


def _credentials_of(cloud: DesktopImageClient) -> Hashable:
    # Objects share a listing only when they call with the same credentials (one token source per key),
    # so no object learns of images its own credentials could not list.
    return cast("Hashable", getattr(cloud, "token_source", cloud))
