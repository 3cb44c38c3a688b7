"""An object's own resync period, from its annotation, within the operator's floor."""

from __future__ import annotations

from typing import Any

import pytest

from desktop_image_operator.controller.resync import resync_of
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.reconciler.annotations import RESYNC_SECONDS

SETTINGS = RunSettings(resync_seconds=600, min_resync_seconds=30)


def body(**annotations: str) -> dict[str, Any]:
    return {"metadata": {"annotations": annotations}}


def test_an_object_without_the_annotation_follows_the_operator_s_period() -> None:
    assert resync_of(body(), SETTINGS).seconds == 600
    assert resync_of({"metadata": {}}, SETTINGS).problem is None


def test_an_object_may_ask_for_a_longer_or_shorter_period() -> None:
    assert resync_of(body(**{RESYNC_SECONDS: "3600"}), SETTINGS).seconds == 3600
    assert resync_of(body(**{RESYNC_SECONDS: "45"}), SETTINGS).seconds == 45


def test_a_period_below_the_floor_is_raised_to_it_and_said() -> None:
    resync = resync_of(body(**{RESYNC_SECONDS: "1"}), SETTINGS)
    assert resync.seconds == 30
    assert resync.problem is not None
    assert "floor of 30 s" in resync.problem


@pytest.mark.parametrize("written", ["soon", "-5", "0", "nan", ""])
def test_a_value_that_is_no_period_is_ignored_with_a_message_naming_the_annotation(written: str) -> None:
    resync = resync_of(body(**{RESYNC_SECONDS: written}), SETTINGS)
    assert resync.seconds == 600
    assert resync.problem is not None
    assert RESYNC_SECONDS in resync.problem
