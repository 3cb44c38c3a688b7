"""The chaos benchmark's `--strict-fake`: it reaches the fake's strict copy switch in every case."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import chaos

REPO = Path(__file__).resolve().parents[2]


def test_strict_fake_is_off_unless_asked_and_shows_in_the_report_options() -> None:
    assert chaos.parse([]).strict_fake is False
    options = chaos.parse(["--strict-fake"])
    assert options.strict_fake is True
    assert options.to_json()["strict_fake"] is True


def test_the_help_names_the_strict_fake_option() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert "--strict-fake" in completed.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("strict", [True, False])
def test_each_case_prepares_the_fake_with_the_strict_switch_as_asked(tmp_path: Path, strict: bool) -> None:
    options = chaos.ChaosOptions(objects=2, strict_fake=strict)
    cloud = chaos.FakeCloud(tmp_path, copy_seconds=1.0, operation_seconds=0.5)
    try:
        # Preparing a case talks to the fake only: the control plane's parts are not needed.
        unused: Any = None
        harness = chaos.Harness(options, tmp_path, tmp_path / "kubeconfig", unused, unused, cloud, None)
        for case in chaos.cases(options):
            chaos._prepare_cloud(harness, case, random.Random(1))
            assert cloud.config()["strictCopyFields"] is strict
    finally:
        cloud.stop()
