"""The metrics added for operations: build information, and objects by their Synced condition."""

from __future__ import annotations

import platform

from prometheus_client import REGISTRY, CollectorRegistry

from desktop_image_operator import __version__
from desktop_image_operator.observability import metrics


def _synced_counts(registry: CollectorRegistry) -> dict[str, float]:
    return {
        sample.labels["status"]: sample.value
        for family in registry.collect()
        if family.name == "desktop_image_operator_objects_synced"
        for sample in family.samples
    }


def _fresh() -> tuple[metrics.ObjectStates, metrics.ObjectsSynced, CollectorRegistry]:
    objects = metrics.ObjectStates()
    synced = metrics.ObjectsSynced(objects)
    registry = CollectorRegistry()
    registry.register(synced)
    return objects, synced, registry


def test_build_info_names_the_version_and_the_python_it_runs_on() -> None:
    value = REGISTRY.get_sample_value(
        "desktop_image_operator_build_info",
        {"version": __version__, "python_version": platform.python_version()},
    )
    assert value == 1


def test_objects_are_counted_by_their_synced_status_with_zeros_reported() -> None:
    objects, synced, registry = _fresh()
    assert _synced_counts(registry) == {"True": 0, "False": 0, "Unknown": 0}
    for uid, reason, status in [("a", "Available", "True"), ("b", "CopyFailed", "False"), ("c", "X", "True")]:
        objects.set_state(uid, reason)
        synced.set_state(uid, status)
    assert _synced_counts(registry) == {"True": 2, "False": 1, "Unknown": 0}
    synced.set_state("c", "False")  # a later reconcile of the same object replaces its status
    assert _synced_counts(registry) == {"True": 1, "False": 2, "Unknown": 0}


def test_an_object_without_a_synced_condition_counts_as_unknown() -> None:
    objects, synced, registry = _fresh()
    objects.set_state("a", "InvalidSpec")
    synced.set_state("a", "Unknown")
    objects.set_state("b", "Available")
    synced.set_state("b", "something odd")
    assert _synced_counts(registry) == {"True": 0, "False": 0, "Unknown": 2}


def test_objects_the_reason_gauge_no_longer_counts_leave_the_synced_gauge_too() -> None:
    objects, synced, registry = _fresh()
    for uid in ("a", "b"):
        objects.set_state(uid, "Available")
        synced.set_state(uid, "True")
    objects.forget("a")  # deleted: only the reason gauge was told
    assert _synced_counts(registry) == {"True": 1, "False": 0, "Unknown": 0}
    objects.set_state("a", "Copying")  # the same uid again must not bring back its old status
    assert _synced_counts(registry) == {"True": 1, "False": 0, "Unknown": 0}
    synced.forget("b")
    assert _synced_counts(registry) == {"True": 0, "False": 0, "Unknown": 0}
