"""The ownership labels fit the cloud's label rules for every object name and namespace Kubernetes allows.

The rules come from two places that must agree: the API constants, and the `yandex.cloud` field options
of the official request messages, which the fake cloud enforces as the cloud does.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable

import pytest
from google.protobuf.message import Message
from yandex.cloud.clouddesktop.v1.desktop_image_service_pb2 import (
    CopyDesktopImageRequest,
    CopyFromDesktopRequest,
    UpdateDesktopImageRequest,
)

from desktop_image_operator.api import validation as v
from desktop_image_operator.reconciler.ownership import Claim, Owner, claim, name_from_label, name_label
from desktop_image_operator_dev.fakecloud.codes import ApiError
from desktop_image_operator_dev.fakecloud.validation import validate

UID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
CLUSTER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
# The longest namespace (an RFC 1123 label) and the longest object name (an RFC 1123 subdomain), dotted.
LONGEST_NAMESPACE = "n" * 63
LONGEST_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])

DOTTED_NAMES = [
    "team.images.base",
    "a.b",
    "v1.2.3",
    "x" * 30 + "." + "y" * 32,  # 63 characters: kept whole
    "x" * 31 + "." + "y" * 32,  # 64: cut
    LONGEST_NAME,
]


def is_label_value(value: str) -> bool:
    return len(value) <= v.LABEL_VALUE_MAX_LENGTH and re.fullmatch(v.LABEL_VALUE_PATTERN, value) is not None


def spec_labels(count: int) -> dict[str, str]:
    return {f"label-{i:02d}": f"value-{i:02d}" for i in range(count)}


@pytest.mark.parametrize("name", DOTTED_NAMES)
def test_a_dotted_name_becomes_a_valid_cloud_label_value(name: str) -> None:
    assert len(name) <= v.DNS_SUBDOMAIN_MAX_LENGTH
    assert re.fullmatch(v.DNS_SUBDOMAIN_PATTERN, name)
    value = name_label(name)
    assert is_label_value(value), value
    assert "." not in value


@pytest.mark.parametrize("name", ["team.images.base", "a.b", "v1.2.3", "x" * 30 + "." + "y" * 32])
def test_a_dotted_name_that_fits_decodes_back_to_itself(name: str) -> None:
    value = name_label(name)
    assert value == name.replace(".", "_")
    assert name_from_label(value) == name


@pytest.mark.parametrize("name", ["analysts-base", "a", "x" * 63, "x" * 64, "x" * 253])
def test_a_name_without_dots_keeps_the_label_it_always_had(name: str) -> None:
    # Images stamped before dots were encoded must still be recognised as ours.
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    assert name_label(name) == (name if len(name) <= 63 else name[:46] + "-" + digest)


def test_a_long_dotted_name_is_cut_and_ends_in_its_digest() -> None:
    value = name_label(LONGEST_NAME)
    assert len(value) == v.LABEL_VALUE_MAX_LENGTH
    assert value.startswith("a" * 46 + "-")
    assert re.fullmatch("[0-9a-f]{16}", value[-16:])
    assert not Owner.of(UID, CLUSTER, "team-a", LONGEST_NAME).name_is_whole


def test_long_names_that_share_their_beginning_keep_distinct_labels() -> None:
    first, second = "a" * 60 + ".first", "a" * 60 + ".second"
    assert name_label(first) != name_label(second)


def test_a_dot_and_a_hyphen_in_the_same_place_give_distinct_labels() -> None:
    assert name_label("team.base") != name_label("team-base")
    assert name_from_label(name_label("team.base")) == "team.base"
    assert name_from_label(name_label("team-base")) == "team-base"


def test_a_re_created_dotted_object_recognises_its_earlier_image() -> None:
    earlier = Owner.of(str(uuid.uuid4()), CLUSTER, "team-a", "team.images.base")
    me = Owner.of(UID, CLUSTER, "team-a", "team.images.base")
    assert claim(earlier.labels(), me) == (Claim.PREVIOUS, earlier)
    neighbour = Owner.of(str(uuid.uuid4()), CLUSTER, "team-a", "team-images-base")
    assert claim(neighbour.labels(), me)[0] is Claim.OTHER_OBJECT


def test_the_ownership_labels_the_operator_stamps_are_the_ones_the_label_cap_counts() -> None:
    stamped = Owner.of(UID, CLUSTER, "team-a", "team.images.base").labels()
    assert tuple(sorted(stamped)) == tuple(sorted(v.OWNERSHIP_LABELS))
    assert v.LABELS_MAX_COUNT + len(stamped) == v.CLOUD_LABELS_MAX_COUNT


# Each request that carries labels, with its required fields filled in.
LABELLED_REQUESTS: dict[str, Callable[[dict[str, str]], Message]] = {
    "copy-from-desktop": lambda labels: CopyFromDesktopRequest(desktop_id="e3vdesktop", labels=labels),
    "copy": lambda labels: CopyDesktopImageRequest(
        folder_id="b1gfolder", name="team-images-base", image_id="fd8image", labels=labels
    ),
    "update": lambda labels: UpdateDesktopImageRequest(image_id="e3vimage", labels=labels),
}


@pytest.mark.parametrize("build", LABELLED_REQUESTS.values(), ids=LABELLED_REQUESTS.keys())
def test_the_cloud_accepts_the_largest_label_map_with_the_longest_dotted_owner(
    build: Callable[[dict[str, str]], Message],
) -> None:
    owner = Owner.of(UID, CLUSTER, LONGEST_NAMESPACE, LONGEST_NAME)
    validate(build(spec_labels(v.LABELS_MAX_COUNT) | owner.labels()))


def test_the_cloud_refuses_one_spec_label_more_than_the_cap() -> None:
    owner = Owner.of(UID, CLUSTER, "team-a", "team.images.base")
    labels = spec_labels(v.LABELS_MAX_COUNT + 1) | owner.labels()
    with pytest.raises(ApiError, match="labels: number of entries must be <=64"):
        validate(LABELLED_REQUESTS["update"](labels))


def test_the_cloud_refuses_a_dot_in_a_label_value() -> None:
    # What an unencoded name label would have met.
    with pytest.raises(ApiError, match="labels"):
        validate(LABELLED_REQUESTS["update"]({"clouddesktop-yc-io-owner-name": "team.images.base"}))
