"""An object's own resync period: the resync-seconds annotation, within the operator's floor.

Config Connector users ask for it most: a golden image checked hourly, a volatile one every minute. The
floor keeps any object from turning the drift check into a loop of cloud reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.reconciler import RESYNC_SECONDS


@dataclass(frozen=True)
class Resync:
    seconds: float
    # Why the annotation was not taken as written (None: it was, or there is none).
    problem: str | None = None


def resync_of(body: Mapping[str, Any], settings: RunSettings) -> Resync:
    """The object's resync period, and what was wrong with its annotation, if anything."""
    written = ((body.get("metadata") or {}).get("annotations") or {}).get(RESYNC_SECONDS)
    if written is None:
        return Resync(settings.resync_seconds)
    try:
        asked = float(written)
    except ValueError:
        asked = float("nan")
    if not asked > 0:  # also NaN
        problem = f"{RESYNC_SECONDS}: {written!r} is not a number of seconds; the default period applies."
        return Resync(settings.resync_seconds, problem)
    if asked < settings.min_resync_seconds:
        floor = settings.min_resync_seconds
        problem = (
            f"{RESYNC_SECONDS}: {written} is below the operator's floor of {floor:g} s; {floor:g} s applies."
        )
        return Resync(floor, problem)
    return Resync(asked)
