"""The benchmarks run end to end in quick mode and write a plausible report. Timings are not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[2]
OBJECTS = 5
COPY_METHODS = ("DesktopImageService.Copy", "DesktopImageService.CopyFromDesktop")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench-report")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--objects",
            str(OBJECTS),
            "--no-grpc",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    markdown = (out / "benchmarks.md").read_text()
    assert "not guarantees" in markdown
    for heading in ("apply → Ready", "Delete → gone", "Steady state", f"{OBJECTS} DesktopImages"):
        assert heading in markdown
    data: dict[str, Any] = json.loads((out / "benchmarks.json").read_text())
    return data


def copies(calls: dict[str, Any]) -> int:
    return sum(calls["byMethod"].get(method, 0) for method in COPY_METHODS)


def test_describes_the_machine_and_the_versions(report: dict[str, Any]) -> None:
    assert report["machine"]["nproc"] >= 1
    assert report["machine"]["memoryTotalBytes"] > 0
    assert report["machine"]["python"].startswith("3.")
    assert report["versions"]["kopf"]
    assert report["versions"]["kubeApiserver"].startswith("v1.")


def test_one_object_is_one_copy_with_writes_and_no_hot_loop(report: dict[str, Any]) -> None:
    single = report["singleObject"]["rest"]
    for run in [single["warmUp"]["apply"], *single["apply"]["runs"]]:
        calls, writes = run["cloudCalls"], run["apiWrites"]
        assert copies(calls) == 1, calls
        assert calls["byMethod"].get("OperationService.Get", 0) >= 1
        assert calls["total"] < 30, calls
        assert writes["byKind"].get("patch desktopimages/status", 0) >= 1, writes
        assert writes["total"] > 0
        assert writes["events"] >= 1
    # The first object after start exchanges the key for an IAM token; later ones reuse it.
    assert single["warmUp"]["apply"]["cloudCalls"]["tokenCalls"] >= 1
    assert single["apply"]["summary"]["tokenCalls"]["max"] == 0


def test_delete_is_one_delete_call(report: dict[str, Any]) -> None:
    for run in report["singleObject"]["rest"]["delete"]["runs"]:
        assert run["cloudCalls"]["byMethod"].get("DesktopImageService.Delete") == 1, run["cloudCalls"]
        assert run["cloudImagesRemoved"] == 1
        assert run["apiWrites"]["total"] > 0


def test_many_objects_are_one_copy_each(report: dict[str, Any]) -> None:
    many = report["manyObjects"]
    create = many["create"]
    assert many["objects"] == OBJECTS
    assert copies(create["cloudCalls"]) == OBJECTS
    assert create["cloudImages"] == OBJECTS
    assert create["cloudCallsPerObject"]["DesktopImageService.Copy"] == 1
    assert create["apiWrites"]["total"] >= OBJECTS
    for moment in ("beforeObjects", "allReady", "afterIdle"):
        memory = many["memory"][moment]
        assert 0 < memory["vmRssBytes"] <= memory["vmHwmBytes"]
    assert many["idle"]["cloudCalls"]["total"] == 0


def test_steady_state_reads_and_copies_nothing(report: dict[str, Any]) -> None:
    steady = report["manyObjects"]["steadyState"]
    assert steady["readyAtEnd"] == OBJECTS
    assert steady["cloudCalls"]["byMethod"].get("DesktopImageService.Get", 0) > 0
    assert copies(steady["cloudCalls"]) == 0
