"""The live view of `desktop-image-operator dev`: the DesktopImages as a table, until all are Ready.

On a terminal the table is redrawn in place once a second; anything else gets a plain snapshot whenever
something but the ages changed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from desktop_image_operator.api.constants import CONDITION_READY, GROUP, PLURAL
from desktop_image_operator_dev.devenv.stack import Child, Kubectl, StackError

LIST_TIMEOUT = 10.0
REFRESH_SECONDS = 1.0
SLOW_READY_SECONDS = 120.0  # after this long without all Ready, point at the operator's log
MAX_LIST_FAILURES = 30  # consecutive failed listings (about half a minute) before giving up
TABLE_HEADER = ("NAMESPACE", "NAME", "READY", "REASON", "STATUS", "IMAGE ID", "AGE")


@dataclass(frozen=True)
class Row:
    namespace: str
    name: str
    ready: str
    reason: str
    status: str
    image_id: str
    created: datetime | None
    is_ready: bool

    def key(self) -> tuple[str, ...]:
        """What a change is judged by: every cell but the age, which changes every second."""
        return (self.namespace, self.name, self.ready, self.reason, self.status, self.image_id)

    def cells(self, now: datetime) -> tuple[str, ...]:
        age = "-" if self.created is None else format_age((now - self.created).total_seconds())
        return (*self.key(), age)


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def row_from_object(obj: dict[str, Any]) -> Row:
    metadata, status = obj.get("metadata") or {}, obj.get("status") or {}
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    ready: dict[str, Any] = next((c for c in conditions if c.get("type") == CONDITION_READY), {})
    # Ready counts only for the spec the operator has seen, as `kubectl wait` judges it.
    current = ready.get("observedGeneration", metadata.get("generation")) == metadata.get("generation")
    return Row(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        ready=str(ready.get("status", "-")),
        reason=str(ready.get("reason", "-")),
        status=str(status.get("imageStatus", "-")),
        image_id=str(status.get("imageId", "-")),
        created=parse_time(metadata.get("creationTimestamp")),
        is_ready=ready.get("status") == "True" and current,
    )


def rows_from_list(data: dict[str, Any]) -> list[Row]:
    rows = [row_from_object(item) for item in data.get("items") or []]
    return sorted(rows, key=lambda r: (r.namespace, r.name))


def format_age(seconds: float) -> str:
    """Like kubectl's AGE column: 42s, 3m5s, 25m, 5h, 3d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes, s = divmod(s, 60)
    if minutes < 10:
        return f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


def render_table(rows: Sequence[Row], now: datetime) -> list[str]:
    if not rows:
        return ["No DesktopImages yet."]
    table = [TABLE_HEADER, *(row.cells(now) for row in rows)]
    if len({row.namespace for row in rows}) == 1:
        table = [line[1:] for line in table]  # one namespace: its column would only cost width
    widths = [max(len(cell) for cell in column) for column in zip(*table, strict=True)]
    return [
        "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]


def all_ready(rows: Sequence[Row]) -> bool:
    return bool(rows) and all(row.is_ready for row in rows)


def summary_line(rows: Sequence[Row], elapsed: float) -> str:
    ready = sum(row.is_ready for row in rows)
    return f"[{elapsed:6.1f} s] DesktopImages Ready: {ready}/{len(rows)}"


class Display:
    """A terminal gets the table redrawn in place; anything else gets plain snapshots, only on change."""

    def __init__(self, stream: TextIO, interactive: bool) -> None:
        self.stream = stream
        self.interactive = interactive
        self._drawn = 0  # lines of the block drawn last (terminal)
        self._last_key: object = None

    def show(self, lines: Sequence[str], key: object) -> None:
        if self.interactive:
            self._redraw(lines)
        elif key != self._last_key:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        self._last_key = key

    def _redraw(self, lines: Sequence[str]) -> None:
        width = max(20, shutil.get_terminal_size().columns - 1)
        text = "\n".join(line[:width] for line in lines) + "\n"  # cut, so no line wraps and the count holds
        erase = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
        self.stream.write(erase + text)
        self.stream.flush()
        self._drawn = len(lines)


def is_interactive(stream: TextIO) -> bool:
    return stream.isatty() and os.environ.get("TERM", "") != "dumb"


@dataclass
class Watcher:
    """Polls the DesktopImages once a second until all are Ready, watching the children meanwhile."""

    kubectl: Kubectl
    children: Sequence[Child]
    display: Display
    started: float
    operator_log: Path | None

    def until_all_ready(self) -> float:
        """Return the seconds from start to all Ready; runs as long as that takes (Ctrl-C ends it)."""
        failures = 0
        while True:
            self._check_children()
            elapsed = time.monotonic() - self.started
            try:
                rows = rows_from_list(
                    self.kubectl.json("get", f"{PLURAL}.{GROUP}", "--all-namespaces", timeout=LIST_TIMEOUT)
                )
                failures, note = 0, ""
            except (StackError, json.JSONDecodeError) as error:
                failures += 1
                if failures >= MAX_LIST_FAILURES:
                    raise StackError(f"the API server stopped answering: {error}") from None
                rows, note = [], f"cannot list DesktopImages: {str(error).splitlines()[0]}"
            if elapsed > SLOW_READY_SECONDS and rows and not all_ready(rows):
                note = "\n".join(filter(None, (note, self._slow_hint())))
            self._show(rows, elapsed, note)
            if all_ready(rows):
                return elapsed
            time.sleep(REFRESH_SECONDS)

    def _show(self, rows: Sequence[Row], elapsed: float, note: str) -> None:
        lines = [summary_line(rows, elapsed), *render_table(rows, datetime.now(UTC))]
        lines += note.splitlines()
        self.display.show(lines, (tuple(row.key() for row in rows), note))

    def _slow_hint(self) -> str:
        if self.operator_log is None:
            return "Not all Ready yet: the operator is not running (--no-operator)."
        return f"Not all Ready after {SLOW_READY_SECONDS:.0f} s: see the operator's log, {self.operator_log}"

    def forever(self) -> None:
        """Keep serving until a signal ends us; stop with an error when a child dies."""
        while True:
            self._check_children()
            time.sleep(REFRESH_SECONDS)

    def _check_children(self) -> None:
        for child in self.children:
            child.check()
