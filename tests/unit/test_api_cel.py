"""The CRD's CEL rules, evaluated offline with cel-python (skipped when it is not installed).

cel-python follows the CEL spec and uses RE2 for matches(), as the API server does, so these tests check
what each rule means. They do not check the API server's own limits (cost budget, fieldPath resolution):
that takes a real kube-apiserver.
"""

from __future__ import annotations

from typing import Any

import celpy  # type: ignore[import-untyped]
import pytest

from desktop_image_operator.api import crd_manifest
from desktop_image_operator.api.constants import OWNER_UID_LABEL
from desktop_image_operator.api.validation import is_label_key

Schema = dict[str, Any]
_ENV = celpy.Environment()


def rules_at(path: str) -> list[str]:
    """The rules the generated CRD attaches at a dotted path of properties ("" is the root)."""
    node: Schema = crd_manifest.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in filter(None, path.split(".")):
        node = node["properties"][name]
    return [entry["rule"] for entry in node["x-kubernetes-validations"]]


def holds(rule: str, value: Any, old: Any = None) -> bool:
    activation = {"self": celpy.json_to_cel(value)}
    if old is not None:
        activation["oldSelf"] = celpy.json_to_cel(old)
    result = _ENV.program(_ENV.compile(rule)).evaluate(activation)
    assert isinstance(result, celpy.celtypes.BoolType), f"{rule!r} gave {result!r}"
    return bool(result)


def test_every_rule_compiles() -> None:
    for path in ("", "spec", "spec.source", "spec.labels", "spec.credentialsRef.key"):
        for rule in rules_at(path):
            _ENV.compile(rule)


def test_exactly_one_source() -> None:
    one_source, _ = rules_at("spec.source")
    assert holds(one_source, {"desktopId": "e3v"})
    assert holds(one_source, {"computeImageId": "fd8"})
    assert not holds(one_source, {})
    assert not holds(one_source, {"desktopId": "e3v", "computeImageId": "fd8"})
    assert holds(one_source, {"imageId": "e3w"})
    assert not holds(one_source, {"imageId": "e3w", "desktopId": "e3v"})
    assert not holds(one_source, {"imageId": "e3w", "computeImageId": "fd8"})


def test_source_is_immutable() -> None:
    _, immutable = rules_at("spec.source")
    assert holds(immutable, {"desktopId": "e3v"}, old={"desktopId": "e3v"})
    assert not holds(immutable, {"desktopId": "e3w"}, old={"desktopId": "e3v"})
    assert not holds(immutable, {"computeImageId": "e3v"}, old={"desktopId": "e3v"})


def test_folder_is_refused_with_an_adopted_image() -> None:
    _, _, forbidden = rules_at("spec")
    assert holds(forbidden, {"source": {"imageId": "e3w"}})
    assert holds(forbidden, {"source": {"desktopId": "e3v"}, "folderId": "b1g"})
    assert not holds(forbidden, {"source": {"imageId": "e3w"}, "folderId": "b1g"})


def test_folder_is_required_with_a_compute_image() -> None:
    required, _, _ = rules_at("spec")
    assert holds(required, {"source": {"desktopId": "e3v"}})
    assert holds(required, {"source": {"computeImageId": "fd8"}, "folderId": "b1g"})
    assert not holds(required, {"source": {"computeImageId": "fd8"}})


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (None, None, True),
        ("b1g", "b1g", True),
        ("b1g", "b1h", False),
        (None, "b1g", False),
        ("b1g", None, False),
    ],
)
def test_folder_is_immutable(old: str | None, new: str | None, allowed: bool) -> None:
    _, immutable, _ = rules_at("spec")

    def spec(folder: str | None) -> dict[str, Any]:
        return {"source": {"desktopId": "e3v"}} | ({"folderId": folder} if folder else {})

    assert holds(immutable, spec(new), old=spec(old)) is allowed


@pytest.mark.parametrize(
    ("name", "spec", "allowed"),
    [
        ("analysts-base", {}, True),
        ("a", {}, True),
        ("x" * 50, {}, True),
        ("x" * 51, {}, False),
        ("analysts.base", {}, False),
        ("1-analysts", {}, False),
        ("analysts.base", {"name": "analysts-base"}, True),
    ],
)
def test_metadata_name_must_be_a_cloud_name_without_spec_name(name: str, spec: Schema, allowed: bool) -> None:
    [rule] = rules_at("")
    obj = {"metadata": {"name": name}, "spec": {"source": {"desktopId": "e3v"}} | spec}
    assert holds(rule, obj) is allowed


def test_metadata_name_rule_survives_a_missing_spec() -> None:
    # The required-field check reports the missing spec; the rule itself must not fail with an error.
    [rule] = rules_at("")
    assert holds(rule, {"metadata": {"name": "analysts-base"}})


@pytest.mark.parametrize(
    "key", ["team", "t", "cost_center", "a-1", "t" * 63, "Team", "1team", "_t", "", "t" * 64, "a.b"]
)
def test_label_keys_agree_with_the_model(key: str) -> None:
    keys_rule, _reserved = rules_at("spec.labels")
    assert holds(keys_rule, {key: "v"}) is is_label_key(key)


def test_no_labels_is_fine() -> None:
    assert all(holds(rule, {}) for rule in rules_at("spec.labels"))


def test_the_ownership_label_is_reserved() -> None:
    _keys, reserved_rule = rules_at("spec.labels")
    assert holds(reserved_rule, {"team": "a"})
    assert not holds(reserved_rule, {OWNER_UID_LABEL: "x"})
    assert not holds(reserved_rule, {"clouddesktop-yc-io-owner-cluster": "x"})
    assert holds(reserved_rule, {"clouddesktop-yc-io": "close, but not the prefix"})


@pytest.mark.parametrize(
    ("key", "allowed"),
    [("key.json", True), (".hidden", True), ("a..b", True), (".", False), ("..", False), ("..key", False)],
)
def test_secret_key_dots(key: str, allowed: bool) -> None:
    [rule] = rules_at("spec.credentialsRef.key")
    assert holds(rule, key) is allowed
