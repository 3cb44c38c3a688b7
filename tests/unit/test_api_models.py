"""The pydantic models of the DesktopImage API: what they accept, what they refuse, what they dump."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from desktop_image_operator.api import (
    API_VERSION,
    CATEGORIES,
    CONDITION_READY,
    CRD_NAME,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    Condition,
    CredentialsRef,
    DesktopImageSpec,
    DesktopImageStatus,
    ImageSource,
    cel,
)
from desktop_image_operator.api.constants import OWNER_UID_LABEL
from desktop_image_operator.api.validation import (
    CLOUD_ID_PATTERN,
    CLOUD_NAME_PATTERN,
    LABELS_MAX_COUNT,
    OWNERSHIP_LABELS,
)

FULL_SPEC: dict[str, Any] = {
    "source": {"computeImageId": "fd8abcdefghijklmnopq"},
    "folderId": "b1gabcdefghijklmnopq",
    "name": "analysts-base",
    "description": "Base image for the analysts' desktops.",
    "labels": {"team": "analytics", "cost_center": "a-17", "empty": ""},
    "deletionPolicy": "Retain",
    "managementPolicy": "Observe",
    "credentialsRef": {"name": "yc-sa-key", "key": "key.json"},
}


def spec_with(**changes: Any) -> dict[str, Any]:
    """A valid spec (copy from a desktop) with some fields replaced; a value of None removes the field."""
    spec: dict[str, Any] = {"source": {"desktopId": "e3vabcdefghijklmnopq"}}
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def refusal(spec: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        DesktopImageSpec.model_validate(spec)
    return str(caught.value)


def test_names_of_the_resource() -> None:
    assert (GROUP, VERSION, KIND, PLURAL, SINGULAR) == (
        "clouddesktop.yc.io",
        "v1alpha1",
        "DesktopImage",
        "desktopimages",
        "desktopimage",
    )
    assert API_VERSION == "clouddesktop.yc.io/v1alpha1"
    assert CRD_NAME == "desktopimages.clouddesktop.yc.io"
    assert CATEGORIES == ["clouddesktop"]
    assert SHORT_NAMES == ["deskimg"]


def test_minimal_spec_from_a_desktop_takes_the_defaults() -> None:
    spec = DesktopImageSpec.model_validate({"source": {"desktopId": "e3v123"}})
    assert spec.source == ImageSource(desktop_id="e3v123")
    assert spec.source.compute_image_id is None
    assert spec.folder_id is None
    assert spec.name is None
    assert spec.deletion_policy is None
    assert spec.effective_deletion_policy() == "Delete"
    assert spec.management_policy is None  # the operator's default applies
    assert spec.effective_management_policy() == "Manage"
    assert spec.effective_management_policy("Observe") == "Observe"
    assert spec.effective_deletion_policy("Retain") == "Retain"
    assert spec.credentials_ref is None


def test_an_adopted_image_is_retained_unless_the_manifest_says_delete() -> None:
    adopted = DesktopImageSpec.model_validate({"source": {"imageId": "e3w"}})
    assert adopted.effective_deletion_policy() == "Retain"
    told = DesktopImageSpec.model_validate({"source": {"imageId": "e3w"}, "deletionPolicy": "Delete"})
    assert told.effective_deletion_policy() == "Delete"


def test_an_adopted_image_takes_no_folder() -> None:
    assert cel.FOLDER_WITH_IMAGE_MESSAGE in refusal({"source": {"imageId": "e3w"}, "folderId": "b1g"})


def test_full_spec_parses_and_dumps_back_to_the_manifest() -> None:
    spec = DesktopImageSpec.model_validate(FULL_SPEC)
    assert spec.source.compute_image_id == "fd8abcdefghijklmnopq"
    assert spec.folder_id == "b1gabcdefghijklmnopq"
    assert spec.labels == {"team": "analytics", "cost_center": "a-17", "empty": ""}
    assert spec.deletion_policy == "Retain"
    assert spec.credentials_ref == CredentialsRef(name="yc-sa-key", key="key.json")
    assert spec.model_dump(by_alias=True, exclude_none=True) == FULL_SPEC


def test_snake_case_names_work_in_python_and_dump_as_camel_case() -> None:
    spec = DesktopImageSpec(
        source=ImageSource(compute_image_id="fd8x"),
        folder_id="b1g",
        credentials_ref=CredentialsRef(name="key"),
    )
    assert spec.model_dump(by_alias=True, exclude_none=True) == {
        "source": {"computeImageId": "fd8x"},
        "folderId": "b1g",
        "credentialsRef": {"name": "key", "key": "key.json"},
    }


def test_unknown_fields_are_ignored_like_the_api_server_prunes_them() -> None:
    spec = DesktopImageSpec.model_validate(spec_with(futureField=1))
    assert "futureField" not in spec.model_dump(by_alias=True)


@pytest.mark.parametrize(
    "source",
    [{}, {"desktopId": "e3v", "computeImageId": "fd8"}, {"desktopId": "e3v", "imageId": "e3w"}],
    ids=["neither", "both", "copy-and-adopt"],
)
def test_exactly_one_source(source: dict[str, str]) -> None:
    assert cel.ONE_SOURCE_MESSAGE in refusal(spec_with(source=source, folderId="b1g"))


def test_source_is_required() -> None:
    assert "source" in refusal(spec_with(source=None))


def test_folder_is_required_with_a_compute_image() -> None:
    assert cel.FOLDER_REQUIRED_MESSAGE in refusal({"source": {"computeImageId": "fd8"}})
    DesktopImageSpec.model_validate({"source": {"computeImageId": "fd8"}, "folderId": "b1g"})


@pytest.mark.parametrize(
    "source",
    [{"desktopId": ""}, {"desktopId": "x" * 51}, {"computeImageId": ""}],
    ids=["empty", "long", "empty2"],
)
def test_source_ids_are_bounded(source: dict[str, str]) -> None:
    refusal(spec_with(source=source, folderId="b1g"))


ID_FIELDS = {
    "spec.source.desktopId": lambda value: spec_with(source={"desktopId": value}),
    "spec.source.computeImageId": lambda value: spec_with(source={"computeImageId": value}, folderId="b1g"),
    "spec.source.imageId": lambda value: spec_with(source={"imageId": value}),
    "spec.folderId": lambda value: spec_with(folderId=value),
}


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize(
    "value", ["fd8abc123def456ghi78", "b1gxyz0123456789abcd", "e3v", "0", "a-b_c", "x" * 50]
)
def test_cloud_ids_of_lowercase_letters_and_digits_are_accepted(field: str, value: str) -> None:
    DesktopImageSpec.model_validate(ID_FIELDS[field](value))
    assert re.fullmatch(CLOUD_ID_PATTERN, value)


# Dot segments, separators, escapes, uppercase, whitespace, a leading '-' or '_': none is a cloud ID.
# (Too long and empty are in test_source_ids_are_bounded.)
BAD_IDS = [".", "..", "../x", "a/b", "/", "a%2f", "%2e", "A", "Fd8abc", "fd8 abc", " fd8", "fd8\n", "-fd8"]
BAD_IDS += ["_fd8", "a.b", "e3v:copy", "e3v?x=1"]


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize("value", BAD_IDS)
def test_cloud_ids_that_could_not_be_a_url_path_segment_are_refused(field: str, value: str) -> None:
    # The message names the field by its path below spec (pydantic: "source.imageId", "folderId").
    assert field.removeprefix("spec.") in refusal(ID_FIELDS[field](value))
    assert not re.fullmatch(CLOUD_ID_PATTERN, value)


@pytest.mark.parametrize("name", ["a", "analysts-base", "a1", "x" * 50, "a-b-c-0"])
def test_good_cloud_names(name: str) -> None:
    assert DesktopImageSpec.model_validate(spec_with(name=name)).name == name
    assert re.fullmatch(CLOUD_NAME_PATTERN, name)


@pytest.mark.parametrize(
    "name",
    ["", "x" * 51, "Analysts", "1abc", "-abc", "abc-", "a_b", "a.b", "a b", "abc\n"],
)
def test_bad_cloud_names(name: str) -> None:
    assert "name" in refusal(spec_with(name=name))
    assert not re.fullmatch(CLOUD_NAME_PATTERN, name)


def test_description_is_at_most_1024_characters() -> None:
    DesktopImageSpec.model_validate(spec_with(description="x" * 1024))
    assert "description" in refusal(spec_with(description="x" * 1025))


def test_at_most_60_labels_leaving_room_for_the_four_ownership_labels() -> None:
    assert (LABELS_MAX_COUNT, len(OWNERSHIP_LABELS)) == (60, 4)
    DesktopImageSpec.model_validate(spec_with(labels={f"k{i}": "v" for i in range(60)}))
    message = refusal(spec_with(labels={f"k{i}": "v" for i in range(61)}))
    assert "labels" in message
    assert "at most 60 items" in message


def test_the_ownership_label_is_reserved() -> None:
    assert "reserved" in refusal(spec_with(labels={OWNER_UID_LABEL: "x"}))


@pytest.mark.parametrize("key", ["", "Team", "1team", "-team", "_team", "team.name", "team/name", "t" * 64])
def test_bad_label_keys(key: str) -> None:
    assert cel.LABEL_KEYS_MESSAGE in refusal(spec_with(labels={key: "v"}))


@pytest.mark.parametrize("key", ["t", "team", "team-a_b", "t0", "t" * 63])
def test_good_label_keys(key: str) -> None:
    DesktopImageSpec.model_validate(spec_with(labels={key: "v"}))


@pytest.mark.parametrize("value", ["Value", "a.b", "a b", "v" * 64])
def test_bad_label_values(value: str) -> None:
    assert "labels" in refusal(spec_with(labels={"team": value}))


@pytest.mark.parametrize("value", ["", "-", "_a-1", "v" * 63])
def test_good_label_values(value: str) -> None:
    DesktopImageSpec.model_validate(spec_with(labels={"team": value}))


def test_deletion_policy_is_delete_or_retain() -> None:
    for policy in ("Delete", "Retain"):
        assert DesktopImageSpec.model_validate(spec_with(deletionPolicy=policy)).deletion_policy == policy
    for policy in ("Orphan", "delete", ""):
        assert "deletionPolicy" in refusal(spec_with(deletionPolicy=policy))


@pytest.mark.parametrize("name", ["yc-sa-key", "a", "key.v1", "0key"])
def test_good_credentials_secret_names(name: str) -> None:
    DesktopImageSpec.model_validate(spec_with(credentialsRef={"name": name}))


@pytest.mark.parametrize("name", ["", "Key", "yc_sa_key", "-key", "key-", "key..v1", "k" * 254])
def test_bad_credentials_secret_names(name: str) -> None:
    assert "credentialsRef" in refusal(spec_with(credentialsRef={"name": name}))


@pytest.mark.parametrize("key", ["key.json", "KEY_1", ".hidden", "a..b", "-"])
def test_good_credentials_keys(key: str) -> None:
    spec = DesktopImageSpec.model_validate(spec_with(credentialsRef={"name": "s", "key": key}))
    assert spec.credentials_ref is not None
    assert spec.credentials_ref.key == key


@pytest.mark.parametrize("key", ["", ".", "..", "..key", "a/b", "key json", "k" * 254])
def test_bad_credentials_keys(key: str) -> None:
    assert "credentialsRef" in refusal(spec_with(credentialsRef={"name": "s", "key": key}))


def test_credentials_secret_name_is_required() -> None:
    assert "credentialsRef.name" in refusal(spec_with(credentialsRef={"key": "key.json"}))


# --- status ---

T0 = datetime(2025, 3, 1, 12, 30, 5, tzinfo=UTC)

FULL_STATUS: dict[str, Any] = {
    "observedGeneration": 3,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "observedGeneration": 3,
            "lastTransitionTime": "2025-03-01T12:30:05Z",
            "reason": "ImageActive",
            "message": "image fdvabc is ACTIVE",
        },
        {
            "type": "Synced",
            "status": "False",
            "lastTransitionTime": "2025-03-01T12:31:00Z",
            "reason": "CloudUnavailable",
            "message": "UNAVAILABLE: try again (request id 1234)",
        },
    ],
    "operationId": "fdvop123",
    "imageId": "fdvimg123",
    "imageStatus": "ACTIVE",
    "storageSize": 21474836480,
    "minDiskSize": 21474836480,
    "folderId": "b1g123",
    "createdAt": "2025-03-01T12:00:00.123456Z",
}


def test_status_round_trip() -> None:
    status = DesktopImageStatus.model_validate(FULL_STATUS)
    assert status.conditions is not None
    assert status.conditions[0].last_transition_time == T0
    assert status.storage_size == 21474836480
    assert status.created_at == datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    dumped = status.model_dump(by_alias=True, exclude_none=True)
    assert dumped == FULL_STATUS
    # Ready for a JSON merge patch as it is: no datetime objects, no None.
    assert json.loads(json.dumps(dumped)) == FULL_STATUS
    assert DesktopImageStatus.model_validate(dumped) == status


def test_status_built_in_python_dumps_only_what_was_set() -> None:
    status = DesktopImageStatus(
        observed_generation=2,
        conditions=[
            Condition(
                type=CONDITION_READY,
                status="False",
                observed_generation=2,
                last_transition_time=T0.astimezone(timezone(timedelta(hours=3))),
                reason="Copying",
                message="copy operation fdvop1 is running",
            )
        ],
        operation_id="fdvop1",
        image_id="fdvimg1",
        image_status="CREATING",
    )
    assert status.model_dump(by_alias=True, exclude_none=True) == {
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "observedGeneration": 2,
                # Any time zone in, UTC with a Z out.
                "lastTransitionTime": "2025-03-01T12:30:05Z",
                "reason": "Copying",
                "message": "copy operation fdvop1 is running",
            }
        ],
        "operationId": "fdvop1",
        "imageId": "fdvimg1",
        "imageStatus": "CREATING",
    }
    assert DesktopImageStatus().model_dump(by_alias=True, exclude_none=True) == {}


def test_status_sizes_accept_the_strings_the_rest_api_sends() -> None:
    status = DesktopImageStatus.model_validate({"storageSize": "21474836480", "minDiskSize": "1024"})
    assert (status.storage_size, status.min_disk_size) == (21474836480, 1024)


@pytest.mark.parametrize("image_status", ["STATUS_UNSPECIFIED", "CREATING", "ACTIVE", "DELETING"])
def test_image_statuses(image_status: str) -> None:
    assert DesktopImageStatus.model_validate({"imageStatus": image_status}).image_status == image_status


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("imageStatus", "READY"),
        ("storageSize", -1),
        ("storageSize", "twenty"),
        ("observedGeneration", -1),
        ("createdAt", "yesterday"),
        ("createdAt", "2025-03-01T12:00:00"),  # no time zone
        ("imageId", "x" * 51),
    ],
)
def test_bad_status_fields(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        DesktopImageStatus.model_validate({field: value})


def condition(**changes: Any) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": "True",
        "lastTransitionTime": "2025-03-01T12:30:05Z",
        "reason": "ImageActive",
        "message": "",
    } | changes


@pytest.mark.parametrize(
    "bad",
    [
        condition(status="Maybe"),
        condition(reason=""),
        condition(reason="not camel case"),
        condition(type=""),
        condition(type="Ready!"),
        condition(lastTransitionTime="now"),
        condition(message="x" * 32769),
        {key: value for key, value in condition().items() if key != "reason"},
    ],
)
def test_bad_conditions(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DesktopImageStatus.model_validate({"conditions": [bad]})


def test_condition_types_are_unique() -> None:
    with pytest.raises(ValidationError, match="only once"):
        DesktopImageStatus.model_validate({"conditions": [condition(), condition(status="False")]})
    DesktopImageStatus.model_validate({"conditions": [condition(), condition(type="Synced")]})
