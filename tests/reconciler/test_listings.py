"""Shared folder listings against the fake cloud: one listing serves many look-ups, then is let go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from desktop_image_operator.reconciler.listings import FolderListings
from desktop_image_operator_dev.fakecloud import seeds
from tests.reconciler.harness import Stand, stand

MAX_AGE = 0.3
FOLDER = seeds.FOLDER_ID


@pytest.fixture
async def s() -> AsyncIterator[Stand]:
    async with stand() as opened:
        yield opened


async def test_look_ups_within_the_age_share_one_listing(s: Stand) -> None:
    listings = FolderListings(max_age_seconds=60)
    for _ in range(3):
        await listings.images(s.cloud, FOLDER)
    assert (await s.calls())["DesktopImageService.List"] == 1
    assert listings.held == 1


async def test_a_listing_too_old_to_serve_is_dropped_from_memory_and_listed_anew(s: Stand) -> None:
    listings = FolderListings(max_age_seconds=MAX_AGE)
    await listings.images(s.cloud, FOLDER)
    await asyncio.sleep(MAX_AGE * 2)
    assert listings.held == 0  # nobody asked again: the folder's images are not kept for nothing
    await listings.images(s.cloud, FOLDER)
    assert (await s.calls())["DesktopImageService.List"] == 2
    assert listings.held == 1


async def test_an_old_listings_expiry_leaves_the_listing_that_replaced_it(s: Stand) -> None:
    listings = FolderListings(max_age_seconds=1.0)
    await listings.images(s.cloud, FOLDER)  # expires at about 1.0 s
    await asyncio.sleep(0.5)
    listings.forget(FOLDER)
    await listings.images(s.cloud, FOLDER)  # a newer listing, expiring at about 1.5 s
    await asyncio.sleep(0.7)  # the first one's expiry has run by now
    assert listings.held == 1, "the first listing's expiry removed its successor"
