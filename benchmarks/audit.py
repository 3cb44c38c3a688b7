"""The API server's audit log of write requests: who wrote what, counted.

The control plane logs every non-read request once, at stage ResponseComplete. The operator talks to the API
server through two clients with the same identity, told apart by user agent: kopf (`kopf/...`) and the
official Python client, which names itself (`desktop-image-operator/...`: status patches, Secret and
Lease writes). kubectl (`kubectl/...`) is the benchmark itself. Each write is counted as
"<verb> <resource>[/<subresource>]"; Kubernetes events separately.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

CLIENTS = {
    "kopf/": "kopf",
    "desktop-image-operator/": "kubernetes-client",
    "OpenAPI-Generator/": "kubernetes-client",
    "kubectl/": "kubectl",
}
OPERATOR_CLIENTS = frozenset({"kopf", "kubernetes-client"})
EVENT_RESOURCES = frozenset({"events"})


@dataclass(frozen=True)
class Write:
    time: float  # when the API server finished the request (Unix seconds)
    client: str  # kopf | kubernetes-client | kubectl | other
    verb: str
    resource: str  # "desktopimages/status", "events", ...
    namespace: str
    name: str
    code: int
    message: str = ""  # the API server's reason for refusing it, if it did

    @property
    def key(self) -> str:
        return f"{self.verb} {self.resource}"

    @property
    def is_event(self) -> bool:
        return self.resource.split("/")[0] in EVENT_RESOURCES

    @property
    def by_operator(self) -> bool:
        return self.client in OPERATOR_CLIENTS


def client_of(user_agent: str) -> str:
    for prefix, name in CLIENTS.items():
        if user_agent.startswith(prefix):
            return name
    return "other"


class AuditLog:
    """Reads the log from byte offsets: take `mark()` before a step, `writes(mark)` after it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        with self.path.open("rb") as stream:
            # A line being written is not complete yet: start after the last full one.
            stream.seek(max(0, size - 65536))
            tail = stream.read()
        cut = tail.rfind(b"\n")
        return size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail))

    def writes(self, start: int, end: int | None = None) -> list[Write]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as stream:
            stream.seek(start)
            data = stream.read() if end is None else stream.read(max(0, end - start))
        found: list[Write] = []
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line may still be being written
            write = _parse(entry)
            if write is not None:
                found.append(write)
        return found


def _parse(entry: dict[str, Any]) -> Write | None:
    if entry.get("stage") != "ResponseComplete":
        return None
    ref = entry.get("objectRef") or {}
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    stamp = entry.get("stageTimestamp") or entry.get("requestReceivedTimestamp") or ""
    return Write(
        time=datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0,
        client=client_of(entry.get("userAgent", "")),
        verb=entry.get("verb", ""),
        resource=resource or entry.get("requestURI", ""),
        namespace=ref.get("namespace", ""),
        name=ref.get("name", ""),
        code=int((entry.get("responseStatus") or {}).get("code", 0)),
        message=str((entry.get("responseStatus") or {}).get("message", "")),
    )


def tally(
    writes: list[Write], *, namespace: str | None = None, split_at: float | None = None
) -> dict[str, Any]:
    """The operator's writes in `namespace`: on objects and events, by client, failed ones, and (with
    `split_at`) how many came after that moment."""
    mine = [w for w in writes if w.by_operator and (namespace is None or w.namespace == namespace)]
    objects = Counter(w.key for w in mine if not w.is_event)
    events = Counter(w.key for w in mine if w.is_event)
    result: dict[str, Any] = {
        "total": sum(objects.values()),
        "byKind": dict(sorted(objects.items())),
        "events": sum(events.values()),
        "eventsByKind": dict(sorted(events.items())),
        "byClient": dict(sorted(Counter(w.client for w in mine).items())),
        "failed": dict(sorted(Counter(f"{w.key} {w.code}" for w in mine if w.code >= 400).items())),
        "failedMessages": sorted({f"{w.key} {w.code}: {w.message}"[:300] for w in mine if w.code >= 400}),
    }
    if split_at is not None:
        late = [w for w in mine if w.time > split_at]
        result["afterReady"] = dict(sorted(Counter(w.key for w in late).items()))
    return result
