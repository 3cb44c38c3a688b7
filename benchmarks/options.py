"""What a benchmark run does: sizes, durations, limits. `--quick` shrinks everything for a smoke test."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Options:
    objects: int = 1000
    out: Path = Path("reports")
    quick: bool = False
    # One object at a time (desktop source), fresh object each repetition, after one warm-up object.
    repetitions: int = 5
    single_copy_seconds: float = 3.0
    single_timeout: float = 120.0
    # The fake's Update and Delete operations.
    operation_seconds: float = 0.5
    # Many objects (Compute image source), applied with kubectl in batches.
    scale_copy_seconds: float = 1.0
    batch_size: int = 100
    requests_per_second: float = 200.0
    max_concurrency: int = 32
    ready_timeout: float = 900.0
    poll_seconds: float = 2.0
    idle_seconds: float = 60.0
    # Steady state after a restart with a short resync period.
    resync_seconds: float = 30.0
    observe_seconds: float = 60.0
    quiet_seconds: float = 3.0
    # Pause after a step before its calls and writes are read, so trailing ones are counted.
    settle_seconds: float = 1.0
    grpc: bool = True
    keep_workdir: bool = False

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["out"] = str(self.out)
        return values


QUICK = {
    "objects": 5,
    "repetitions": 1,
    "single_copy_seconds": 1.0,
    "single_timeout": 60.0,
    "batch_size": 100,
    "ready_timeout": 120.0,
    "poll_seconds": 0.5,
    "idle_seconds": 3.0,
    "resync_seconds": 4.0,
    "observe_seconds": 8.0,
    "quiet_seconds": 1.0,
    "settle_seconds": 0.5,
}
