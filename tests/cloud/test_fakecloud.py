"""The client against the fake Yandex Cloud over loopback, for both transports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from desktop_image_operator.base import Fence, Fenced
from desktop_image_operator.cloud import (
    CloudError,
    CloudSession,
    Code,
    CopyRequest,
    CredentialsError,
    DesktopImageClient,
    ImageStatus,
    open_cloud,
)
from desktop_image_operator.cloud.credentials import CachingTokenSource, IssuedToken
from desktop_image_operator_dev.fakecloud import FakeCloud, FakeCloudConfig, seeds

from .support import VirtualClock, other_rsa_key, private_pem, settings_for

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = ["rest", "grpc"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeCloud]:
    cloud = FakeCloud(config=FakeCloudConfig(copy_seconds=0.2, operation_seconds=0.05))
    async with cloud:
        yield cloud


@pytest.fixture(params=TRANSPORTS)
async def session(request: pytest.FixtureRequest, fake: FakeCloud) -> AsyncIterator[CloudSession]:
    async with open_cloud(settings_for(fake, request.param)) as opened:
        yield opened


@pytest.fixture
def client(session: CloudSession, fake: FakeCloud) -> DesktopImageClient:
    return session.client(session.token_sources.from_key(fake.authorized_key()))


class Admin:
    def __init__(self, fake: FakeCloud) -> None:
        self.base = fake.admin_url

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.request(method, self.base + path, json=body)
        response.raise_for_status()
        return response.json()

    async def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = (await self._call("GET", "/requests"))["requests"]
        return [entry for entry in entries if method is None or entry["method"] == method]

    async def images(self) -> list[dict[str, Any]]:
        images: list[dict[str, Any]] = (await self._call("GET", "/images"))["images"]
        return images

    async def fault(self, **rule: Any) -> None:
        await self._call("POST", "/faults", rule)

    async def config(self, **values: Any) -> None:
        await self._call("POST", "/config", values)


@pytest.fixture
def admin(fake: FakeCloud) -> Admin:
    return Admin(fake)


async def test_copy_from_a_desktop_follow_get_and_find(client: DesktopImageClient, fake: FakeCloud) -> None:
    request = CopyRequest(
        desktop_id=fake.stopped_desktop_id, name="analysts-base", description="d", labels={"owner": "uid-1"}
    )
    started = await client.copy(request, idempotency_key="uid-1-copy")
    assert started.image_id
    assert not started.done
    done = await client.follow_operation(started.id)
    assert done.succeeded
    assert done.image is not None
    assert done.image.id == started.image_id
    assert done.image.status is ImageStatus.ACTIVE
    image = await client.get_image(started.image_id)
    assert image.folder_id == fake.folder_id
    assert image.labels == {"owner": "uid-1"}
    assert isinstance(image.storage_size, int)
    assert image.storage_size > 0
    assert image.min_disk_size >= image.storage_size
    assert image.created_at is not None
    assert await client.find_images(fake.folder_id, "analysts-base") == [image]
    assert await client.find_images(fake.folder_id, "no-such-image") == []


async def test_copy_from_a_compute_image(client: DesktopImageClient, fake: FakeCloud) -> None:
    request = CopyRequest(
        compute_image_id=fake.compute_image_id, folder_id=fake.folder_id, name="from-compute"
    )
    done = await client.follow_operation((await client.copy(request, idempotency_key="k-compute")).id)
    assert done.succeeded
    assert done.image is not None
    assert done.image.name == "from-compute"
    assert done.image.folder_id == fake.folder_id


async def test_update_changes_only_masked_fields(client: DesktopImageClient, fake: FakeCloud) -> None:
    request = CopyRequest(
        desktop_id=fake.stopped_desktop_id, name="base", description="old", labels={"a": "1"}
    )
    image_id = (await client.follow_operation((await client.copy(request, idempotency_key="c")).id)).image_id
    assert image_id is not None
    updated = await client.update(
        image_id, mask={"description"}, name="ignored-name", description="new", idempotency_key="u1"
    )
    await client.follow_operation(updated.id)
    image = await client.get_image(image_id)
    assert (image.name, image.description, image.labels) == ("base", "new", {"a": "1"})
    relabelled = await client.update(
        image_id, mask=["labels", "name"], name="renamed", labels={"b": "2"}, idempotency_key="u2"
    )
    done = await client.follow_operation(relabelled.id)
    assert done.image is not None
    assert (done.image.name, done.image.description, done.image.labels) == ("renamed", "new", {"b": "2"})


async def test_delete_then_get_is_not_found_with_a_request_id(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    request = CopyRequest(desktop_id=fake.stopped_desktop_id, name="doomed")
    image_id = (await client.follow_operation((await client.copy(request, idempotency_key="c")).id)).image_id
    assert image_id is not None
    deleted = await client.follow_operation((await client.delete(image_id, idempotency_key="d")).id)
    assert deleted.succeeded
    assert deleted.image is None
    with pytest.raises(CloudError) as caught:
        await client.get_image(image_id)
    assert caught.value.code is Code.NOT_FOUND
    assert image_id in caught.value.message
    (logged,) = [
        entry for entry in await admin.requests("DesktopImageService.Get") if entry["code"] == "NOT_FOUND"
    ]
    assert caught.value.request_id == logged["requestId"]


async def test_the_same_idempotency_key_gives_the_same_operation(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    request = CopyRequest(desktop_id=fake.stopped_desktop_id, name="once")
    first = await client.copy(request, idempotency_key="uid-once")
    second = await client.copy(request, idempotency_key="uid-once")
    assert second.id == first.id
    assert second.image_id == first.image_id
    assert len(await admin.images()) == 1
    copies = await admin.requests("DesktopImageService.CopyFromDesktop")
    assert [entry["idempotencyKey"] for entry in copies] == ["uid-once", "uid-once"]


async def test_terminal_errors_map_to_cloud_errors(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    running = CopyRequest(desktop_id=fake.running_desktop_id, name="from-running")
    with pytest.raises(CloudError) as caught:
        await client.copy(running, idempotency_key="k-running")
    assert caught.value.code is Code.FAILED_PRECONDITION
    assert caught.value.request_id
    ok = CopyRequest(desktop_id=fake.stopped_desktop_id, name="taken")
    await client.copy(ok, idempotency_key="k-taken-1")
    with pytest.raises(CloudError) as conflict:
        await client.copy(ok, idempotency_key="k-taken-2")
    assert conflict.value.code is Code.ALREADY_EXISTS
    # Each was tried exactly once.
    codes = [entry["code"] for entry in await admin.requests("DesktopImageService.CopyFromDesktop")]
    assert codes == ["FAILED_PRECONDITION", "OK", "ALREADY_EXISTS"]


async def test_unavailable_is_retried_count_plus_one_times(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    await admin.fault(method="DesktopImageService.CopyFromDesktop", code="UNAVAILABLE", count=3)
    request = CopyRequest(desktop_id=fake.stopped_desktop_id, name="flaky")
    operation = await client.copy(request, idempotency_key="k-flaky")
    assert (await client.follow_operation(operation.id)).succeeded
    copies = await admin.requests("DesktopImageService.CopyFromDesktop")
    assert [entry["code"] for entry in copies] == ["UNAVAILABLE"] * 3 + ["OK"]
    assert {entry["idempotencyKey"] for entry in copies} == {"k-flaky"}
    assert len(await admin.images()) == 1


async def test_too_many_requests_slows_down_and_succeeds(
    session: CloudSession, client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    await admin.fault(method="DesktopImageService.List", code="RESOURCE_EXHAUSTED", count=2)
    began = time.monotonic()
    assert await client.find_images(fake.folder_id, "anything") == []
    elapsed = time.monotonic() - began
    # Two 429s in a row: a 0.3 s then a 0.6 s shared pause.
    assert elapsed >= 0.85
    codes = [entry["code"] for entry in await admin.requests("DesktopImageService.List")]
    assert codes == ["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", "OK"]
    assert session.limiter.cooldown.streak == 0


async def test_invalid_argument_is_not_retried(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    await admin.fault(method="DesktopImageService.Get", code="INVALID_ARGUMENT", count=1)
    with pytest.raises(CloudError) as caught:
        await client.get_image("e3vanything")
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert len(await admin.requests("DesktopImageService.Get")) == 1


async def test_a_dropped_copy_answer_is_retried_into_exactly_one_image(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    await admin.fault(method="DesktopImageService.CopyFromDesktop", dropResponse=1)
    request = CopyRequest(desktop_id=fake.stopped_desktop_id, name="dropped")
    operation = await client.copy(request, idempotency_key="k-drop")
    assert (await client.follow_operation(operation.id)).succeeded
    copies = await admin.requests("DesktopImageService.CopyFromDesktop")
    assert [entry["dropped"] for entry in copies] == [True, False]
    assert copies[0]["operationId"] == copies[1]["operationId"] == operation.id
    images = await admin.images()
    assert [image["name"] for image in images] == ["dropped"]


async def test_one_key_exchange_serves_every_call(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    for _ in range(3):
        await client.find_images(fake.folder_id, "x")
    exchanges = await admin.requests("IamTokenService.Create")
    assert [entry["code"] for entry in exchanges] == ["OK"]
    assert {entry["principal"] for entry in await admin.requests("DesktopImageService.List")} == {
        fake.service_account_id
    }


async def test_metadata_service_tokens(session: CloudSession, fake: FakeCloud, admin: Admin) -> None:
    client = session.client(session.token_sources.metadata())
    assert await client.find_images(fake.folder_id, "x") == []
    assert await client.find_images(fake.folder_id, "y") == []
    assert [entry["code"] for entry in await admin.requests("Metadata.Token")] == ["OK"]


async def test_a_key_the_cloud_does_not_know_is_a_credentials_error(
    session: CloudSession, fake: FakeCloud
) -> None:
    key = dict(fake.authorized_key())
    key["id"] = "ajeunknownkey0000001"
    client = session.client(session.token_sources.from_key(key))
    with pytest.raises(CredentialsError) as caught:
        await client.get_image("e3vanything")
    assert caught.value.code is Code.UNAUTHENTICATED


async def test_a_key_iam_cannot_verify_is_a_credentials_error(
    session: CloudSession, fake: FakeCloud, admin: Admin
) -> None:
    key = dict(fake.authorized_key())
    key["private_key"] = private_pem(other_rsa_key())  # the right key id, signed by another key
    client = session.client(session.token_sources.from_key(key))
    with pytest.raises(CredentialsError) as caught:
        await client.get_image("e3vanything")
    assert "signature" in caught.value.message
    assert [entry["code"] for entry in await admin.requests("IamTokenService.Create")] == ["UNAUTHENTICATED"]
    assert await admin.requests("DesktopImageService.Get") == []


@pytest.mark.parametrize("code", ["NOT_FOUND", "PERMISSION_DENIED", "INVALID_ARGUMENT"])
async def test_iam_refusing_the_key_with_any_final_code_is_a_credentials_error(
    code: str, session: CloudSession, fake: FakeCloud, admin: Admin
) -> None:
    await admin.fault(method="IamTokenService.Create", code=code, message="Key not found", count=1)
    client = session.client(session.token_sources.from_key(fake.authorized_key()))
    with pytest.raises(CredentialsError) as caught:
        await client.copy(CopyRequest(desktop_id=fake.stopped_desktop_id, name="x"), idempotency_key="k")
    # Not SourceNotFound material: the refusal is about the key, and the copy was never sent.
    assert code in caught.value.message
    assert caught.value.request_id
    assert [entry["code"] for entry in await admin.requests("IamTokenService.Create")] == [code]
    assert await admin.requests("DesktopImageService.CopyFromDesktop") == []


async def test_iam_being_down_is_no_credentials_error(
    session: CloudSession, fake: FakeCloud, admin: Admin
) -> None:
    await admin.fault(method="IamTokenService.Create", code="UNAVAILABLE")
    client = session.client(session.token_sources.from_key(fake.authorized_key()))
    with pytest.raises(CloudError) as caught:
        await client.get_image("e3vanything")
    assert caught.value.code is Code.UNAVAILABLE
    assert not isinstance(caught.value, CredentialsError)


class RefusedOnceSource(CachingTokenSource):
    """Hands out a token the cloud refuses, then good ones: exercises the 401 refresh path."""

    def __init__(self, fake: FakeCloud) -> None:
        super().__init__()
        self.fake = fake

    async def _issue(self) -> IssuedToken:
        if self.refresh_count == 0:
            return IssuedToken("t1.not-a-real-token", 3600)
        return IssuedToken(self.fake.issue_token(), 3600)


async def test_a_refused_token_is_refreshed_once(
    session: CloudSession, fake: FakeCloud, admin: Admin
) -> None:
    client = session.client(RefusedOnceSource(fake))
    assert await client.find_images(fake.folder_id, "x") == []
    assert [entry["code"] for entry in await admin.requests("DesktopImageService.List")] == [
        "UNAUTHENTICATED",
        "OK",
    ]


async def test_an_expired_static_token_is_unauthenticated(
    session: CloudSession, fake: FakeCloud, admin: Admin
) -> None:
    client = session.client(session.token_sources.static(fake.issue_token(ttl_seconds=0)))
    with pytest.raises(CloudError) as caught:
        await client.find_images(fake.folder_id, "x")
    assert caught.value.code is Code.UNAUTHENTICATED
    assert len(await admin.requests("DesktopImageService.List")) == 1


async def test_cancel_ends_a_running_copy(client: DesktopImageClient, fake: FakeCloud, admin: Admin) -> None:
    request = CopyRequest(desktop_id=fake.stopped_desktop_id, name="cancelled")
    started = await client.copy(request, idempotency_key="k-cancel")
    await client.cancel_operation(started.id)
    done = await client.follow_operation(started.id)
    assert done.done
    assert done.error is not None
    assert done.error.code is Code.CANCELLED
    assert await admin.images() == []


async def test_a_failed_operation_carries_its_error(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    await admin.fault(
        method="DesktopImageService.CopyFromDesktop", failOperation=1, code="INTERNAL", message="disk gone"
    )
    started = await client.copy(
        CopyRequest(desktop_id=fake.stopped_desktop_id, name="fails"), idempotency_key="k"
    )
    done = await client.follow_operation(started.id)
    assert done.done
    assert not done.succeeded
    assert done.error is not None
    assert (done.error.code, done.error.message) == (Code.INTERNAL, "disk gone")


async def test_an_exhausted_quota_is_reported_not_retried(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    await admin.config(imageQuota=1)
    await client.copy(CopyRequest(desktop_id=fake.stopped_desktop_id, name="first"), idempotency_key="k1")
    with pytest.raises(CloudError) as caught:
        await client.copy(
            CopyRequest(desktop_id=fake.stopped_desktop_id, name="second"), idempotency_key="k2"
        )
    assert caught.value.code is Code.RESOURCE_EXHAUSTED
    assert caught.value.quota_exceeded
    (violation,) = caught.value.quota_violations
    assert (violation.subject, violation.quota_metric) == (seeds.CLOUD_ID, "vdi.desktopImages.count")
    assert len(await admin.requests("DesktopImageService.CopyFromDesktop")) == 2


async def test_throttling_that_mentions_quota_is_still_throttling(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    await admin.fault(
        method="DesktopImageService.CopyFromDesktop", code=8, message="Request quota exceeded", count=1
    )
    request = CopyRequest(desktop_id=fake.stopped_desktop_id, name="worded")
    assert (await client.follow_operation((await client.copy(request, idempotency_key="k")).id)).succeeded
    codes = [entry["code"] for entry in await admin.requests("DesktopImageService.CopyFromDesktop")]
    assert codes == ["RESOURCE_EXHAUSTED", "OK"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_retry_after_of_two_minutes_is_waited_out_in_full(
    transport: str, fake: FakeCloud, admin: Admin
) -> None:
    # Virtual time: the client sleeps on this clock; the wall time keeps the JWTs valid for the fake.
    clock = VirtualClock(wall_start=time.time())
    await admin.fault(method="DesktopService.Get", code=8, retryAfterSeconds=120, count=1)
    async with open_cloud(settings_for(fake, transport), clock=clock) as session:
        client = session.client(session.token_sources.from_key(fake.authorized_key()))
        began = clock.monotonic()
        assert await clock.run(client.get_desktop_folder(fake.stopped_desktop_id)) == fake.folder_id
        waited = clock.monotonic() - began
    # Neither the 0.05 s backoff cap nor the 60 s cool-down cap of these settings cuts the hint short.
    assert 120.0 <= waited < 125.0
    codes = [entry["code"] for entry in await admin.requests("DesktopService.Get")]
    assert codes == ["RESOURCE_EXHAUSTED", "OK"]


async def test_get_desktop_folder(
    session: CloudSession, client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    assert await client.get_desktop_folder(fake.stopped_desktop_id) == fake.folder_id
    assert await client.get_desktop_folder(seeds.SECOND_FOLDER_DESKTOP_ID) == fake.second_folder_id
    with pytest.raises(CloudError) as caught:
        await client.get_desktop_folder("e3vnosuchdesktop0001")
    assert caught.value.code is Code.NOT_FOUND
    assert "e3vnosuchdesktop0001" in caught.value.message
    entries = await admin.requests("DesktopService.Get")
    assert [entry["code"] for entry in entries] == ["OK", "OK", "NOT_FOUND"]  # NOT_FOUND is not retried
    assert {entry["transport"] for entry in entries} == {session.settings.transport}
    assert {entry["principal"] for entry in entries} == {fake.service_account_id}
    assert caught.value.request_id == entries[-1]["requestId"]


async def test_get_desktop_folder_is_retried(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    await admin.fault(method="DesktopService.Get", code="UNAVAILABLE", count=2)
    assert await client.get_desktop_folder(fake.running_desktop_id) == fake.folder_id
    codes = [entry["code"] for entry in await admin.requests("DesktopService.Get")]
    assert codes == ["UNAVAILABLE", "UNAVAILABLE", "OK"]


async def test_the_update_mask_is_in_the_request_log(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    request = CopyRequest(desktop_id=fake.stopped_desktop_id, name="masked")
    image_id = (await client.follow_operation((await client.copy(request, idempotency_key="c")).id)).image_id
    assert image_id is not None
    # The refused first attempt is logged with its mask too.
    await admin.fault(method="DesktopImageService.Update", code="UNAVAILABLE", count=1)
    first = await client.update(
        image_id, mask={"labels", "description"}, description="d", labels={"a": "b"}, idempotency_key="u1"
    )
    await client.follow_operation(first.id)
    await client.follow_operation(
        (await client.update(image_id, mask={"name"}, name="n", idempotency_key="u2")).id
    )
    updates = await admin.requests("DesktopImageService.Update")
    assert [(entry["code"], entry["updateMask"]) for entry in updates] == [
        ("UNAVAILABLE", ["description", "labels"]),
        ("OK", ["description", "labels"]),
        ("OK", ["name"]),
    ]
    assert all(
        "updateMask" not in entry for entry in await admin.requests("DesktopImageService.CopyFromDesktop")
    )


async def test_without_honoured_keys_a_repeated_copy_is_already_exists(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    await admin.config(honorIdempotency=False)
    request = CopyRequest(desktop_id=fake.stopped_desktop_id, name="keyless")
    first = await client.copy(request, idempotency_key="same-key")
    with pytest.raises(CloudError) as caught:
        await client.copy(request, idempotency_key="same-key")
    assert caught.value.code is Code.ALREADY_EXISTS
    copies = await admin.requests("DesktopImageService.CopyFromDesktop")
    assert [(entry["code"], entry["idempotencyKey"]) for entry in copies] == [
        ("OK", "same-key"),
        ("ALREADY_EXISTS", "same-key"),
    ]
    # What survives a lost answer is the image itself: found by name, it is the first copy's.
    (found,) = await client.find_images(fake.folder_id, "keyless")
    assert found.id == first.image_id


async def test_without_honoured_keys_a_dropped_copy_answer_surfaces_as_already_exists(
    client: DesktopImageClient, fake: FakeCloud, admin: Admin
) -> None:
    await admin.config(honorIdempotency=False)
    await admin.fault(method="DesktopImageService.CopyFromDesktop", dropResponse=1)
    request = CopyRequest(desktop_id=fake.stopped_desktop_id, name="lost-answer")
    with pytest.raises(CloudError) as caught:
        await client.copy(request, idempotency_key="k-lost")
    assert caught.value.code is Code.ALREADY_EXISTS
    copies = await admin.requests("DesktopImageService.CopyFromDesktop")
    assert [(entry["dropped"], entry["code"]) for entry in copies] == [
        (True, "OK"),
        (False, "ALREADY_EXISTS"),
    ]
    (found,) = await client.find_images(fake.folder_id, "lost-answer")
    assert found.id == (await admin.images())[0]["id"]


# -- under the leader's fence -------------------------------------------------------------------------------

SLOW_COPY_SECONDS = 3.0


async def fenced_copy(fake: FakeCloud, admin: Admin, transport: str, fence: Fence, *, stop: float) -> None:
    """A copy the cloud takes SLOW_COPY_SECONDS to accept, stopped after `stop` seconds by the fence (it
    ends, or the test revokes it then); Fenced within moments of that, and nothing copied after all."""
    await admin.fault(method="DesktopImageService.CopyFromDesktop", latencyMs=SLOW_COPY_SECONDS * 1000)
    async with open_cloud(settings_for(fake, transport), gate=fence) as session:
        client = session.client(session.token_sources.from_key(fake.authorized_key()))
        request = CopyRequest(desktop_id=fake.stopped_desktop_id, name="fenced")
        copying = asyncio.create_task(client.copy(request, idempotency_key="k-fenced"))
        await asyncio.sleep(stop)
        fence.revoke()  # shut already when the deadline did it
        started = time.monotonic()
        with pytest.raises(Fenced):
            await copying
        assert time.monotonic() - started < 0.5
    await asyncio.sleep(SLOW_COPY_SECONDS)  # the latency the cloud would have taken before doing the work
    assert await admin.images() == []
    copies = await admin.requests("DesktopImageService.CopyFromDesktop")
    assert [entry["code"] for entry in copies] == ["CANCELLED"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_copy_outliving_the_fence_is_given_up_at_its_end_and_the_cloud_abandons_it(
    fake: FakeCloud, admin: Admin, transport: str
) -> None:
    fence = Fence()
    fence.grant(time.monotonic() + 0.5)
    await fenced_copy(fake, admin, transport, fence, stop=1.0)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_copy_in_flight_at_a_step_down_is_cancelled_and_the_cloud_abandons_it(
    fake: FakeCloud, admin: Admin, transport: str
) -> None:
    fence = Fence()
    fence.grant(time.monotonic() + 60.0)
    await fenced_copy(fake, admin, transport, fence, stop=0.5)
