"""The Dockerfile without a container engine: parse it, honour .dockerignore, and replay its builder stage.

The replay runs the builder's RUN instructions themselves (with /bin/sh, as `docker build` does) in a
directory standing in for the image's root filesystem, so the steps tested are the steps shipped. Absolute
paths of the image (/opt/venv, /build/...) are moved under that directory; `python` is a Python 3.11 of
this machine standing in for the base image's interpreter.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from desktop_image_operator_dev.helm import REPO


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.image} has no {keyword}"
        return found[-1]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def _logical_lines(text: str) -> Iterator[str]:
    """Instructions with their continuation lines joined; comment lines dropped (inside one too)."""
    current: list[str] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current.append(stripped[:-1].strip())
            continue
        current.append(stripped)
        yield " ".join(part for part in current if part)
        current = []
    if current:
        yield " ".join(current)


def substitute(value: str, variables: Mapping[str, str]) -> str:
    """$NAME and ${NAME} from `variables`; unknown names stay as they are."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), value
    )


def parse(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=substitute(words[0], global_args), name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args))
    return Dockerfile(global_args, stages)


def env_pairs(instruction: Instruction) -> list[tuple[str, str]]:
    """`ENV A=1 B="x y"`, the key=value form (the Dockerfile does not use the legacy `ENV A 1`)."""
    pairs = []
    for token in shlex.split(instruction.args):
        key, sep, value = token.partition("=")
        assert sep, f"ENV {instruction.args!r}: use the key=value form"
        pairs.append((key, value))
    return pairs


def copy_args(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """(flags, sources, destination) of a COPY."""
    words = shlex.split(instruction.args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words[:-1], words[-1]


class DockerIgnore:
    """.dockerignore semantics: a path is left out of the build context when the last pattern matching
    it or one of its parent directories is not a `!` exception."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            include = line.startswith("!")
            pattern = (line[1:] if include else line).strip("/")
            self.rules.append((include, re.compile(self._regex(pattern))))

    @staticmethod
    def _regex(pattern: str) -> str:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out, i = out + fnmatch.translate(pattern[i : end + 1])[4:-3], end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return f"^{out}$"

    def excluded(self, relative: str) -> bool:
        parts = relative.strip("/").split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for include, regex in self.rules:
            if any(regex.match(candidate) for candidate in candidates):
                excluded = not include
        return excluded

    def files(self, context: Path, source: str) -> list[str]:
        """The files of the build context under `source` (a COPY source), relative to the context."""
        top = context / source
        if top.is_file():
            return [] if self.excluded(source) else [source]
        found = []
        for dirpath, dirnames, filenames in os.walk(top):
            base = Path(dirpath).relative_to(context)
            dirnames[:] = sorted(d for d in dirnames if not self.excluded(str(base / d)))
            found += [str(base / n) for n in sorted(filenames) if not self.excluded(str(base / n))]
        return found


@dataclass
class Replay:
    """The builder stage replayed under `root`, which stands for the image's filesystem."""

    dockerfile: Dockerfile
    root: Path
    python: str  # the interpreter standing in for the base image's `python`
    context: Path = REPO
    log: list[str] = field(default_factory=list)

    def path(self, image_path: str) -> Path:
        """Where an absolute path of the image lives in the replay."""
        assert image_path.startswith("/"), image_path
        return self.root / image_path.lstrip("/")

    def reroot(self, value: str) -> str:
        """Environment values: absolute paths (colon-separated too) move under the root, except the
        system directories shared with this machine (/usr, /bin, ...)."""
        shared = ("/usr", "/bin", "/sbin", "/lib", "/etc", "/dev", "/proc")
        parts = []
        for part in value.split(":"):
            if part.startswith("/") and not part.startswith(shared):
                part = str(self.path(part))
            parts.append(part)
        return ":".join(parts)

    def build(self, stage_name: str = "builder", *, timeout: float = 600) -> dict[str, str]:
        """Run the stage's WORKDIR, ENV, COPY and RUN instructions in order; returns its environment."""
        stage = self.dockerfile.stage(stage_name)
        ignore = DockerIgnore((self.context / ".dockerignore").read_text())
        shims = self.root / ".replay-bin"
        shims.mkdir(parents=True, exist_ok=True)
        python_shim = shims / "python"
        python_shim.write_text(f'#!/bin/sh\nexec {shlex.quote(self.python)} "$@"\n')
        python_shim.chmod(0o755)
        env = {"PATH": f"{shims}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.path("/root"))}
        self.path("/root").mkdir(parents=True, exist_ok=True)
        workdir = self.root
        for instruction in stage.instructions:
            if instruction.keyword == "WORKDIR":
                workdir = self.path(substitute(instruction.args, env))
                workdir.mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "ENV":
                for key, value in env_pairs(instruction):
                    env[key] = self.reroot(substitute(value, env))
            elif instruction.keyword == "COPY":
                flags, sources, destination = copy_args(instruction)
                assert "from" not in flags, "the builder copies from the build context only"
                self._copy(ignore, sources, destination, workdir)
            elif instruction.keyword == "RUN":
                self.log.append(f"RUN {instruction.args}")
                completed = subprocess.run(
                    ["/bin/sh", "-c", instruction.args],
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                )
                self.log.append(completed.stdout + completed.stderr)
                assert completed.returncode == 0, (
                    f"RUN {instruction.args} failed ({completed.returncode}):\n"
                    f"{completed.stderr[-4000:]}{completed.stdout[-2000:]}"
                )
            else:
                assert instruction.keyword in ("ARG", "LABEL"), (
                    f"the replay does not know {instruction.keyword}"
                )
        return env

    def _copy(self, ignore: DockerIgnore, sources: list[str], destination: str, workdir: Path) -> None:
        target = self.path(destination) if destination.startswith("/") else workdir / destination
        for source in sources:
            files = ignore.files(self.context, source.rstrip("/"))
            assert files, f"COPY {source}: nothing in the build context (.dockerignore?)"
            into_dir = destination.endswith("/") or len(sources) > 1
            for relative in files:
                if (self.context / source).is_dir():
                    inner = Path(relative).relative_to(source.rstrip("/"))
                    out = target / inner
                else:
                    out = target / Path(relative).name if into_dir else target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.context / relative, out)


def runtime_python(root: Path, *, python: str) -> Path:
    """The image's runtime environment (/opt/venv), built under `root` by replaying the builder stage with
    `python` standing in for the base image's: its interpreter. What the operator runs on in the image,
    without the development packages of this checkout's environment."""
    replay = Replay(parse((REPO / "Dockerfile").read_text()), root, python)
    return Path(replay.build("builder")["VIRTUAL_ENV"]) / "bin" / "python"
