"""Log set-up: plain lines for people, or one JSON object per line for log pipelines.

Every line logged during a reconcile carries the object's namespace, name and UID and the reconcile's
own id, in both formats: plain lines start with them, JSON lines carry them as fields. A reconcile says
who it is about with `reconcile_scope`; the context follows the task, so concurrent reconciles of other
objects never mix their lines.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import kopf


@dataclass(frozen=True)
class ReconcileContext:
    namespace: str
    name: str
    uid: str
    reconcile_id: str

    @property
    def prefix(self) -> str:
        return f"[{self.namespace}/{self.name} uid={self.uid} reconcile={self.reconcile_id}]"


_CURRENT: contextvars.ContextVar[ReconcileContext | None] = contextvars.ContextVar("reconcile", default=None)


@contextlib.contextmanager
def reconcile_scope(namespace: str, name: str, uid: str) -> Iterator[ReconcileContext]:
    """Mark the lines logged inside as this object's, under a new reconcile id."""
    context = ReconcileContext(namespace, name, uid, uuid.uuid4().hex[:12])
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


class _ReconcileFields(logging.Filter):
    """Adds the reconcile's context to each record: as fields (JSON), or as a prefix (plain)."""

    def __init__(self, *, prefix: bool) -> None:
        super().__init__()
        self._prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CURRENT.get()
        if context is None:
            return True
        record.namespace = context.namespace
        record.object_name = context.name
        record.uid = context.uid
        record.reconcile_id = context.reconcile_id
        if self._prefix and not str(record.msg).startswith(context.prefix):
            record.msg = f"{context.prefix} {record.msg}"
        return True


def configure_logging(log_format: str, level: str) -> None:
    json_lines = log_format == "json"
    # FULL: time, logger and level before the message (kopf's PLAIN is the message alone).
    kopf.configure(
        log_format=kopf.LogFormat.JSON if json_lines else kopf.LogFormat.FULL,
        verbose=level == "DEBUG",
        quiet=level in ("WARNING", "ERROR"),
    )
    root = logging.getLogger()
    root.setLevel(level)
    # kopf.configure has just appended its own stream handler: only its lines get the context.
    root.handlers[-1].addFilter(_ReconcileFields(prefix=not json_lines))
    # Request logs of the HTTP clients would print URLs with IDs at every poll, and kopf says "Handler
    # succeeded" for every watch event: keep them for DEBUG.
    for noisy in ("httpx", "httpcore", "aiohttp.access", "kopf.objects"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    logging.captureWarnings(True)
