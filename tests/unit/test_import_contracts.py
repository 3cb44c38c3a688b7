"""Every import contract can fail: a copy of the operator with one deliberate violation breaks the
contract that forbids it, and the untouched copy keeps them all (so the copy, not the installed package,
is what was checked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# contract id -> (module of the copy, the import added to it)
VIOLATIONS = {
    "layers": ("kube/_api.py", "import desktop_image_operator.cloud"),
    "controller-layers": ("controller/run_settings.py", "import desktop_image_operator.controller.app"),
    "reconciler-layers": ("reconciler/reasons.py", "import desktop_image_operator.reconciler.outcome"),
    "base-stands-alone": ("base/backoff.py", "import desktop_image_operator.kube"),
    "base-face": ("kube/_api.py", "import desktop_image_operator.base._fencing"),
    "kube-face": ("controller/credentials.py", "import desktop_image_operator.kube._secrets"),
    "cloud-faces": ("controller/app.py", "import desktop_image_operator.cloud.session"),
    "reconciler-faces": ("controller/owners.py", "import desktop_image_operator.reconciler.ownership"),
    "controller-face": ("commands/run.py", "import desktop_image_operator.controller.app"),
    "decision-is-pure": ("reconciler/decide.py", "import asyncio"),
    "api-face": ("reconciler/resource.py", "import desktop_image_operator.api.spec"),
    "clients-report-through-hooks": ("kube/_secrets.py", "import desktop_image_operator.observability"),
}


def lint(tree: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """lint-imports on the copy in `tree`, with the repository's contracts."""
    shutil.copy(REPO / ".importlinter", tree / ".importlinter")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(REPO / "devtools")])}
    chosen = [option for contract in contracts for option in ("--contract", contract)]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", *chosen, ".importlinter"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(
        REPO / "operator" / "desktop_image_operator",
        tmp_path / "desktop_image_operator",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def test_the_untouched_copy_keeps_every_contract(tree: Path) -> None:
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_contract_has_a_violation_here() -> None:
    ids = {
        line.removeprefix("[importlinter:contract:").rstrip("]")
        for line in (REPO / ".importlinter").read_text().splitlines()
        if line.startswith("[importlinter:contract:")
    }
    # The older contracts forbid third-party packages or the development package, tested by lint itself.
    assert set(VIOLATIONS) <= ids


@pytest.mark.parametrize("contract", sorted(VIOLATIONS))
def test_a_deliberate_violation_breaks_its_contract(tree: Path, contract: str) -> None:
    module, line = VIOLATIONS[contract]
    target = tree / "desktop_image_operator" / module
    target.write_text(target.read_text() + f"\n{line}  # deliberate violation\n")
    result = lint(tree, contract)
    assert result.returncode != 0, result.stdout
    assert "1 broken" in result.stdout, result.stdout
