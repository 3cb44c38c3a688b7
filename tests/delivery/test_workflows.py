"""The GitHub Actions workflows, read from the files: what triggers them and how their actions are pinned.
actionlint checks their syntax and expressions in `make lint`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from desktop_image_operator_dev.helm import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
# owner/repo[/path]@<40 hex digits> # v<version>: a tag can be moved, a commit cannot; the comment says which
# release the commit is.
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40} # v\d+(\.\d+){2}$")


def _load(path: Path) -> dict[Any, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_there_is_a_test_workflow_and_a_release_workflow() -> None:
    assert [path.name for path in WORKFLOWS] == ["release.yml", "test.yml"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_every_action_is_pinned_by_a_full_commit_sha_naming_its_release(workflow: Path) -> None:
    uses = [
        line.split("uses:", 1)[1].strip()
        for line in workflow.read_text().splitlines()
        if line.strip().removeprefix("- ").startswith("uses:")
    ]
    assert uses
    assert not [use for use in uses if not PINNED.match(use)]


def test_pull_requests_and_pushes_to_main_run_make_test() -> None:
    workflow = _load(REPO / ".github" / "workflows" / "test.yml")
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"pull_request", "push"}
    assert triggers["push"] == {"branches": ["main"]}
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    assert [step["run"] for step in job["steps"] if "run" in step] == ["make test"]
    checkout = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
