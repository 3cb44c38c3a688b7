"""Grants as plain values: the document a cluster administrator writes, and what it allows a namespace."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from desktop_image_operator.api.grants import Grants
from desktop_image_operator.reconciler import reasons as r
from desktop_image_operator.reconciler.access import Access

TEAM_A = {"kubernetes.io/metadata.name": "team-a", "team": "a"}
TEAM_B = {"kubernetes.io/metadata.name": "team-b", "team": "b"}


def grants(*items: dict[str, Any]) -> Grants:
    return Grants.model_validate({"grants": list(items)})


def grant(name: str, team: str | None = None, **fields: Any) -> dict[str, Any]:
    selector = {"matchLabels": {"team": team}} if team else {}
    return {"name": name, "namespaceSelector": selector, **fields}


def test_a_namespace_no_grant_selects_is_refused_before_any_cloud_call_unless_it_brings_its_own_key() -> None:
    access = Access.of("team-b", TEAM_B, grants(grant("a", "a", credentials={"operator": True})))
    refusal = access.refusal(has_own_credentials=False)
    assert refusal is not None
    assert refusal.reason == r.NOT_GRANTED
    assert "Namespace team-b has no grant" in refusal.message
    assert access.refusal(has_own_credentials=True) is None
    assert access.folders is None


def test_a_granted_namespace_borrows_the_credentials_within_the_granted_folders() -> None:
    document = grants(grant("a", "a", credentials={"operator": True}, folderIds=["b1gteama"]))
    access = Access.of("team-a", TEAM_A, document)
    assert access.refusal(has_own_credentials=False) is None
    borrowed = access.borrowed()
    assert borrowed is not None
    assert borrowed.operator
    assert access.allows("b1gteama")
    assert not access.allows("b1gteamb")
    refusal = access.folder_refusal("b1gteamb")
    assert refusal.reason == r.FOLDER_NOT_GRANTED
    assert all(part in refusal.message for part in ("b1gteamb", "team-a", "grants a", "b1gteama"))


def test_a_grant_without_credentials_still_limits_the_folders_of_teams_bringing_their_own_keys() -> None:
    access = Access.of("team-a", TEAM_A, grants(grant("fence", "a", folderIds=["b1gteama"])))
    assert access.refusal(has_own_credentials=True) is None
    assert not access.allows("b1gteamb")
    refusal = access.refusal(has_own_credentials=False)
    assert refusal is not None
    assert "select it but give no credentials" in refusal.message


def test_two_grants_giving_one_namespace_different_credentials_are_refused_as_ambiguous() -> None:
    document = grants(
        grant("own", "a", credentials={"operator": True}),
        grant("secret", "a", credentials={"secretName": "team-a-key"}),
        grant("again", None, credentials={"operator": True}),
    )
    access = Access.of("team-a", TEAM_A, document)
    refusal = access.refusal(has_own_credentials=False)
    assert refusal is not None
    assert "Grants own, secret give namespace team-a different credentials" in refusal.message


def test_folders_of_all_selecting_grants_add_up() -> None:
    document = grants(grant("one", "a", folderIds=["f1"]), grant("two", None, folderIds=["f2"]))
    assert Access.of("team-a", TEAM_A, document).folders == {"f1", "f2"}


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ({"key": "team", "operator": "In", "values": ["a", "c"]}, True),
        ({"key": "team", "operator": "NotIn", "values": ["a"]}, False),
        ({"key": "team", "operator": "Exists"}, True),
        ({"key": "env", "operator": "DoesNotExist"}, True),
    ],
)
def test_namespace_selectors_match_as_kubernetes_selectors_do(
    expression: dict[str, Any], selected: bool
) -> None:
    document = grants({"name": "g", "namespaceSelector": {"matchExpressions": [expression]}})
    assert (Access.of("team-a", TEAM_A, document).grants == ("g",)) is selected


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"grants": [grant("x", credentials={"operator": True, "secretName": "k"})]}, "exactly one"),
        ({"grants": [grant("x", credentials={})]}, "exactly one"),
        ({"grants": [grant("x"), grant("x")]}, "only once"),
        ({"grants": [grant("x", folderIds=["../f"])]}, "folderIds"),
        ({"grants": [{"name": "x"}]}, "namespaceSelector"),
        (
            {
                "grants": [
                    grant(
                        "x", **{"namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]}}
                    )
                ]
            },
            "value",
        ),
    ],
)
def test_a_malformed_grants_document_is_refused_with_the_field_named(
    document: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Grants.model_validate(document)


def test_grants_that_could_not_be_read_lend_nothing() -> None:
    refusal = Access(namespace="team-a", known=False).refusal(has_own_credentials=False)
    assert refusal is not None
    assert refusal.reason == r.NOT_GRANTED
