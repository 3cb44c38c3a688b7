"""The measured scenarios: one object (apply -> Ready, delete -> gone), many objects, idle and steady state.

Each step is bracketed by a `Window`: the audit log's byte offset and the fake cloud's request-log sequence
number before it, so the calls and the operator's writes of exactly that step can be read afterwards.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from kubernetes import client

from benchmarks import audit, manifests
from benchmarks.options import Options
from benchmarks.stack import FakeCloud, Operator
from desktop_image_operator.api import GROUP, PLURAL, VERSION
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator_dev.devenv.stack import Kubectl, WaitTimeout, wait_until

TOKEN_METHODS = ("IamTokenService.", "Metadata.")


@dataclass
class Bench:
    """Everything a scenario needs: the running control plane, the fake cloud, and how to observe both."""

    options: Options
    workdir: Path
    kubeconfig: Path
    kubectl: Kubectl
    audit_log: audit.AuditLog
    cloud: FakeCloud
    api: client.ApiClient
    operator_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    # The operator's interpreter: this one, or the image's runtime environment's (what ships).
    python: str | Path = sys.executable

    def window(self) -> Window:
        return Window(self, self.audit_log.mark(), self.cloud.mark(), time.time())

    def namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        return name

    @contextmanager
    def operator(
        self, label: str, *, namespace: str, transport: str = "rest", **settings: str
    ) -> Iterator[Operator]:
        process = Operator(
            self.workdir,
            label,
            kubeconfig=self.kubeconfig,
            cloud=self.cloud,
            namespace=namespace,
            transport=transport,
            settings=settings,
            python=self.python,
        )
        self.operator_settings[label] = dict(process.settings)
        try:
            yield process
        finally:
            process.stop()

    def list_objects(self, namespace: str) -> list[dict[str, Any]]:
        """The DesktopImages of a namespace, read through the API (reads are not audited)."""
        custom = client.CustomObjectsApi(self.api)
        found = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _request_timeout=60)
        return cast(list[dict[str, Any]], found["items"])  # type: ignore[index]


@dataclass
class Window:
    bench: Bench
    audit_mark: int
    cloud_seq: int
    started: float

    def calls(self) -> dict[str, Any]:
        return tally_calls(self.bench.cloud.calls_since(self.cloud_seq))

    def writes(self, namespace: str, *, split_at: float | None = None) -> dict[str, Any]:
        return audit.tally(
            self.bench.audit_log.writes(self.audit_mark), namespace=namespace, split_at=split_at
        )


def tally_calls(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Cloud calls by method; token calls (IAM exchange, metadata) counted apart from the per-image ones."""
    tokens = [e for e in entries if e["method"].startswith(TOKEN_METHODS)]
    calls = [e for e in entries if not e["method"].startswith(TOKEN_METHODS)]
    return {
        "total": len(calls),
        "byMethod": dict(sorted(Counter(e["method"] for e in calls).items())),
        "tokenCalls": len(tokens),
        "tokenCallsByMethod": dict(sorted(Counter(e["method"] for e in tokens).items())),
        "byTransport": dict(sorted(Counter(e["transport"] for e in entries).items())),
        "failed": dict(
            sorted(Counter(f"{e['method']} {e['code']}" for e in entries if e["code"] != "OK").items())
        ),
    }


# -- one object -------------------------------------------------------------------------------------------


def single_object(bench: Bench, transport: str) -> dict[str, Any]:
    """A warm-up object, then `repetitions` fresh objects one at a time: apply -> Ready, delete -> gone."""
    options = bench.options
    namespace = bench.namespace(f"bench-one-{transport}")
    bench.cloud.config(copySeconds=options.single_copy_seconds)
    with bench.operator(f"one-{transport}", namespace=namespace, transport=transport) as operator:
        time.sleep(options.settle_seconds)  # kopf lists and starts watching the namespace
        # The first object after start also pays for the IAM token exchange and cold connections.
        warm_up = _apply_to_ready(bench, namespace, f"one-{transport}-warm-up")
        warm_up_delete = _delete_to_gone(bench, namespace, f"one-{transport}-warm-up")
        runs: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        for index in range(1, options.repetitions + 1):
            name = f"one-{transport}-{index:02d}"
            runs.append(_apply_to_ready(bench, namespace, name))
            deletes.append(_delete_to_gone(bench, namespace, name))
            operator.check()
        memory = operator.memory()
    return {
        "transport": transport,
        "source": "desktopId",
        "copySeconds": options.single_copy_seconds,
        "operationSeconds": options.operation_seconds,
        "repetitions": options.repetitions,
        "operatorMemoryAtEnd": memory,
        "warmUp": {"apply": warm_up, "delete": warm_up_delete},
        "apply": {"summary": summarize(runs, "applyToReadySeconds"), "runs": runs},
        "delete": {"summary": summarize(deletes, "deleteToGoneSeconds"), "runs": deletes},
    }


def _apply_to_ready(bench: Bench, namespace: str, name: str) -> dict[str, Any]:
    options = bench.options
    timeout = options.single_timeout
    window = bench.window()
    bench.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(manifests.from_desktop(name)))
    applied = time.monotonic()
    bench.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"--timeout={timeout:.0f}s", f"desktopimage/{name}",
        timeout=timeout + 15,
    )  # fmt: skip
    elapsed = time.monotonic() - applied
    ready_at = time.time()
    time.sleep(options.settle_seconds)  # writes and events that trail Ready are counted (and shown apart)
    return {
        "name": name,
        "applyToReadySeconds": round(elapsed, 3),
        "overheadSeconds": round(elapsed - options.single_copy_seconds, 3),
        "cloudCalls": window.calls(),
        "apiWrites": window.writes(namespace, split_at=ready_at),
    }


def _delete_to_gone(bench: Bench, namespace: str, name: str) -> dict[str, Any]:
    options = bench.options
    timeout = options.single_timeout
    images_before = bench.cloud.image_count()
    window = bench.window()
    started = time.monotonic()
    bench.kubectl(
        "delete", "-n", namespace, f"desktopimage/{name}", "--wait=true", f"--timeout={timeout:.0f}s",
        timeout=timeout + 15,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    gone_at = time.time()
    time.sleep(options.settle_seconds)
    return {
        "name": name,
        "deleteToGoneSeconds": round(elapsed, 3),
        "cloudImagesRemoved": images_before - bench.cloud.image_count(),
        "cloudCalls": window.calls(),
        "apiWrites": window.writes(namespace, split_at=gone_at),
    }


def summarize(runs: list[dict[str, Any]], seconds_key: str) -> dict[str, Any]:
    """Median and max over the runs of the time, the calls and the writes (a missing kind counts as 0)."""

    def stat(values: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}

    def per_kind(get: Callable[[dict[str, Any]], dict[str, int]]) -> dict[str, dict[str, float]]:
        kinds = sorted({kind for run in runs for kind in get(run)})
        return {kind: stat([get(run).get(kind, 0) for run in runs]) for kind in kinds}

    summary: dict[str, Any] = {
        seconds_key: stat([run[seconds_key] for run in runs]),
        "cloudCallsTotal": stat([run["cloudCalls"]["total"] for run in runs]),
        "cloudCalls": per_kind(lambda run: run["cloudCalls"]["byMethod"]),
        "tokenCalls": stat([run["cloudCalls"]["tokenCalls"] for run in runs]),
        "apiWritesTotal": stat([run["apiWrites"]["total"] for run in runs]),
        "apiWrites": per_kind(lambda run: run["apiWrites"]["byKind"]),
        "eventsTotal": stat([run["apiWrites"]["events"] for run in runs]),
        "events": per_kind(lambda run: run["apiWrites"]["eventsByKind"]),
        "writesAfterEnd": per_kind(lambda run: run["apiWrites"].get("afterReady", {})),
        "failedCalls": per_kind(lambda run: run["cloudCalls"]["failed"]),
        "failedWrites": per_kind(lambda run: run["apiWrites"]["failed"]),
        "failedWriteMessages": sorted({m for run in runs for m in run["apiWrites"]["failedMessages"]}),
    }
    if "overheadSeconds" in runs[0]:
        summary["overheadSeconds"] = stat([run["overheadSeconds"] for run in runs])
    return summary


# -- many objects -----------------------------------------------------------------------------------------


def many_objects(bench: Bench) -> dict[str, Any]:
    """Create N objects, wait until all are Ready, stay idle; then restart with a short resync and observe."""
    options = bench.options
    count = options.objects
    namespace = bench.namespace("bench-scale")
    bench.cloud.config(copySeconds=options.scale_copy_seconds)
    limits = {
        "REQUESTS_PER_SECOND": f"{options.requests_per_second:g}",
        "MAX_CONCURRENCY": str(options.max_concurrency),
    }
    result: dict[str, Any] = {"objects": count, "copySeconds": options.scale_copy_seconds}
    with bench.operator("scale", namespace=namespace, **limits) as operator:
        time.sleep(options.settle_seconds)
        memory_before, cpu_before = operator.memory(), operator.cpu_seconds()
        result["create"] = _create_all(bench, operator, namespace, count)
        result["create"]["operatorCpuSecondsBefore"] = cpu_before
        result["memory"] = {"beforeObjects": memory_before, "allReady": result["create"].pop("memory")}

        window = bench.window()
        time.sleep(options.idle_seconds)
        result["idle"] = {
            "seconds": options.idle_seconds,
            "cloudCalls": window.calls(),
            "apiWrites": window.writes(namespace),
            "operatorCpuSeconds": round(operator.cpu_seconds() - result["create"]["operatorCpuSeconds"], 2),
        }
        result["memory"]["afterIdle"] = operator.memory()

    resync = f"{options.resync_seconds:g}"
    window = bench.window()
    started = time.monotonic()
    with bench.operator("steady", namespace=namespace, RESYNC_SECONDS=resync, **limits) as operator:
        resumed, last_call = _wait_quiet(bench, window.cloud_seq, minimum=count, quiet=options.quiet_seconds)
        result["restart"] = {
            "startToLastCallSeconds": round(last_call - started, 2),
            "cloudCalls": window.calls(),
            "apiWrites": window.writes(namespace),
            "quietReached": resumed,
        }
        result["steadyState"] = _steady_state(bench, operator, namespace, count)
    return result


def _create_all(bench: Bench, operator: Operator, namespace: str, count: int) -> dict[str, Any]:
    options = bench.options
    names = [f"bench-{index:04d}" for index in range(count)]
    window = bench.window()
    started = time.monotonic()
    progress: list[tuple[float, int]] = []

    def all_ready() -> list[dict[str, Any]] | None:
        operator.check()
        items = bench.list_objects(namespace)
        ready = sum(1 for item in items if manifests.is_ready(item))
        progress.append((round(time.monotonic() - started, 1), ready))
        return items if ready == count else None

    for first in range(0, count, options.batch_size):
        batch = [manifests.from_compute_image(name) for name in names[first : first + options.batch_size]]
        bench.kubectl("apply", "-n", namespace, "-f", "-", stdin=manifests.as_list(batch), timeout=300)
        all_ready()  # a progress sample per batch
    applied = time.monotonic() - started

    items = wait_until(
        all_ready,
        timeout=options.ready_timeout,
        interval=options.poll_seconds,
        what=f"{count} DesktopImages Ready (last count: {progress[-1][1] if progress else 0})",
    )
    elapsed = time.monotonic() - started
    memory, cpu = operator.memory(), operator.cpu_seconds()
    time.sleep(options.settle_seconds)
    calls = window.calls()
    writes = window.writes(namespace)
    latencies = sorted(_ready_latency(item) for item in items)
    return {
        "applySeconds": round(applied, 2),
        "allReadySeconds": round(elapsed, 2),
        "allReadySecondsByConditions": _span_by_conditions(items, window.started),
        "objectsPerSecond": round(count / elapsed, 2),
        "perObjectCreateToReadySeconds": {
            "p50": _percentile(latencies, 0.5),
            "p95": _percentile(latencies, 0.95),
            "max": latencies[-1],
            "resolutionSeconds": 1,  # metav1.Time has whole seconds
        },
        "progress": _thin(progress, 40),
        "pollSeconds": options.poll_seconds,
        "cloudCalls": calls,
        "cloudCallsPerObject": _per_object(calls["byMethod"], calls["total"], count),
        "cloudImages": bench.cloud.image_count(),
        "apiWrites": writes,
        "apiWritesPerObject": _per_object(writes["byKind"], writes["total"], count),
        "eventsPerObject": round(writes["events"] / count, 2),
        "memory": memory,
        "operatorCpuSeconds": cpu,
    }


def _steady_state(bench: Bench, operator: Operator, namespace: str, count: int) -> dict[str, Any]:
    options = bench.options
    window = bench.window()
    time.sleep(options.observe_seconds)
    calls = window.calls()
    writes = window.writes(namespace)
    ready = sum(1 for item in bench.list_objects(namespace) if manifests.is_ready(item))
    minutes = options.observe_seconds / 60
    gets = calls["byMethod"].get("DesktopImageService.Get", 0)
    return {
        "resyncSeconds": options.resync_seconds,
        "resyncJitter": RunSettings.model_fields["resync_jitter"].default,
        "observeSeconds": options.observe_seconds,
        "objects": count,
        "readyAtEnd": ready,
        "cloudCalls": calls,
        "callsPerMinute": {method: round(n / minutes, 1) for method, n in calls["byMethod"].items()},
        "getsPerSecond": round(gets / options.observe_seconds, 2),
        "expectedGetsPerSecond": round(count / options.resync_seconds, 2),
        "otherCalls": calls["total"] - gets,
        "apiWrites": writes,
        "memory": operator.memory(),
    }


def _wait_quiet(bench: Bench, since: int, *, minimum: int, quiet: float) -> tuple[bool, float]:
    """Wait until the restarted operator has made `minimum` cloud calls and then none for `quiet` seconds.

    Returns whether that happened in time (else the steady-state window starts anyway) and when (monotonic
    clock, to the poll's precision) the last call of the burst was seen."""
    seq, count, changed = since, 0, time.monotonic()

    def settled() -> bool:
        nonlocal seq, count, changed
        new = bench.cloud.calls_since(seq)
        now = time.monotonic()
        if new:
            seq = max(int(entry["seq"]) for entry in new)
            count += len(new)
            changed = now
        return count >= minimum and now - changed >= quiet

    try:
        wait_until(settled, timeout=max(120.0, minimum / 10), interval=0.5, what="the resume of all objects")
    except WaitTimeout:
        return False, changed
    return True, changed


def _ready_latency(item: dict[str, Any]) -> float:
    created = _timestamp(item["metadata"]["creationTimestamp"])
    ready = next(c for c in item["status"]["conditions"] if c["type"] == "Ready")
    return _timestamp(ready["lastTransitionTime"]) - created


def _span_by_conditions(items: list[dict[str, Any]], started: float) -> float:
    """From the first apply to the latest Ready transition, by the API's own (second-resolution) stamps."""
    last = max(
        _timestamp(c["lastTransitionTime"])
        for item in items
        for c in item["status"]["conditions"]
        if c["type"] == "Ready"
    )
    return round(last - started, 1)


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _percentile(values: list[float], fraction: float) -> float:
    index = min(len(values) - 1, max(0, round(fraction * (len(values) - 1))))
    return values[index]


def _per_object(by_kind: dict[str, int], total: int, count: int) -> dict[str, float]:
    figures = {kind: round(n / count, 2) for kind, n in by_kind.items()}
    figures["total"] = round(total / count, 2)
    return figures


def _thin(points: list[tuple[float, int]], keep: int) -> list[list[float]]:
    """At most `keep` (seconds, ready) samples, always with the last."""
    step = max(1, len(points) // keep)
    chosen = points[::step]
    if chosen[-1] != points[-1]:
        chosen.append(points[-1])
    return [[seconds, ready] for seconds, ready in chosen]
