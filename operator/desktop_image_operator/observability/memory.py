"""Giving memory back: a periodic full garbage collection, then the C heap's free pages returned.

A burst of work (thousands of objects created at once, or listed after a restart) leaves the heap much
larger than what stays live: decoded watch events and API answers are short-lived, but garbage in
reference cycles waits for a full collection that a large, steady heap rarely triggers, and glibc keeps
freed pages mapped. Every `interval` seconds the whole heap is collected and, on glibc, `malloc_trim`
hands free pages back to the system, so resident memory follows what is live rather than the peak.

A burst does not wait for the next period: once resident memory has grown by `growth` bytes since the
last release, the next one comes at once. Otherwise a burst's garbage stays resident for up to a whole
period after it, and what a reader of the process's memory sees depends on when the timer last ran.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 30.0
# A release costs about 30 ms with 5,000 objects; this much growth between two is worth one.
DEFAULT_GROWTH_BYTES = 8 << 20
DEFAULT_CHECK_SECONDS = 1.0


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


def resident_bytes() -> int | None:
    """This process's resident memory, from /proc (Linux); None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


async def keep_releasing(
    interval: float = DEFAULT_INTERVAL_SECONDS,
    *,
    growth: int = DEFAULT_GROWTH_BYTES,
    check_every: float = DEFAULT_CHECK_SECONDS,
) -> None:
    """Release memory every `interval` seconds, and whenever resident memory has grown by `growth` bytes
    since the last release (checked every `check_every` seconds), until cancelled."""
    due, floor = time.monotonic() + interval, resident_bytes()
    while True:
        await asyncio.sleep(min(check_every, interval))
        if time.monotonic() >= due or _grown(floor, growth):
            took = release()
            log.debug("released memory in %.3fs", took)
            due, floor = time.monotonic() + interval, resident_bytes()


def _grown(floor: int | None, growth: int) -> bool:
    resident = resident_bytes()
    return floor is not None and resident is not None and resident - floor >= growth


_TRIM = _malloc_trim()
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
