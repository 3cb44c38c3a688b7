"""Prometheus metrics of the operator, defined once on the default registry.

Cloud calls are counted per attempt (a retried call shows each try with its own code), so the error
rate the cloud sees is visible as well as the latency. Labels never carry ids, names or credentials.
"""

from __future__ import annotations

from collections import Counter as Counter_
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
    """

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}

    def set_state(self, uid: str, reason: str) -> None:
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
