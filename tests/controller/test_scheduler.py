"""The scheduler: one timer for every object, a bounded number of reconciles at once, none twice at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from desktop_image_operator.controller.scheduler import Scheduler

Job = Callable[[str], Awaitable[float | None]]


@contextlib.asynccontextmanager
async def serving(job: Job, *, workers: int = 4) -> AsyncIterator[Scheduler]:
    scheduler = Scheduler(job, workers=workers)
    task = asyncio.create_task(scheduler.serve())
    try:
        yield scheduler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Recorder:
    """A job that records each run and asks for the next one after `again` seconds (None: never)."""

    def __init__(self, again: float | None = None, hold: float = 0.0) -> None:
        self.runs: list[str] = []
        self.finished: list[str] = []
        self.again = again
        self.hold = hold
        self.running: set[str] = set()
        self.overlaps = 0
        self.most_at_once = 0

    async def __call__(self, key: str) -> float | None:
        if key in self.running:
            self.overlaps += 1
        self.running.add(key)
        self.most_at_once = max(self.most_at_once, len(self.running))
        try:
            self.runs.append(key)
            await asyncio.sleep(self.hold)
            self.finished.append(key)
            return self.again
        finally:
            self.running.discard(key)


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    step = 0.005
    for _ in range(int(seconds / step)):
        if condition():
            return
        await asyncio.sleep(step)
    raise AssertionError("the condition did not come true in time")


async def test_keys_run_in_the_order_they_fall_due() -> None:
    job = Recorder()
    async with serving(job) as scheduler:
        scheduler.schedule("late", 0.15)
        scheduler.schedule("soon", 0.05)
        scheduler.schedule("now", 0.0)
        await until(lambda: len(job.runs) == 3)
    assert job.runs == ["now", "soon", "late"]


async def test_scheduling_a_key_again_replaces_its_due_time() -> None:
    job = Recorder()
    async with serving(job) as scheduler:
        scheduler.schedule("object", 0.05)
        scheduler.schedule("object", 30.0)
        await asyncio.sleep(0.2)
        assert job.runs == []
        assert 29.0 < (scheduler.due_in("object") or 0.0) <= 30.0
        scheduler.schedule("object", 0.0)
        await until(lambda: job.runs == ["object"])


async def test_a_run_chooses_when_its_key_runs_next() -> None:
    job = Recorder(again=0.02)
    async with serving(job) as scheduler:
        scheduler.schedule("object", 0.0)
        await until(lambda: len(job.runs) >= 3)
    assert set(job.runs) == {"object"}


async def test_a_key_asked_for_while_it_runs_runs_once_more_right_after_never_alongside() -> None:
    job = Recorder(again=60.0, hold=0.1)
    async with serving(job) as scheduler:
        scheduler.schedule("object", 0.0)
        await until(lambda: "object" in job.running)
        for _ in range(5):
            scheduler.schedule("object", 0.0)  # a change seen mid-run
        await until(lambda: len(job.runs) == 2)
        await asyncio.sleep(0.15)
        assert len(job.runs) == 2  # the five asks made one more run, not five
        assert job.overlaps == 0
        assert (scheduler.due_in("object") or 0.0) > 50.0  # then the run's own choice holds


async def test_a_key_cancelled_while_it_runs_is_not_run_again() -> None:
    job = Recorder(again=0.0, hold=0.05)
    async with serving(job) as scheduler:
        scheduler.schedule("object", 0.0)
        await until(lambda: "object" in job.running)
        scheduler.cancel("object")
        await asyncio.sleep(0.2)
        assert job.runs == ["object"]
        assert scheduler.due_in("object") is None
        assert len(scheduler) == 0


async def test_no_more_runs_than_workers_go_at_once() -> None:
    job = Recorder(hold=0.05)
    async with serving(job, workers=3) as scheduler:
        for n in range(12):
            scheduler.schedule(f"object-{n}", 0.0)
        await until(lambda: len(job.runs) == 12 and not job.running)
    assert job.most_at_once == 3


async def test_a_run_that_crashes_is_tried_again_rather_than_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("desktop_image_operator.controller.scheduler._AFTER_CRASH_SECONDS", 0.05)
    attempts: list[str] = []

    async def crashes_once(key: str) -> float | None:
        attempts.append(key)
        if len(attempts) == 1:
            raise RuntimeError("a bug")
        return None

    async with serving(crashes_once) as scheduler:
        scheduler.schedule("object", 0.0)
        await until(lambda: len(attempts) == 2)


async def test_stopping_the_scheduler_lets_a_run_finish_its_step() -> None:
    job = Recorder(hold=0.1)
    async with serving(job) as scheduler:
        scheduler.schedule("object", 0.0)
        await until(lambda: "object" in job.running)
    assert job.finished == ["object"]  # not cancelled: it ended inside the stop's grace period
