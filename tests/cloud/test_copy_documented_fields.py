"""Copies against a cloud that accepts only the fields the published API pages list: the client falls back
to a bare copy once, remembers it for the session, and never sends labels when told not to."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError

from desktop_image_operator.cloud import (
    CloudError,
    CloudSettings,
    Code,
    CopyRequest,
    DesktopImageClient,
    open_cloud,
)
from desktop_image_operator.cloud.client import documented_key
from desktop_image_operator_dev.fakecloud import FakeCloud, FakeCloudConfig, methods

from .support import settings_for

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = ["rest", "grpc"]
SOURCES = ["desktop", "compute-image"]
COPY_METHODS = (methods.COPY, methods.COPY_FROM_DESKTOP)
OWNER = {"owner": "uid-1"}


@pytest.fixture
async def strict_fake() -> AsyncIterator[FakeCloud]:
    cloud = FakeCloud(
        config=FakeCloudConfig(copy_seconds=0.05, operation_seconds=0.05, strict_copy_fields=True)
    )
    async with cloud:
        yield cloud


@pytest.fixture
async def lenient_fake() -> AsyncIterator[FakeCloud]:
    cloud = FakeCloud(config=FakeCloudConfig(copy_seconds=0.05, operation_seconds=0.05))
    async with cloud:
        yield cloud


def labelled(fake: FakeCloud, source: str, name: str) -> CopyRequest:
    if source == "desktop":
        return CopyRequest(desktop_id=fake.stopped_desktop_id, name=name, description="d", labels=OWNER)
    return CopyRequest(
        compute_image_id=fake.compute_image_id,
        folder_id=fake.folder_id,
        name=name,
        description="d",
        labels=OWNER,
    )


def copy_calls(fake: FakeCloud) -> list[tuple[str, str | None]]:
    """The code and idempotency key of every copy the fake was sent, in order."""
    entries = fake.state.requests.entries()
    return [(entry["code"], entry["idempotencyKey"]) for entry in entries if entry["method"] in COPY_METHODS]


async def copy_and_wait(client: DesktopImageClient, request: CopyRequest, key: str) -> str:
    operation = await client.follow_operation((await client.copy(request, idempotency_key=key)).id)
    assert operation.succeeded
    assert operation.image_id is not None
    return operation.image_id


def new_key() -> str:
    return str(uuid.uuid4())


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_labelled_copy_refused_by_a_strict_cloud_is_sent_again_bare_and_makes_one_image(
    strict_fake: FakeCloud, transport: str, source: str
) -> None:
    key = new_key()
    async with open_cloud(settings_for(strict_fake, transport)) as session:
        client = session.client(session.token_sources.from_key(strict_fake.authorized_key()))
        assert client.copies_carry_labels
        image_id = await copy_and_wait(client, labelled(strict_fake, source, "one"), key)
        assert not client.copies_carry_labels
    (image,) = strict_fake.state.images.values()
    assert (image.id, image.name, image.labels, image.description) == (image_id, "one", {}, "")
    assert copy_calls(strict_fake) == [("INVALID_ARGUMENT", key), ("OK", documented_key(key))]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_refusal_is_remembered_so_later_copies_of_every_client_of_the_session_go_bare_at_once(
    strict_fake: FakeCloud, transport: str
) -> None:
    async with open_cloud(settings_for(strict_fake, transport)) as session:
        first = session.client(session.token_sources.from_key(strict_fake.authorized_key()))
        await copy_and_wait(first, labelled(strict_fake, "desktop", "first"), new_key())
        refused_so_far = len(strict_fake.state.requests.entries(code="INVALID_ARGUMENT"))
        second = session.client(session.token_sources.from_key(strict_fake.authorized_key()))
        assert not second.copies_carry_labels
        key = new_key()
        await copy_and_wait(second, labelled(strict_fake, "compute-image", "second"), key)
    assert len(strict_fake.state.requests.entries(code="INVALID_ARGUMENT")) == refused_so_far == 1
    assert copy_calls(strict_fake)[-1] == ("OK", documented_key(key))
    assert len(strict_fake.state.images) == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_documented_copies_never_carry_labels_even_where_the_cloud_would_take_them(
    lenient_fake: FakeCloud, transport: str
) -> None:
    key = new_key()
    async with open_cloud(settings_for(lenient_fake, transport, copy_fields="documented")) as session:
        client = session.client(session.token_sources.from_key(lenient_fake.authorized_key()))
        assert not client.copies_carry_labels
        await copy_and_wait(client, labelled(lenient_fake, "desktop", "bare"), key)
    (image,) = lenient_fake.state.images.values()
    assert (image.labels, image.description) == ({}, "")
    assert copy_calls(lenient_fake) == [("OK", documented_key(key))]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_documented_copies_send_no_refused_request_to_a_strict_cloud(
    strict_fake: FakeCloud, transport: str
) -> None:
    async with open_cloud(settings_for(strict_fake, transport, copy_fields="documented")) as session:
        client = session.client(session.token_sources.from_key(strict_fake.authorized_key()))
        await copy_and_wait(client, labelled(strict_fake, "compute-image", "bare"), new_key())
    assert [code for code, _ in copy_calls(strict_fake)] == ["OK"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_extended_copies_keep_their_labels_and_key_where_the_cloud_takes_them(
    lenient_fake: FakeCloud, transport: str
) -> None:
    key = new_key()
    async with open_cloud(settings_for(lenient_fake, transport)) as session:
        client = session.client(session.token_sources.from_key(lenient_fake.authorized_key()))
        await copy_and_wait(client, labelled(lenient_fake, "desktop", "labelled"), key)
        assert client.copies_carry_labels
    (image,) = lenient_fake.state.images.values()
    assert (image.labels, image.description) == (OWNER, "d")
    assert copy_calls(lenient_fake) == [("OK", key)]


async def test_a_copy_without_labels_or_description_keeps_its_own_key_whatever_the_setting(
    lenient_fake: FakeCloud,
) -> None:
    key = new_key()
    async with open_cloud(settings_for(lenient_fake, "rest", copy_fields="documented")) as session:
        client = session.client(session.token_sources.from_key(lenient_fake.authorized_key()))
        await copy_and_wait(
            client, CopyRequest(desktop_id=lenient_fake.stopped_desktop_id, name="plain"), key
        )
    assert copy_calls(lenient_fake) == [("OK", key)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_restarted_client_repeating_the_same_copy_gets_the_first_bare_operation_back(
    strict_fake: FakeCloud, transport: str
) -> None:
    key = new_key()
    request = labelled(strict_fake, "desktop", "once")
    operations = []
    for _ in range(2):  # a fresh session each time: nothing remembered, as after a restart
        async with open_cloud(settings_for(strict_fake, transport)) as session:
            client = session.client(session.token_sources.from_key(strict_fake.authorized_key()))
            operations.append(await client.copy(request, idempotency_key=key))
    assert operations[0].id == operations[1].id
    assert len(strict_fake.state.images) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_bare_copy_refused_as_well_raises_its_error_and_is_not_remembered(
    strict_fake: FakeCloud, transport: str
) -> None:
    too_long = "n" * 51
    async with open_cloud(settings_for(strict_fake, transport)) as session:
        client = session.client(session.token_sources.from_key(strict_fake.authorized_key()))
        with pytest.raises(CloudError) as caught:
            await client.copy(labelled(strict_fake, "desktop", too_long), idempotency_key=new_key())
        assert caught.value.code is Code.INVALID_ARGUMENT
        assert "name" in caught.value.message
        assert client.copies_carry_labels
    assert [code for code, _ in copy_calls(strict_fake)] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    assert not strict_fake.state.images


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refusal_other_than_invalid_argument_is_not_answered_with_a_bare_copy(
    lenient_fake: FakeCloud, transport: str
) -> None:
    running = CopyRequest(desktop_id=lenient_fake.running_desktop_id, name="running", labels=OWNER)
    async with open_cloud(settings_for(lenient_fake, transport)) as session:
        client = session.client(session.token_sources.from_key(lenient_fake.authorized_key()))
        with pytest.raises(CloudError) as caught:
            await client.copy(running, idempotency_key=new_key())
        assert caught.value.code is Code.FAILED_PRECONDITION
        assert client.copies_carry_labels
    assert [code for code, _ in copy_calls(lenient_fake)] == ["FAILED_PRECONDITION"]


def test_the_bare_copy_key_is_derived_from_the_original_and_differs_from_it() -> None:
    key = new_key()
    derived = documented_key(key)
    assert derived == documented_key(key) != key
    assert uuid.UUID(derived).version == 5
    assert documented_key("uid-once") == documented_key("uid-once") != documented_key("uid-twice")


def test_copy_fields_takes_only_extended_or_documented() -> None:
    assert CloudSettings().copy_fields == "extended"
    assert CloudSettings(copy_fields="documented").copy_fields == "documented"
    with pytest.raises(ValidationError, match="copy_fields"):
        CloudSettings(copy_fields="all")  # type: ignore[arg-type]
