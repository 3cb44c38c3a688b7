"""Run the Argo CD health check as Argo CD does: through gopher-lua, in the Go program under `luarunner/`.

The program is built once into the project's cache directory (outside the repository) by the control
plane's own cached, locked build, under a name that carries a digest of its sources, so later test
sessions reuse it and a change of source builds afresh.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_image_operator_dev.devenv.binaries import build_cached

SOURCE = Path(__file__).resolve().parent / "luarunner"
REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "deploy" / "argocd"
HEALTH_SCRIPT = ARGOCD / "health.lua"
BUILD_TIMEOUT = 600.0
RUN_TIMEOUT = 30.0


class LuaRunError(RuntimeError):
    """The script failed under gopher-lua (an error, a bad return value) or the runner could not run."""


@dataclass(frozen=True)
class Health:
    status: str
    message: str


def ensure_runner(go: str = "go") -> Path:
    """The runner binary, built on first use."""
    directory = build_cached(
        SOURCE,
        {"luarunner": "."},
        label="luarunner",
        files=("go.mod", "go.sum", "main.go"),
        go=go,
        timeout=BUILD_TIMEOUT,
    )
    return directory / "luarunner"


def run_health(
    runner: Path,
    obj: Path | dict[str, Any],
    script: Path = HEALTH_SCRIPT,
) -> Health:
    """Run `script` on `obj` (a YAML/JSON file, or an object as a dict); LuaRunError when it fails."""
    if isinstance(obj, Path):
        argv, stdin = [str(runner), "-script", str(script), "-obj", str(obj)], None
    else:
        argv, stdin = [str(runner), "-script", str(script), "-obj", "-"], json.dumps(obj)
    completed = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    if completed.returncode != 0:
        raise LuaRunError(completed.stderr.strip() or f"luarunner exited with {completed.returncode}")
    result = json.loads(completed.stdout)
    return Health(status=result["status"], message=result.get("message", ""))
