"""Paths of the command-line tools the local stack and its tests drive."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def kubectl() -> str:
    """The kubectl pinned with the project (next to our Python), else the one on PATH."""
    pinned = Path(sys.executable).parent / "kubectl"
    if pinned.is_file():
        return str(pinned)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found: install the project with its dev extras (make venv)")
    return found
