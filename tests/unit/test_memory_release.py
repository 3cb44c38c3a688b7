"""Memory freed after a burst goes back: cycles are collected and, on glibc, free heap pages trimmed."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import platform
import sys
import weakref
from collections.abc import Iterator

import pytest

from desktop_image_operator.observability import memory


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@contextlib.contextmanager
def no_automatic_collection() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def garbage_cycle() -> weakref.ref[Node]:
    """Two objects that only reference each other: freed by a collection, never by reference counts."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


def test_a_release_frees_garbage_held_in_reference_cycles() -> None:
    with no_automatic_collection():
        cycle = garbage_cycle()
        assert cycle() is not None
        took = memory.release()
    assert cycle() is None
    assert took >= 0.0


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_on_glibc_free_heap_pages_are_handed_back() -> None:
    assert memory._TRIM is not None


async def test_the_release_loop_frees_cycles_without_being_asked() -> None:
    with no_automatic_collection():
        task = asyncio.create_task(memory.keep_releasing(interval=0.01))
        try:
            cycle = garbage_cycle()
            for _ in range(200):  # at most 2 s
                if cycle() is None:
                    break
                await asyncio.sleep(0.01)
            assert cycle() is None
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def cycle_freed_within(seconds: float, *, growth: int) -> bool:
    """Whether the release loop (an hour's period, checks every 10 ms) collects a garbage cycle within
    `seconds` while resident memory grows by 48 MB."""
    with no_automatic_collection():
        task = asyncio.create_task(memory.keep_releasing(3600, growth=growth, check_every=0.01))
        try:
            await asyncio.sleep(0.05)  # the loop has started and read where resident memory stands
            cycle = garbage_cycle()
            ballast = bytearray(48 << 20)  # zero-filled, so resident at once
            for _ in range(int(seconds / 0.01)):
                if cycle() is None:
                    break
                await asyncio.sleep(0.01)
            del ballast
            return cycle() is None
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.skipif(memory.resident_bytes() is None, reason="needs /proc")
async def test_resident_memory_grown_by_a_step_brings_the_next_release_forward() -> None:
    assert await cycle_freed_within(2.0, growth=16 << 20)


@pytest.mark.skipif(memory.resident_bytes() is None, reason="needs /proc")
async def test_growth_below_the_step_waits_for_the_period() -> None:
    assert not await cycle_freed_within(0.3, growth=1 << 30)
