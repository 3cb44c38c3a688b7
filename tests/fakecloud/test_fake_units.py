"""Small parts on their own: codes, descriptor-driven validation, filters, fault rules, config."""

from __future__ import annotations

import pytest
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2

from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode
from desktop_image_operator_dev.fakecloud.config import FakeCloudConfig
from desktop_image_operator_dev.fakecloud.faults import FaultSet
from desktop_image_operator_dev.fakecloud.filters import parse_filter
from desktop_image_operator_dev.fakecloud.requestlog import RequestLog
from desktop_image_operator_dev.fakecloud.validation import Bounds, rules_for, validate


def test_code_parsing_and_http_mapping() -> None:
    assert StatusCode.parse("unavailable") is StatusCode.UNAVAILABLE
    assert StatusCode.parse(8) is StatusCode.RESOURCE_EXHAUSTED
    assert StatusCode.parse("9") is StatusCode.FAILED_PRECONDITION
    for bad in ("NOPE", 99, True, None):
        with pytest.raises(ValueError, match="code"):
            StatusCode.parse(bad)
    expected = {3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 13: 500, 14: 503, 16: 401}
    assert {number: StatusCode(number).http_status for number in expected} == expected


@pytest.mark.parametrize(
    ("spec", "low", "high"),
    [
        ("<=50", None, 50),
        ("1-63", 1, 63),
        ("0-1000", 0, 1000),
        (">0", 1, None),
        (">=2", 2, None),
        ("<5", None, 4),
    ],
)
def test_bounds(spec: str, low: int | None, high: int | None) -> None:
    bounds = Bounds.parse(spec)
    assert (bounds.low, bounds.high) == (low, high)


def test_rules_come_from_the_descriptors() -> None:
    rules = {rule.field.name: rule for rule in rules_for(service_pb2.CopyDesktopImageRequest.DESCRIPTOR)}
    assert rules["folder_id"].required
    assert rules["image_id"].required
    assert rules["name"].length == Bounds.parse("<=50")
    assert rules["description"].length == Bounds.parse("<=1024")
    labels = rules["labels"]
    assert labels.is_map
    assert labels.size == Bounds.parse("<=64")
    assert labels.key_length == Bounds.parse("1-63")
    assert labels.key_pattern is not None
    assert labels.key_pattern.pattern == "[a-z][-_0-9a-z]*"
    list_rules = {
        rule.field.name: rule for rule in rules_for(service_pb2.ListDesktopImagesRequest.DESCRIPTOR)
    }
    assert list_rules["page_size"].value == Bounds.parse("0-1000")


def test_validate_reports_the_field() -> None:
    validate(service_pb2.CopyFromDesktopRequest(desktop_id="d"))
    with pytest.raises(ApiError) as caught:
        validate(service_pb2.CopyFromDesktopRequest(desktop_id="d", labels={"ok": "fine", "-bad": "x"}))
    assert caught.value.code is StatusCode.INVALID_ARGUMENT
    assert "labels" in caught.value.message
    assert "-bad" in caught.value.message


def test_filter_parser() -> None:
    (condition,) = parse_filter('name NOT IN ("a", \'b\', "c\\"q")')
    assert condition.negated
    assert condition.values == frozenset({"a", "b", 'c"q'})
    assert not condition.matches("a")
    assert condition.matches("z")
    assert parse_filter("   ") == []
    with pytest.raises(ApiError):
        parse_filter("name = ")


def test_fault_rules_combine_in_order() -> None:
    faults = FaultSet()
    faults.add({"method": "*", "latencyMs": 50})
    faults.add({"method": "DesktopImageService.Copy", "code": "UNAVAILABLE", "count": 1})
    faults.add({"method": "DesktopImageService.Copy", "failOperation": True})
    first = faults.decide("DesktopImageService.Copy", "rest")
    assert first is not None
    assert first.latency_seconds == pytest.approx(0.05)
    assert first.error == (StatusCode.UNAVAILABLE, "Service is temporarily unavailable")
    assert first.fail_operation is None  # one outcome per call: the error came first
    second = faults.decide("DesktopImageService.Copy", "rest")
    assert second is not None
    assert second.error is None
    assert second.fail_operation == (StatusCode.INTERNAL, "Internal error")
    third = faults.decide("DesktopImageService.Get", "grpc")
    assert third is not None
    assert third.label == "latency"
    assert FaultSet().decide("DesktopImageService.Get", "rest") is None


def test_config_updates_are_all_or_nothing() -> None:
    config = FakeCloudConfig()
    with pytest.raises(ValueError, match="imageQuota"):
        config.update_from_json({"copySeconds": 1, "imageQuota": -1})
    assert config.copy_seconds == 3.0
    config.update_from_json({"copySeconds": 1, "tokenTtlSeconds": 60})
    assert config.to_json()["copySeconds"] == 1.0
    assert config.token_ttl_seconds == 60.0


def test_request_log_keeps_the_newest() -> None:
    log = RequestLog(2)
    for index in range(3):
        log.add(
            time="t",
            transport="rest",
            method=f"m{index}",
            code="OK",
            request_id="r",
            principal=None,
            idempotency_key=None,
            duration_ms=0.0,
        )
    assert [entry["method"] for entry in log.entries()] == ["m1", "m2"]
    log.resize(5)
    assert len(log) == 2
