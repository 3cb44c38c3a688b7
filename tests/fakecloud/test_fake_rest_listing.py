"""List: paging, filters and ordering."""

from __future__ import annotations

from typing import Any

import httpx

from desktop_image_operator_dev.fakecloud import FakeCloud
from tests.support.clocks import ManualClock

from .helpers import IMAGES, assert_rest_error, copy_compute_image, ok_json


async def _make_images(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> list[str]:
    names = ["delta", "alpha", "echo", "charlie", "bravo"]
    for name in names:
        await copy_compute_image(http, auth, cloud.folder_id, cloud.compute_image_id, name)
        clock.advance(1)
    return names


async def _list(http: httpx.AsyncClient, auth: dict[str, str], **params: Any) -> dict[str, Any]:
    return ok_json(await http.get(IMAGES, params=params, headers=auth))


async def _walk_pages(
    http: httpx.AsyncClient, auth: dict[str, str], *, page_size: int, **params: Any
) -> list[str]:
    """The names on every page, in order, following nextPageToken to the last page."""
    seen: list[str] = []
    token = ""
    for _ in range(10):  # bounded: the tests list 5 images
        body = await _list(http, auth, pageSize=page_size, pageToken=token, **params)
        assert len(body["desktopImages"]) <= page_size
        seen.extend(image["name"] for image in body["desktopImages"])
        token = body.get("nextPageToken", "")
        if not token:
            return seen
    raise AssertionError(f"paging did not end; seen so far: {seen}")


async def test_paging_walks_every_image_once(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    names = await _make_images(cloud, http, auth, clock)
    seen = await _walk_pages(http, auth, folderId=cloud.folder_id, page_size=2)
    assert sorted(seen) == sorted(names)
    assert len(seen) == len(names)


async def test_page_size_default_and_limits(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    await _make_images(cloud, http, auth, clock)
    body = await _list(http, auth, folderId=cloud.folder_id)
    assert len(body["desktopImages"]) == 5
    assert "nextPageToken" not in body
    body = await _list(http, auth, folderId=cloud.folder_id, pageSize=0)
    assert len(body["desktopImages"]) == 5
    assert_rest_error(
        await http.get(IMAGES, params={"folderId": cloud.folder_id, "pageSize": 1001}, headers=auth),
        400,
        3,
        "page_size",
    )
    assert_rest_error(
        await http.get(IMAGES, params={"folderId": cloud.folder_id, "pageSize": "many"}, headers=auth), 400, 3
    )
    assert_rest_error(await http.get(IMAGES, headers=auth), 400, 3, "folder_id")
    assert_rest_error(
        await http.get(IMAGES, params={"folderId": cloud.folder_id, "pageToken": "garbage!"}, headers=auth),
        400,
        3,
    )


async def test_snake_case_query_parameters_work_too(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    await _make_images(cloud, http, auth, clock)
    body = await _list(http, auth, folder_id=cloud.folder_id, page_size=1)
    assert len(body["desktopImages"]) == 1


async def test_paging_survives_deletion_between_pages(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    await _make_images(cloud, http, auth, clock)
    first = await _list(http, auth, folderId=cloud.folder_id, pageSize=2, orderBy="name")
    assert [image["name"] for image in first["desktopImages"]] == ["alpha", "bravo"]
    # Remove the last image of the first page behind the client's back.
    response = await http.delete(f"/fake/images/{first['desktopImages'][1]['id']}")
    assert response.status_code == 200
    second = await _list(
        http, auth, folderId=cloud.folder_id, pageSize=2, orderBy="name", pageToken=first["nextPageToken"]
    )
    assert [image["name"] for image in second["desktopImages"]] == ["charlie", "delta"]


async def test_filters(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    await _make_images(cloud, http, auth, clock)

    async def names(expression: str) -> list[str]:
        body = await _list(http, auth, folderId=cloud.folder_id, filter=expression, orderBy="name")
        return [image["name"] for image in body.get("desktopImages", [])]

    assert await names('name="alpha"') == ["alpha"]
    assert await names("name = 'bravo'") == ["bravo"]
    assert await names("name=charlie") == ["charlie"]
    assert await names('name != "alpha"') == ["bravo", "charlie", "delta", "echo"]
    assert await names('name IN ("alpha", "echo", "zulu")') == ["alpha", "echo"]
    assert await names('name in ("alpha")') == ["alpha"]
    assert await names('name NOT IN ("alpha", "echo")') == ["bravo", "charlie", "delta"]
    assert await names('name != "alpha" AND name != "bravo"') == ["charlie", "delta", "echo"]
    assert await names('name="nothing"') == []
    assert await names("") == ["alpha", "bravo", "charlie", "delta", "echo"]


async def test_invalid_filters_are_invalid_argument(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for expression in (
        'status="ACTIVE"',
        "name",
        'name ~ "x"',
        'name IN "x"',
        'name IN ("x"',
        'name NOT "x"',
        'name="x" OR name="y"',
        'name="unterminated',
        "name=",
    ):
        response = await http.get(
            IMAGES, params={"folderId": cloud.folder_id, "filter": expression}, headers=auth
        )
        assert_rest_error(response, 400, 3, "filter")


async def test_order_by(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    names = await _make_images(cloud, http, auth, clock)

    async def ordered(order_by: str) -> list[str]:
        body = await _list(http, auth, folderId=cloud.folder_id, orderBy=order_by)
        return [image["name"] for image in body["desktopImages"]]

    assert await ordered("name") == sorted(names)
    assert await ordered("name desc") == sorted(names, reverse=True)
    assert await ordered("createdAt") == names
    assert await ordered("created_at desc") == list(reversed(names))
    assert_rest_error(
        await http.get(IMAGES, params={"folderId": cloud.folder_id, "orderBy": "size"}, headers=auth),
        400,
        3,
        "order_by",
    )


async def test_descending_pages(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    names = await _make_images(cloud, http, auth, clock)
    seen = await _walk_pages(http, auth, folderId=cloud.folder_id, page_size=2, orderBy="name desc")
    assert seen == sorted(names, reverse=True)


async def test_list_is_per_folder(cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await copy_compute_image(http, auth, cloud.second_folder_id, cloud.compute_image_id, "elsewhere")
    assert await _list(http, auth, folderId=cloud.folder_id) == {}
    body = await _list(http, auth, folderId=cloud.second_folder_id)
    assert [image["name"] for image in body["desktopImages"]] == ["elsewhere"]
