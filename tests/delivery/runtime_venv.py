"""The image's runtime environment (the builder's /opt/venv, replayed): its weight, its bytecode, and the
modules a process imported.

The image runs with PYTHONDONTWRITEBYTECODE on a read-only filesystem, so a module whose bytecode is
missing or stale is compiled again in memory at every start. Whether a module loads from bytecode is
asked of the environment's own interpreter: a spy on the source loader's `source_to_code`, which the
import system calls only when the cached bytecode is missing or does not match the source.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The most the runtime environment may weigh, in bytes (decimal megabytes, by either measure of Weight).
LIMIT = 200 * 10**6
MB = 10**6

# Before `body` runs: record every file the import system compiles from source instead of loading its
# bytecode. The interpreter runs with -I (nothing from the caller's environment or working directory on
# sys.path) and -B (the image's PYTHONDONTWRITEBYTECODE), so the probe writes nothing either.
_SPY = """\
import importlib.machinery, json, sys
compiled = []
_source_to_code = importlib.machinery.SourceFileLoader.source_to_code
def _spy(self, data, path, *args, **kwargs):
    compiled.append(str(path))
    return _source_to_code(self, data, path, *args, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = _spy
"""

# Loads the bytecode of each file named on standard input, importing nothing.
_LOAD_EACH = """
for path in json.load(sys.stdin):
    importlib.machinery.SourceFileLoader("probe", path).get_code("probe")
"""

# Imports what standard input names, then tells what was imported.
_IMPORT = """
for name in json.load(sys.stdin):
    __import__(name)
modules = {name: getattr(module, "__file__", None) for name, module in sys.modules.items()}
"""

_REPORT = """
report = {"compiled": compiled, "modules": modules, "dont_write_bytecode": sys.dont_write_bytecode}
json.dump(report, sys.stdout)
"""

# `-X importtime` (PYTHONPROFILEIMPORTTIME): one line per module, when its import ends.
_IMPORT_TIME = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Weight:
    apparent: int  # the bytes of its files and links (what an image layer stores, less the tar headers)
    on_disk: int  # the blocks its files, links and directories take here (`du -s`)

    def describe(self) -> str:
        return f"{self.apparent / MB:.1f} MB apparent, {self.on_disk / MB:.1f} MB on disk"


def weigh(root: Path) -> Weight:
    apparent = on_disk = 0
    for dirpath, _, filenames in os.walk(root):
        on_disk += Path(dirpath).lstat().st_blocks * 512
        for name in filenames:
            stat = (Path(dirpath) / name).lstat()
            apparent += stat.st_size
            on_disk += stat.st_blocks * 512
    return Weight(apparent, on_disk)


def site_packages(venv: Path) -> Path:
    [site] = venv.glob("lib/python*/site-packages")
    return site


def bytecode_files(root: Path) -> list[Path]:
    return sorted(root.rglob("__pycache__/*.pyc"))


@dataclass(frozen=True)
class Probe:
    compiled: list[str]  # files compiled from source: their bytecode was missing or stale
    modules: dict[str, str | None]  # what the interpreter had imported at the end, and from where
    dont_write_bytecode: bool

    def compiled_under(self, root: Path) -> list[str]:
        return [path for path in self.compiled if Path(path).is_relative_to(root)]


def load_each(python: Path, sources: Sequence[Path]) -> Probe:
    """Load the code of each source file the way an import does, without running it."""
    return _probe(python, _LOAD_EACH + "modules = {}\n", [str(path) for path in sources])


def import_modules(python: Path, names: Sequence[str]) -> Probe:
    return _probe(python, _IMPORT, list(names))


def _probe(python: Path, body: str, argument: list[str]) -> Probe:
    completed = subprocess.run(
        [str(python), "-I", "-B", "-c", _SPY + body + _REPORT],
        input=json.dumps(argument),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    found: dict[str, Any] = json.loads(completed.stdout)
    return Probe(found["compiled"], found["modules"], found["dont_write_bytecode"])


def imported_modules(stderr: str) -> list[str]:
    """The modules a process run with PYTHONPROFILEIMPORTTIME imported, in the order their imports ended."""
    return _IMPORT_TIME.findall(stderr)


def without_import_times(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("import time:"))


def in_package(modules: Iterable[str], package: str) -> list[str]:
    return [name for name in modules if name == package or name.startswith(f"{package}.")]
