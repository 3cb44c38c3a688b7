"""The Operation service over REST: Get and best-effort Cancel."""

from __future__ import annotations

import httpx
import pytest

from desktop_image_operator_dev.fakecloud import FakeCloud
from tests.support.clocks import ManualClock

from .helpers import IMAGES, assert_rest_error, copy_from_desktop, get_image, get_operation


@pytest.mark.parametrize("verb", ["GET", "POST"])
async def test_cancel_a_running_copy_removes_the_image(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock, verb: str
) -> None:
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "cancelled")
    image_id = operation["metadata"]["imageId"]
    response = await http.request(verb, f"/operations/{operation['id']}:cancel", headers=auth)
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["id"] == operation["id"]
    assert cancelled["done"] is True
    assert cancelled["error"]["code"] == 1  # CANCELLED
    assert "response" not in cancelled
    assert cancelled["metadata"]["imageId"] == image_id
    assert_rest_error(await http.get(f"{IMAGES}/{image_id}", headers=auth), 404, 5)
    # Later reads agree; time passing changes nothing.
    clock.advance(60)
    assert (await get_operation(http, auth, operation["id"]))["error"]["code"] == 1
    # The name is free again.
    await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "cancelled")


async def test_cancel_a_delete_keeps_the_image(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "kept")
    image_id = operation["metadata"]["imageId"]
    clock.advance(10)
    delete = (await http.delete(f"{IMAGES}/{image_id}", headers=auth)).json()
    cancelled = (await http.post(f"/operations/{delete['id']}:cancel", headers=auth)).json()
    assert cancelled["error"]["code"] == 1
    assert (await get_image(http, auth, image_id))["status"] == "ACTIVE"


async def test_cancel_a_finished_operation_changes_nothing(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str], clock: ManualClock
) -> None:
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "finished")
    clock.advance(10)
    done = await get_operation(http, auth, operation["id"])
    response = await http.get(f"/operations/{operation['id']}:cancel", headers=auth)
    assert response.json() == done
    assert (await get_image(http, auth, operation["metadata"]["imageId"]))["status"] == "ACTIVE"


async def test_unknown_operation_is_not_found(http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert_rest_error(
        await http.get("/operations/e3vnosuchop000000000", headers=auth), 404, 5, "e3vnosuchop000000000"
    )
    assert_rest_error(await http.post("/operations/e3vnosuchop000000000:cancel", headers=auth), 404, 5)


async def test_operation_calls_need_a_token(
    cloud: FakeCloud, http: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    operation = await copy_from_desktop(http, auth, cloud.stopped_desktop_id, "x")
    assert_rest_error(await http.get(f"/operations/{operation['id']}"), 401, 16)
    assert_rest_error(await http.post(f"/operations/{operation['id']}:cancel"), 401, 16)
