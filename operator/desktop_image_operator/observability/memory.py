"""Giving memory back: a periodic full garbage collection, then the C heap's free pages returned.

A burst of work (thousands of objects created at once, or listed after a restart) leaves the heap much
larger than what stays live: decoded watch events and API answers are short-lived, but garbage in
reference cycles waits for a full collection that a large, steady heap rarely triggers, and glibc keeps
freed pages mapped. Every `interval` seconds the whole heap is collected and, on glibc, `malloc_trim`
hands free pages back to the system, so resident memory follows what is live rather than the peak.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 30.0


def _malloc_trim() -> Callable[[], None] | None:
    """glibc's malloc_trim(0), or None on a C library without it (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0) and None


def release() -> float:
    """One collection and trim; returns the seconds it took (the event loop is held meanwhile)."""
    started = time.perf_counter()
    gc.collect()
    if (trim := _TRIM) is not None:
        trim()
    return time.perf_counter() - started


async def keep_releasing(interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
    """Release memory every `interval` seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        took = release()
        log.debug("released memory in %.3fs", took)


_TRIM = _malloc_trim()
