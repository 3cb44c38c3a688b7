"""Run the Argo CD health check as Argo CD does: through gopher-lua, in the Go program under `luarunner/`.

The program is built once into the project's cache directory (outside the repository), under a name that
carries a digest of its sources, so later test sessions reuse it and a change of source builds afresh. A
file lock lets concurrent first runs build it only once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desktop_image_operator.devenv.binaries import cache_root

SOURCE = Path(__file__).resolve().parent / "luarunner"
SOURCE_FILES = ("go.mod", "go.sum", "main.go")
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


def _digest() -> str:
    h = hashlib.sha256()
    for name in SOURCE_FILES:
        h.update(name.encode() + b"\0" + (SOURCE / name).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def ensure_runner(go: str = "go") -> Path:
    """The runner binary, built on first use."""
    target = cache_root() / "bin" / f"luarunner-{_digest()}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        if shutil.which(go) is None:
            raise RuntimeError("the Go toolchain is needed to build the Lua runner; install Go 1.26")
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            env = {
                "GOTOOLCHAIN": "auto",
                **os.environ,
                "CGO_ENABLED": "0",
                "GOFLAGS": "-mod=readonly -buildvcs=false",
            }
            subprocess.run(
                [go, "build", "-trimpath", "-o", str(staging / "luarunner"), "."],
                cwd=SOURCE,
                env=env,
                check=True,
                timeout=BUILD_TIMEOUT,
            )
            os.replace(staging / "luarunner", target)  # atomic: readers see the whole binary or none
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


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
