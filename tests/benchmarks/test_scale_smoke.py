"""The scale benchmark runs end to end in quick mode and writes a report with every figure next to its
target. Timings are not asserted; counts that do not depend on the machine are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scale-report")
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return out


@pytest.fixture(scope="module")
def report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "scale.json").read_text())
    return data


def test_the_markdown_puts_every_figure_next_to_its_target(out: Path, report: dict[str, Any]) -> None:
    markdown = (out / "scale.md").read_text()
    assert "| figure | target | measured | met? |" in markdown
    for row in report["targets"]:
        assert row["figure"] in markdown
    assert len(report["targets"]) >= 15


def test_the_direct_client_and_the_operator_copy_the_same_number_of_images(report: dict[str, Any]) -> None:
    paired = report["paired"]
    assert paired["direct"]["cloudCalls"]["byMethod"]["DesktopImageService.Copy"] == paired["objects"]
    assert paired["operator"]["cloudCalls"]["byMethod"]["DesktopImageService.Copy"] == paired["objects"]
    assert paired["direct"]["allDoneSeconds"] >= paired["copySeconds"]
    assert paired["ratio"] > 0


def test_every_object_is_written_to_and_long_copies_are_polled(report: dict[str, Any]) -> None:
    paired = report["paired"]
    assert paired["operator"]["writes"]["objectsByCount"].get("0") is None
    for operator in ("learned", "fresh"):
        long = paired["longCopies"][operator]
        assert long["copies"] == report["options"]["long_objects"]
        assert long["pollsPerCopy"]["max"] >= 1


def test_the_restart_is_measured_over_its_first_resync_period(report: dict[str, Any]) -> None:
    many = report["many"]
    restart = many["restart"]
    assert restart["readyAtEnd"] == many["objects"] + 1
    assert restart["firstPeriod"]["cloudCalls"]["byMethod"].get("DesktopImageService.Get", 0) > 0
    assert restart["requestRate"]["peakPerSecond"] >= 1
    assert len(restart["memory"]["samples"]) >= 2
    assert all(rss > 0 for _, rss in restart["memory"]["samples"])
