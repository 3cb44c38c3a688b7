"""The decision as tables of plain values: observations built by hand, no cloud, no clock but `now`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from desktop_image_operator.api import OperationRecord
from desktop_image_operator.cloud.errors import CloudError, Code
from desktop_image_operator.cloud.types import CloudImage, ImageStatus
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.access import Access
from desktop_image_operator.reconciler.actions import (
    Copy,
    Delete,
    MarkReady,
    Poll,
    RecordFailure,
    Release,
    Report,
    RetryLater,
    Update,
    Wait,
)
from desktop_image_operator.reconciler.annotations import ADOPT_FROM_OTHER_CLUSTER
from desktop_image_operator.reconciler.decide import decide, decide_release
from desktop_image_operator.reconciler.observation import Found, Observation, OperationView
from desktop_image_operator.reconciler.outcome import Result
from desktop_image_operator.reconciler.ownership import Owner
from desktop_image_operator.reconciler.resource import Policies, Resource
from desktop_image_operator.reconciler.timing import Timing

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CLUSTER = "c0ffee00-0000-4000-8000-000000000001"
UID = "0b6f1a52-3c1e-4c59-9a4e-2f1d8e7c6b5a"
ME = Owner.of(UID, CLUSTER, "team-a", "base")
EARLIER_ME = Owner.of("99999999-2222-4333-8444-555555555555", CLUSTER, "team-a", "base")
NEIGHBOUR = Owner.of("11111111-2222-4333-8444-555555555555", CLUSTER, "team-b", "golden")
ELSEWHERE = Owner.of("22222222-2222-4333-8444-555555555555", "another-cluster", "team-a", "base")
TIMING = Timing()
FOLDER = "b1gfolder"


def resource(
    *, status: dict[str, Any] | None = None, annotations: dict[str, str] | None = None, **spec: Any
) -> Resource:
    body: dict[str, Any] = {
        "metadata": {
            "name": "base",
            "namespace": "team-a",
            "uid": UID,
            "generation": 1,
            "creationTimestamp": "2026-12-01T11:00:00Z",
            "annotations": annotations or {},
        },
        "spec": {"source": {"desktopId": "e3vdesktop"}, **spec},
        "status": status or {},
    }
    return Resource.from_body(body)


def image(owner: Owner | None = ME, *, status: ImageStatus = ImageStatus.ACTIVE, **fields: Any) -> CloudImage:
    values: dict[str, Any] = {
        "id": "e3vimage",
        "folder_id": FOLDER,
        "name": "base",
        "description": "",
        "labels": owner.labels() if owner else {},
        "status": status,
        "storage_size": 1,
        "min_disk_size": 1,
        "created_at": NOW - timedelta(minutes=5),
    }
    values.update(fields)
    return CloudImage(**values)


def seen(found: Found | None = Found.STATUS, **facts: Any) -> Observation:
    return Observation(me=ME, found=found, folder_id=FOLDER, **facts)


def running(kind: str = "Copy", *, phase: str = "Running") -> OperationRecord:
    return OperationRecord.model_validate(
        {"kind": kind, "id": "op1", "phase": phase, "startedAt": NOW - timedelta(seconds=10), "attempts": 1}
    )


# -- the live object ----------------------------------------------------------------------------------


def test_a_running_operation_is_polled_and_nothing_else_is_looked_at() -> None:
    decision = decide(seen(operation=OperationView(running(), done=False)), resource(), NOW, TIMING)
    assert isinstance(decision.action, Poll)
    assert decision.action.reason == r.COPYING


def test_an_operation_that_failed_is_recorded_for_its_retry() -> None:
    failed = OperationView(running(), done=True, error=CloudError(Code.INTERNAL, "boom"))
    assert isinstance(decide(seen(operation=failed), resource(), NOW, TIMING).action, RecordFailure)


@pytest.mark.parametrize(
    ("observation", "expected"),
    [
        (seen(found=None), Copy(FOLDER)),
        (seen(image=image()), MarkReady(image())),
        (seen(image=image(name="old")), Update(image(name="old"), ("name",), ME)),
        (
            seen(image=image(status=ImageStatus.CREATING)),
            Wait(r.COPYING, "Cloud image e3vimage is still CREATING."),
        ),
    ],
    ids=["no image: copy", "ours and matching: ready", "ours and renamed: update", "ours and creating: wait"],
)
def test_this_object_s_own_image_is_copied_converged_or_awaited(
    observation: Observation, expected: object
) -> None:
    assert decide(observation, resource(), NOW, TIMING).action == expected


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (ImageStatus.STATUS_UNSPECIFIED, r.IMAGE_STATUS_UNKNOWN),
        (ImageStatus.DELETING, r.IMAGE_NOT_FOUND),
    ],
)
def test_an_image_neither_creating_nor_active_has_a_reason_of_its_own(
    status: ImageStatus, reason: str
) -> None:
    action = decide(seen(image=image(status=status)), resource(), NOW, TIMING).action
    assert isinstance(action, Report)
    assert action.failure.reason == reason


def test_status_unspecified_is_retried_on_its_own_not_shown_as_copying() -> None:
    assert r.kind_of(r.IMAGE_STATUS_UNKNOWN) is r.Kind.TRANSIENT


def test_an_image_a_live_object_owns_is_an_adoption_conflict_whoever_recorded_it() -> None:
    for found in (Found.STATUS, Found.SPEC):  # Observe then Manage records it in status first
        observation = seen(found=found, image=image(NEIGHBOUR), owner_exists=True)
        action = decide(observation, resource(), NOW, TIMING).action
        assert isinstance(action, Report)
        assert action.failure.reason == r.ADOPTION_CONFLICT


def test_an_owner_whose_existence_was_not_asked_counts_as_alive() -> None:
    action = decide(seen(image=image(NEIGHBOUR)), resource(), NOW, TIMING).action
    assert isinstance(action, Report)
    assert action.failure.reason == r.ADOPTION_CONFLICT


def test_an_image_of_an_owner_proven_gone_is_taken_over_with_the_owner_it_had() -> None:
    observation = seen(found=Found.SPEC, image=image(NEIGHBOUR), owner_exists=False)
    decision = decide(observation, resource(source={"imageId": "e3vimage"}), NOW, TIMING)
    assert decision.action == Update(image(NEIGHBOUR), ("labels",), NEIGHBOUR)
    assert decision.adopted is not None
    assert "no longer exists" in decision.adopted


def test_another_cluster_s_image_needs_the_annotation_and_the_conflict_says_so() -> None:
    observation = seen(found=Found.SPEC, image=image(ELSEWHERE))
    refused = decide(observation, resource(source={"imageId": "e3vimage"}), NOW, TIMING).action
    assert isinstance(refused, Report)
    assert refused.failure.reason == r.ADOPTION_CONFLICT
    assert ADOPT_FROM_OTHER_CLUSTER in refused.failure.message
    opted_in = resource(source={"imageId": "e3vimage"}, annotations={ADOPT_FROM_OTHER_CLUSTER: "true"})
    assert decide(observation, opted_in, NOW, TIMING).action == Update(
        image(ELSEWHERE), ("labels",), ELSEWHERE
    )


def test_an_unowned_image_is_taken_only_when_named_by_the_user_or_made_by_this_object() -> None:
    unowned = image(None)
    for found in (Found.SPEC, Found.NAME, Found.STATUS, Found.OPERATION):
        spec = {"source": {"imageId": "e3vimage"}} if found is Found.SPEC else {}
        action = decide(seen(found=found, image=unowned), resource(**spec), NOW, TIMING).action
        assert action == Update(unowned, ("labels",), None), found


def test_a_predecessor_s_image_is_taken_over_by_the_object_of_the_same_name() -> None:
    action = decide(seen(found=Found.LABELS, image=image(EARLIER_ME)), resource(), NOW, TIMING).action
    assert action == Update(image(EARLIER_ME), ("labels",), EARLIER_ME)


def test_a_name_held_by_a_stranger_is_a_conflict_and_by_a_leaving_predecessor_is_pending() -> None:
    stranger = seen(found=None, name_holder=image(NEIGHBOUR))
    conflict = decide(stranger, resource(), NOW, TIMING).action
    assert isinstance(conflict, Report)
    assert conflict.failure.reason == r.NAME_CONFLICT
    leaving = seen(found=None, name_holder=image(EARLIER_ME, status=ImageStatus.DELETING))
    pending = decide(leaving, resource(), NOW, TIMING).action
    assert isinstance(pending, Report)
    assert pending.failure.reason == r.NAME_PENDING
    assert r.kind_of(r.NAME_PENDING) is r.Kind.TRANSIENT


def test_a_failed_copy_waits_for_its_retry_unless_the_spec_changed() -> None:
    failed = running().model_copy(update={"phase": "Failed", "finished_at": NOW - timedelta(seconds=5)})
    status = {"operation": failed.model_dump(by_alias=True, mode="json"), "observedGeneration": 1}
    action = decide(seen(found=None), resource(status=status), NOW, TIMING).action
    assert isinstance(action, RetryLater)
    assert action.reason == r.COPY_FAILED
    changed = replace(resource(status=status), generation=2)
    assert decide(seen(found=None), changed, NOW, TIMING).action == Copy(FOLDER)


def test_a_recorded_image_that_is_gone_is_reported_not_copied_again() -> None:
    action = decide(seen(image_gone=True), resource(status={"imageId": "e3vimage"}), NOW, TIMING).action
    assert isinstance(action, Report)
    assert action.failure.reason == r.IMAGE_NOT_FOUND


def test_observe_only_reports_whether_the_image_matches_the_spec_and_never_writes() -> None:
    observe = {"managementPolicy": "Observe", "source": {"imageId": "e3vimage"}, "name": "wanted"}
    decision = decide(seen(found=Found.SPEC, image=image(NEIGHBOUR)), resource(**observe), NOW, TIMING)
    assert decision.action == MarkReady(image(NEIGHBOUR), observed_only=True, matches=False)
    renamed = image(NEIGHBOUR, name="wanted")
    decision = decide(seen(found=Found.SPEC, image=renamed), resource(**observe), NOW, TIMING)
    assert decision.action == MarkReady(renamed, observed_only=True, matches=True)


# -- deletion -----------------------------------------------------------------------------------------


def test_deletion_deletes_only_this_object_s_image() -> None:
    assert decide_release(seen(image=image()), resource(), NOW).action == Delete(image(), ME)
    kept = decide_release(seen(found=Found.SPEC, image=image(NEIGHBOUR)), resource(), NOW).action
    assert isinstance(kept, Release)
    assert kept.result is Result.RETAINED


def test_deletion_after_a_copy_of_unknown_outcome_waits_out_the_listing_lag() -> None:
    until = NOW + timedelta(seconds=12)
    action = decide_release(seen(found=None, unsure_until=until), resource(), NOW).action
    assert isinstance(action, Wait)
    assert (action.reason, action.after) == (r.DELETING, 12.0)
    released = decide_release(seen(found=None, unsure_until=until), resource(), until).action
    assert isinstance(released, Release)
    assert released.result is Result.DELETED


def test_deletion_waits_for_a_running_operation_before_touching_the_image() -> None:
    action = decide_release(
        seen(operation=OperationView(running("Update"), done=False)), resource(), NOW
    ).action
    assert isinstance(action, Poll)
    assert action.reason == r.DELETING


# -- operator-wide defaults ---------------------------------------------------------------------------


def test_operator_wide_defaults_apply_only_where_the_spec_is_silent() -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "base", "namespace": "team-a", "uid": UID},
        "spec": {"source": {"desktopId": "e3vdesktop"}},
    }
    cautious = Policies(deletion="Retain", management="Observe")
    silent = Resource.from_body(body, cautious)
    assert silent.observe_only
    assert silent.retains_image
    body["spec"].update(managementPolicy="Manage", deletionPolicy="Delete")
    spoken = Resource.from_body(body, cautious)
    assert not spoken.observe_only
    assert not spoken.retains_image


# -- grants -------------------------------------------------------------------------------------------


def fenced(folders: set[str]) -> Access:
    return Access(namespace="team-a", grants=("team-a",), folders=frozenset(folders))


@pytest.mark.parametrize(
    ("observation", "spec"),
    [
        (seen(found=None), {}),  # a copy into the folder
        (seen(found=Found.SPEC, image=image(None)), {"source": {"imageId": "e3vimage"}}),  # adoption
        (
            seen(found=Found.SPEC, image=image(None)),
            {"source": {"imageId": "e3vimage"}, "managementPolicy": "Observe"},
        ),  # observation
    ],
    ids=["copy", "adopt", "observe"],
)
def test_a_folder_outside_the_grant_is_refused_whatever_the_object_does(
    observation: Observation, spec: dict[str, Any]
) -> None:
    outside = replace(resource(**spec), access=fenced({"b1gother"}))
    decision = decide(observation, outside, NOW, TIMING)
    assert isinstance(decision.action, Report)
    assert decision.action.failure.reason == r.FOLDER_NOT_GRANTED
    assert decision.keep is None  # nothing of that folder reaches status
    inside = replace(resource(**spec), access=fenced({FOLDER}))
    assert not isinstance(decide(observation, inside, NOW, TIMING).action, Report)


def test_an_image_whose_folder_is_no_longer_granted_is_left_and_its_finalizer_lets_go() -> None:
    narrowed = replace(resource(), access=fenced({"b1gother"}))
    action = decide_release(seen(image=image()), narrowed, NOW).action
    assert isinstance(action, Release)
    assert action.result is Result.RETAINED
