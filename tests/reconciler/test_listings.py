"""Folder listings: one serves many look-ups and is then let go (against the fake cloud); what its index
finds for an object is what the ownership rules say is the object's (pure)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from desktop_image_operator.api.constants import OWNER_UID_LABEL
from desktop_image_operator.cloud.types import CloudImage
from desktop_image_operator.reconciler.listings import FolderListings, Listing
from desktop_image_operator.reconciler.ownership import Owner, is_ours
from desktop_image_operator_dev.fakecloud import seeds
from tests.cloud.support import image
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
        await listings.listing(s.cloud, FOLDER)
    assert (await s.calls())["DesktopImageService.List"] == 1
    assert listings.held == 1


async def test_a_listing_too_old_to_serve_is_dropped_from_memory_and_listed_anew(s: Stand) -> None:
    listings = FolderListings(max_age_seconds=MAX_AGE)
    await listings.listing(s.cloud, FOLDER)
    await asyncio.sleep(MAX_AGE * 2)
    assert listings.held == 0  # nobody asked again: the folder's images are not kept for nothing
    await listings.listing(s.cloud, FOLDER)
    assert (await s.calls())["DesktopImageService.List"] == 2
    assert listings.held == 1


async def test_an_old_listings_expiry_leaves_the_listing_that_replaced_it(s: Stand) -> None:
    listings = FolderListings(max_age_seconds=1.0)
    await listings.listing(s.cloud, FOLDER)  # expires at about 1.0 s
    await asyncio.sleep(0.5)
    # A look-up that needs a listing from now on: a newer listing, expiring at about 1.5 s.
    await listings.listing(s.cloud, FOLDER, not_before=datetime.now(UTC))
    await asyncio.sleep(0.7)  # the first one's expiry has run by now
    assert listings.held == 1, "the first listing's expiry removed its successor"


CLUSTER = "5d1c0a2e-7f3b-4c8e-9a61-0b2d4e6f8a10"
ME = Owner.of("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", CLUSTER, "team-a", "golden")
EARLIER_ME = Owner.of("11111111-2222-4333-8444-555555555555", CLUSTER, "team-a", "golden")
NEIGHBOUR = Owner.of("66666666-7777-4888-9999-000000000000", CLUSTER, "team-a", "silver")
ELSEWHERE = Owner.of("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "another-cluster", "team-a", "golden")


def folder() -> list[CloudImage]:
    """An image for each way an image can stand to ME; three of them share its image name."""
    return [
        image("e3v-mine", "golden", labels=ME.labels()),
        image("e3v-earlier", "golden-old", labels=EARLIER_ME.labels()),
        image("e3v-neighbour", "silver", labels=NEIGHBOUR.labels()),
        image("e3v-elsewhere", "golden", labels=ELSEWHERE.labels()),
        image("e3v-by-hand", "golden", labels={"team": "a"}),
        # Our UID under another cluster's label: the UID decides, as in `claim`.
        image("e3v-moved", "moved", labels={**ELSEWHERE.labels(), OWNER_UID_LABEL: ME.uid}),
    ]


def ids(images: list[CloudImage]) -> list[str]:
    return sorted(found.id for found in images)


def test_the_index_finds_exactly_the_images_the_ownership_rules_call_ours() -> None:
    images = folder()
    expected = ids([found for found in images if is_ours(found.labels, ME)])
    assert ids(Listing(images).owned_by(ME)) == expected == ["e3v-earlier", "e3v-mine", "e3v-moved"]


def test_the_index_finds_nothing_for_an_object_with_no_images() -> None:
    stranger = Owner.of("12121212-3434-4565-8787-909090909090", CLUSTER, "team-b", "other")
    assert Listing(folder()).owned_by(stranger) == []


def test_an_image_stamped_for_two_reasons_is_found_once() -> None:
    listing = Listing([image("e3v-mine", "golden", labels=ME.labels())])  # our UID and our place
    assert ids(listing.owned_by(ME)) == ["e3v-mine"]


def test_images_by_name_include_every_holder_of_the_name() -> None:
    assert ids(Listing(folder()).named("golden")) == ["e3v-by-hand", "e3v-elsewhere", "e3v-mine"]
    assert Listing(folder()).named("nobody") == []


def test_an_image_added_after_the_listing_is_found_by_owner_and_by_name() -> None:
    listing = Listing(folder()[1:])
    listing.add(folder()[0])
    assert "e3v-mine" in ids(listing.owned_by(ME))
    assert "e3v-mine" in ids(listing.named("golden"))


async def test_a_listing_begun_before_an_object_existed_does_not_serve_its_look_up(s: Stand) -> None:
    listings = FolderListings(max_age_seconds=MAX_AGE)
    first = await listings.listing(s.cloud, FOLDER)
    assert await listings.listing(s.cloud, FOLDER, not_before=first.listed_at) is first
    later = await listings.listing(s.cloud, FOLDER, not_before=datetime.now(UTC))
    assert later is not first
    assert (await s.calls())["DesktopImageService.List"] == 2
