"""Log lines say which object and which reconcile they belong to, in both formats."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from desktop_image_operator.observability.logs import configure_logging, reconcile_scope


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_object_and_the_reconcile_as_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    with reconcile_scope("team-a", "analysts-base", "u-1") as scope:
        logging.getLogger("desktop_image_operator.test").info("copy started")
    logging.getLogger("desktop_image_operator.test").info("outside")
    inside, outside = [json.loads(line) for line in capsys.readouterr().err.splitlines()[-2:]]
    assert inside["message"] == "copy started"
    assert (inside["namespace"], inside["object_name"], inside["uid"]) == ("team-a", "analysts-base", "u-1")
    assert inside["reconcile_id"] == scope.reconcile_id
    assert "reconcile_id" not in outside


def test_plain_lines_start_with_time_level_and_the_object(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("plain", "INFO")
    with reconcile_scope("team-a", "analysts-base", "u-1") as scope:
        logging.getLogger("desktop_image_operator.test").warning("throttled")
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith("[20")  # the time
    assert "WARNING" in line
    assert f"[team-a/analysts-base uid=u-1 reconcile={scope.reconcile_id}] throttled" in line


def test_each_reconcile_gets_its_own_id() -> None:
    with reconcile_scope("ns", "a", "u") as first, reconcile_scope("ns", "a", "u") as second:
        assert first.reconcile_id != second.reconcile_id
