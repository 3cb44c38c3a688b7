"""Prometheus metrics of the operator, defined once on the default registry.

Cloud calls are counted per attempt (a retried call shows each try with its own code), so the error
rate the cloud sees is visible as well as the latency. Labels never carry ids, names or credentials.
"""

from __future__ import annotations

import platform
from collections import Counter as Counter_
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from desktop_image_operator import __version__

# --- cloud calls -------------------------------------------------------------------------------------------

CLOUD_REQUESTS = Counter(
    "desktop_image_operator_cloud_requests",
    "Requests to Yandex Cloud APIs, by method (Service.Method) and result (gRPC code name or OK).",
    ["method", "code"],
)

CLOUD_REQUEST_DURATION = Histogram(
    "desktop_image_operator_cloud_request_duration_seconds",
    "Latency of requests to Yandex Cloud APIs, by method (Service.Method).",
    ["method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


def observe_cloud_request(method: str, code: str, seconds: float) -> None:
    """Record one finished request (`method` like `DesktopImageService.Copy`, `code` like `OK`)."""
    CLOUD_REQUESTS.labels(method=method, code=code).inc()
    CLOUD_REQUEST_DURATION.labels(method=method).observe(max(0.0, seconds))


# --- leader election ----------------------------------------------------------------------------------------

LEADER = Gauge(
    "desktop_image_operator_leader",
    "1 while this instance acts (it holds the leader Lease, or runs without election), 0 on a standby.",
)


def lead() -> None:
    """This instance acts from now on."""
    LEADER.set(1)


def stand_by() -> None:
    """This instance stopped acting (or never started): it exports its standby state only. The objects it
    counted belong to a term that is over, and the new leader counts them now; kept here, they would be
    stale for good and counted twice in a sum over instances."""
    LEADER.set(0)
    OBJECTS.end_term()


# --- reconciles ---------------------------------------------------------------------------------------------

RECONCILES = Counter(
    "desktop_image_operator_reconciles",
    "Reconciles of DesktopImages, by what started them (start, change, scheduled, delete) and result.",
    ["trigger", "result"],
)

RECONCILE_DURATION = Histogram(
    "desktop_image_operator_reconcile_duration_seconds",
    "Duration of one reconcile, including waits for cloud operations.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)

TIME_TO_READY = Histogram(
    "desktop_image_operator_time_to_ready_seconds",
    "From an object's creation to its first Ready=True.",
    buckets=(1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0),
)

STATUS_WRITES = Counter(
    "desktop_image_operator_status_writes",
    "Status patches the operator sent to the API server.",
)

SECRET_READS = Counter(
    "desktop_image_operator_secret_reads",
    "Reads of credentials Secrets sent to the API server; between reads a watch keeps each one current.",
)


def observe_reconcile(result: str, trigger: str, seconds: float) -> None:
    RECONCILES.labels(trigger=trigger, result=result).inc()
    RECONCILE_DURATION.observe(max(0.0, seconds))


class ObjectStates(Collector):
    """`desktop_image_operator_objects{reason}`: how many objects are in each state (their Ready reason).

    One small dict entry per object; the gauge is computed at scrape time, so reconciles pay nothing.
    Counted per term of service (see `Controller.serving`): when a term ends the gauge empties, and
    reports arriving after it (a reconcile finishing during a step-down) are ignored until the next.
    """

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}
        self._counting = True

    def start_term(self) -> None:
        self._reasons, self._counting = {}, True

    def end_term(self) -> None:
        self._reasons, self._counting = {}, False

    def set_state(self, uid: str, reason: str) -> None:
        if self._counting:
            self._reasons[uid] = reason

    def forget(self, uid: str) -> None:
        self._reasons.pop(uid, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "desktop_image_operator_objects",
            "DesktopImages known to the operator, by the reason of their Ready condition.",
            labels=["reason"],
        )
        for reason, count in sorted(Counter_(self._reasons.values()).items()):
            family.add_metric([reason], count)
        yield family


OBJECTS = ObjectStates()
REGISTRY.register(OBJECTS)


# --- what runs, and the objects' Synced condition -----------------------------------------------------------

BUILD_INFO = Gauge(
    "desktop_image_operator_build_info",
    "Always 1; its labels say which operator version runs, on which Python.",
    ["version", "python_version"],
)
BUILD_INFO.labels(version=__version__, python_version=platform.python_version()).set(1)

SYNCED_STATUSES = ("True", "False", "Unknown")


class ObjectsSynced(Collector):
    """`desktop_image_operator_objects_synced{status}`: objects by the status of their Synced condition.

    Only objects the objects-by-reason gauge still counts are counted, so whatever empties that gauge (a
    deletion, a standby's reset) empties this one too; entries it no longer counts are dropped at scrape.
    Every status is reported, zeros included, so a panel or an alert never meets a missing series.
    """

    def __init__(self, objects: ObjectStates) -> None:
        self._objects = objects
        self._statuses: dict[str, str] = {}

    def set_state(self, uid: str, status: str) -> None:
        self._statuses[uid] = status if status in SYNCED_STATUSES else "Unknown"

    def forget(self, uid: str) -> None:
        self._statuses.pop(uid, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # Scrapes run on the metrics server's thread while reconciles change the dicts: copy before reading.
        entries, known = list(self._statuses.items()), self._objects._reasons
        counts = Counter_(status for uid, status in entries if uid in known)
        for uid, _ in entries:
            if uid not in known:
                self._statuses.pop(uid, None)
        family = GaugeMetricFamily(
            "desktop_image_operator_objects_synced",
            "DesktopImages known to the operator, by the status of their Synced condition.",
            labels=["status"],
        )
        for status in SYNCED_STATUSES:
            family.add_metric([status], counts.get(status, 0))
        yield family


OBJECTS_SYNCED = ObjectsSynced(OBJECTS)
REGISTRY.register(OBJECTS_SYNCED)
