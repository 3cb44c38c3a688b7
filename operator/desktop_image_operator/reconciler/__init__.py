"""Deciding what a DesktopImage needs and doing it through the cloud client, independent of kopf.

Two faces: this package (the reconciler, the object as it reads it, and what it answers) and
`reconciler.reasons`, the one table of reasons with their kinds. Inside, the layers run from the
reconciler down: `act`; then `decide`, `observe` and the run's working state; then the values they
share. `decide` is a pure function of plain values (see `.importlinter`).
"""

from desktop_image_operator.reconciler.access import Access
from desktop_image_operator.reconciler.annotations import (
    CREDENTIALS_FINALIZER,
    FINALIZER,
    PREFIX,
    RESYNC_SECONDS,
)
from desktop_image_operator.reconciler.failures import Failure
from desktop_image_operator.reconciler.outcome import Events, Outcome, Result, StatusWriter
from desktop_image_operator.reconciler.ownership import Owner, Owners, cluster_label
from desktop_image_operator.reconciler.reconciler import Reconciler
from desktop_image_operator.reconciler.resource import InvalidObject, Policies, Resource
from desktop_image_operator.reconciler.timing import Timing

__all__ = [
    "CREDENTIALS_FINALIZER",
    "FINALIZER",
    "PREFIX",
    "RESYNC_SECONDS",
    "Access",
    "Events",
    "Failure",
    "InvalidObject",
    "Outcome",
    "Owner",
    "Owners",
    "Policies",
    "Reconciler",
    "Resource",
    "Result",
    "StatusWriter",
    "Timing",
    "cluster_label",
]
