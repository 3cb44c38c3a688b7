"""The chaos benchmark: its fault rules against the fake's own rule engine, its judging of images, and a tiny
end-to-end run (5 objects, 2 kills, transient faults, idempotency keys ignored) that writes its report."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from benchmarks import chaos
from desktop_image_operator.api.constants import OWNER_UID_LABEL
from desktop_image_operator_dev.fakecloud.faults import FaultSet

REPO = Path(__file__).resolve().parents[2]
OBJECTS = 5
SEED = 20240601
DRAWS = 20_000


def image(image_id: str, uid: str | None) -> dict[str, Any]:
    return {
        "id": image_id,
        "name": image_id,
        "status": "ACTIVE",
        "labels": {OWNER_UID_LABEL: uid} if uid else {},
    }


def test_fault_rules_fail_the_given_share_of_calls_split_evenly_between_the_two_codes() -> None:
    faults = FaultSet()
    for rule in chaos.fault_rules(0.2, random.Random(1)):
        faults.add(rule)
    outcomes: Counter[str] = Counter()
    for _ in range(DRAWS):
        decision = faults.decide("OperationService.Get", "rest")
        outcomes[decision.error[0].name if decision and decision.error else "OK"] += 1
    assert outcomes["UNAVAILABLE"] / DRAWS == pytest.approx(0.1, abs=0.01)
    assert outcomes["INTERNAL"] / DRAWS == pytest.approx(0.1, abs=0.01)
    assert faults.decide("DesktopService.Get", "rest") is None


def test_no_fault_rules_without_a_fault_rate() -> None:
    assert chaos.fault_rules(0.0, random.Random(1)) == []


def test_an_object_with_two_images_is_a_duplicate_and_foreign_images_are_not() -> None:
    uids = {"uid-a": "a", "uid-b": "b"}
    images = [image("e1", "uid-a"), image("e2", "uid-a"), image("e3", "uid-b"), image("e4", "uid-x")]
    assert chaos.duplicates(images, uids) == {"a": ["e1", "e2"]}


def test_a_stuck_object_is_told_by_its_ready_condition() -> None:
    conditions = [
        {"type": "Synced", "status": "True", "reason": "Synced"},
        {"type": "Ready", "status": "False", "reason": "Copying", "message": "copy running"},
    ]
    assert chaos.ready_condition({"status": {"conditions": conditions}}) == "False Copying: copy running"
    assert chaos.ready_condition({"metadata": {"name": "new"}}) == "no Ready condition"


def test_the_verdict_is_clean_only_when_every_figure_is_zero_and_both_phases_finished() -> None:
    converged: dict[str, Any] = {"duplicates": {}, "orphans": [], "stuck": [], "missing": 0}
    deleted: dict[str, Any] = {"leaked": [], "stuck": []}
    assert chaos.verdict({"converge": converged, "delete": deleted})["clean"]
    assert not chaos.verdict({"converge": converged, "delete": {**deleted, "stuck": ["x"]}})["clean"]
    assert not chaos.verdict({"converge": {**converged, "missing": 1}, "delete": deleted})["clean"]
    assert not chaos.verdict({"converge": converged})["clean"]
    assert not chaos.verdict({"converge": converged, "delete": deleted, "error": "gone"})["clean"]


def test_batches_share_the_items_in_order_and_differ_in_size_by_at_most_one() -> None:
    assert chaos.split(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert chaos.split([1, 2], 3) == [[1], [2], []]
    assert chaos.split([], 1) == [[]]


def test_the_matrix_runs_both_idempotency_modes_with_faults_and_optionally_without() -> None:
    labels = [case.label for case in chaos.cases(chaos.ChaosOptions(without_faults=True))]
    assert labels == [
        "keys-honoured-faults-20",
        "keys-honoured-faults-0",
        "keys-ignored-faults-20",
        "keys-ignored-faults-0",
    ]
    assert [case.label for case in chaos.cases(chaos.ChaosOptions(keys="ignored"))] == [
        "keys-ignored-faults-20"
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("chaos-report")
    completed = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.chaos", "--objects", str(OBJECTS), "--kills", "2",
            "--keys", "ignored", "--seed", str(SEED), "--copy-seconds", "1",
            "--min-uptime", "0.5", "--max-uptime", "1.5", "--timeout", "40", "--out", str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
    )  # fmt: skip
    assert completed.returncode in (0, 1), completed.stdout + completed.stderr
    assert f"seed {SEED}" in completed.stdout
    data: dict[str, Any] = json.loads((out / "chaos.json").read_text())
    return completed.returncode, data, (out / "chaos.md").read_text()


@pytest.mark.controlplane
def test_a_tiny_chaos_run_kills_as_planned_and_reports_the_calls(
    run: tuple[int, dict[str, Any], str],
) -> None:
    _, data, markdown = run
    assert data["seed"] == SEED
    [case] = data["cases"]
    assert case["label"] == "keys-ignored-faults-20"
    assert case["sources"] == {"computeImageId": 3, "desktopId": 2}
    [converging] = case["converge"]["kills"]
    [deleting] = case["delete"]["kills"]
    # One kill per phase: the whole phase is one batch, applied (deleted) before the kill.
    assert converging["acted"] == deleting["acted"] == OBJECTS
    assert 0 <= converging["pending"] <= OBJECTS
    assert 0.5 <= converging["uptimeSeconds"] <= 1.5
    calls = case["converge"]["cloudCalls"]
    copies = sum(calls["byMethod"].get(method, 0) for method in chaos.COPY_METHODS)
    assert copies >= OBJECTS
    assert calls["injectedFaults"] > 0
    assert case["delete"]["cloudCalls"]["byMethod"].get("DesktopImageService.Delete", 0) >= OBJECTS
    assert f"seed **{SEED}**" in markdown
    assert "## Verdict" in markdown


@pytest.mark.controlplane
def test_a_tiny_chaos_run_leaves_no_duplicate_leak_or_stuck_object(
    run: tuple[int, dict[str, Any], str],
) -> None:
    code, data, _ = run
    [case] = data["cases"]
    assert case["verdict"] == {
        "duplicates": 0,
        "orphansAtConvergence": 0,
        "leakedAfterDeletion": 0,
        "stuckConverging": 0,
        "stuckDeleting": 0,
        "finished": True,
        "clean": True,
    }
    assert case["copies"]["perObjectMax"] == 1
    assert code == 0
