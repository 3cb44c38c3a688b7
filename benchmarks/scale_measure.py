"""The measurements of the scale benchmark: creating and waiting, polls, writes, rates and memory.

Times of writes come from the audit log (microseconds, the API server's clock), times of cloud calls from
the fake's request log (same machine, same clock); Ready is observed by listing the objects.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from benchmarks import audit, manifests
from benchmarks.scenarios import Bench, tally_calls
from benchmarks.stack import Operator
from desktop_image_operator_dev.devenv.stack import wait_until

if TYPE_CHECKING:
    from benchmarks.scale import ScaleOptions

COPY_METHODS = frozenset({"DesktopImageService.Copy", "DesktopImageService.CopyFromDesktop"})
POLL_METHOD = "OperationService.Get"
GET_METHOD = "DesktopImageService.Get"
CREATE_CHUNK = 1000  # objects per `kubectl create` (one request per object, no read before)
# Annotations a framework leaves for its own bookkeeping (kopf's diff base and progress).
FRAMEWORK_ANNOTATION_MARKERS = ("kopf.zalando.org", "last-handled-configuration")
STATUS = "desktopimages/status"


def say(message: str) -> None:
    """Progress on standard error, so a long run shows where it is."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def wall(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# -- creating and waiting -----------------------------------------------------------------------------------


def create(bench: Bench, namespace: str, names: list[str]) -> None:
    for first in range(0, len(names), CREATE_CHUNK):
        batch = [manifests.from_compute_image(name) for name in names[first : first + CREATE_CHUNK]]
        bench.kubectl("create", "-n", namespace, "-f", "-", stdin=manifests.as_list(batch), timeout=600)


def ready_count(bench: Bench, namespace: str, names: set[str]) -> int:
    items = bench.list_objects(namespace)
    return sum(1 for item in items if item["metadata"]["name"] in names and manifests.is_ready(item))


def wait_ready(
    bench: Bench, namespace: str, names: list[str], *, timeout: float, interval: float = 0.5
) -> None:
    wanted = set(names)
    wait_until(
        lambda: ready_count(bench, namespace, wanted) == len(wanted),
        timeout=timeout,
        interval=interval,
        what=f"{len(wanted)} DesktopImages Ready in {namespace}",
    )


def create_and_wait(
    bench: Bench,
    operator: Operator,
    namespace: str,
    names: list[str],
    interval: float,
    options: ScaleOptions,
) -> dict[str, Any]:
    """Create the objects, wait until all are Ready: times, calls, writes and memory of exactly that."""
    window = bench.window()
    cpu_before = operator.cpu_seconds()
    started_wall, started = time.time(), time.monotonic()
    create(bench, namespace, names)
    created = time.monotonic() - started

    said = [0.0]

    def all_ready() -> bool:
        operator.check()
        ready = ready_count(bench, namespace, set(names))
        if time.monotonic() - said[0] >= 15:
            say(f"{namespace}: {ready} of {len(names)} Ready")
            said[0] = time.monotonic()
        return ready == len(names)

    wait_until(all_ready, timeout=options.ready_timeout, interval=interval, what=f"{len(names)} Ready")
    observed = time.monotonic() - started
    memory, cpu = operator.memory(), operator.cpu_seconds() - cpu_before
    time.sleep(options.settle_seconds)  # writes that trail Ready are counted
    writes = bench.audit_log.writes(window.audit_mark)
    entries = bench.cloud.calls_since(window.cloud_seq)
    calls = tally_calls(entries)
    last_status = _last_status_write(writes, namespace, set(names))
    return {
        "objects": len(names),
        "createSeconds": round(created, 2),
        "allReadySeconds": round(last_status - started_wall, 2) if last_status else round(observed, 2),
        "allReadyObservedSeconds": round(observed, 2),
        "listIntervalSeconds": interval,
        "cloudCalls": calls,
        "cloudCallsPerObject": per_object(calls["byMethod"], calls["total"], len(names)),
        **polls_per_copy(entries),
        "writes": writes_per_object(writes, namespace, names),
        "timeline": timeline(bench, writes, entries, namespace, names),
        "memory": memory,
        "operatorCpuSeconds": round(cpu, 2),
    }


def _last_status_write(writes: list[audit.Write], namespace: str, names: set[str]) -> float | None:
    times = [
        w.time
        for w in writes
        if w.by_operator and w.namespace == namespace and w.name in names and w.resource == STATUS
    ]
    return max(times) if times else None


def timeline(
    bench: Bench,
    writes: list[audit.Write],
    entries: list[dict[str, Any]],
    namespace: str,
    names: list[str],
) -> dict[str, dict[str, float]]:
    """Where each object's time goes, median and max over the objects, in seconds: creation (kubectl)
    -> the operator's first write (finalizer) -> Copy call -> first status write (operation record);
    Copy -> the poll that saw it done; that poll -> the last status write (Ready)."""
    wanted = set(names)
    events: dict[str, dict[str, float]] = defaultdict(dict)
    for w in writes:
        if w.namespace != namespace or w.name not in wanted or w.is_event:
            continue
        moments = events[w.name]
        if w.client == "kubectl" and w.verb == "create":
            moments["created"] = w.time
        elif w.by_operator:
            moments.setdefault("firstWrite", w.time)
            if w.resource == STATUS:
                moments.setdefault("firstStatus", w.time)
                moments["ready"] = w.time
    by_operation: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        if entry["operationId"]:
            by_operation[entry["operationId"]].append(entry)
    for name, operation in _copy_operations(bench, wanted).items():
        calls = by_operation.get(operation, [])
        copied = [wall(e["time"]) for e in calls if e["method"] in COPY_METHODS]
        polled = [wall(e["time"]) for e in calls if e["method"] == POLL_METHOD]
        if copied:
            events[name]["copy"] = copied[0]
            events[name]["lastPoll"] = max(polled, default=copied[0])
    stages = {
        "createdToFirstWrite": ("created", "firstWrite"),
        "firstWriteToCopy": ("firstWrite", "copy"),
        "copyToRecord": ("copy", "firstStatus"),
        "copyToDonePoll": ("copy", "lastPoll"),
        "donePollToReady": ("lastPoll", "ready"),
        "createdToReady": ("created", "ready"),
    }
    result: dict[str, dict[str, float]] = {}
    for stage, (start, end) in stages.items():
        spans = [m[end] - m[start] for m in events.values() if start in m and end in m]
        if spans:
            result[stage] = {"median": round(statistics.median(spans), 3), "max": round(max(spans), 3)}
    return result


def _copy_operations(bench: Bench, names: set[str]) -> dict[str, str]:
    """Object name -> its copy's operation ID, through the image's ownership labels."""
    owner: dict[str, str] = {}
    for image in bench.cloud.images():
        named = names.intersection((image.get("labels") or {}).values())
        if named:
            owner[image["id"]] = named.pop()
    operations = bench.cloud.http.get("/operations").raise_for_status().json()["operations"]
    found: dict[str, str] = {}
    for operation in operations:
        image_id = str((operation.get("metadata") or {}).get("imageId"))
        if image_id in owner:
            found[owner[image_id]] = operation["id"]
    return found


def per_object(by_kind: dict[str, int], total: int, count: int) -> dict[str, float]:
    figures = {kind: round(n / count, 3) for kind, n in by_kind.items()}
    figures["total"] = round(total / count, 3)
    return figures


def writes_per_object(writes: list[audit.Write], namespace: str, names: list[str]) -> dict[str, Any]:
    """The operator's writes on the objects (events apart): per object on average, the most any object
    had, and how many objects had each count."""
    wanted = set(names)
    mine = [w for w in writes if w.by_operator and w.namespace == namespace and not w.is_event]
    on_objects = [w for w in mine if w.name in wanted]
    counts = Counter(w.name for w in on_objects)
    tally = audit.tally(writes, namespace=namespace)
    return {
        "perObject": round(len(on_objects) / len(names), 3),
        "maxPerObject": max((counts.get(name, 0) for name in names), default=0),
        "objectsByCount": {str(k): v for k, v in sorted(Counter(counts.get(n, 0) for n in names).items())},
        "byKindPerObject": per_object(dict(Counter(w.key for w in on_objects)), len(on_objects), len(names)),
        "otherWrites": dict(Counter(f"{w.key} {w.name}" for w in mine if w.name not in wanted)),
        "events": tally["events"],
        "failed": tally["failed"],
    }


def polls_per_copy(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Operation polls per copy, from the copies' operation IDs in the request log."""
    copies = {
        e["operationId"]: wall(e["time"]) for e in entries if e["method"] in COPY_METHODS and e["operationId"]
    }
    polls: dict[str, list[float]] = defaultdict(list)
    for entry in entries:
        if entry["method"] == POLL_METHOD and entry["operationId"] in copies:
            polls[entry["operationId"]].append(wall(entry["time"]) - copies[entry["operationId"]])
    return {
        "copies": len(copies),
        "pollsPerCopy": _stat([len(polls.get(operation, [])) for operation in copies]),
        "pollOffsetsSeconds": _offsets(list(polls.values())),
    }


def _offsets(polls: list[list[float]]) -> list[float]:
    """The median time of each copy's first, second, ... poll after its copy call (when the schedule
    polls, and how far past the copy's end the last one falls)."""
    longest = max((len(times) for times in polls), default=0)
    return [
        round(statistics.median(sorted(times)[index] for times in polls if len(times) > index), 2)
        for index in range(longest)
    ]


def polls_by_namespace(bench: Bench, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`polls_per_copy` per namespace of the copied image's owner (its ownership labels name it)."""
    owner = {image["id"]: set((image.get("labels") or {}).values()) for image in bench.cloud.images()}
    operations = bench.cloud.http.get("/operations").raise_for_status().json()["operations"]
    image_of = {op["id"]: (op.get("metadata") or {}).get("imageId") for op in operations}
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        operation = entry.get("operationId")
        labels = owner.get(image_of.get(operation or "") or "", set())
        for namespace in labels:
            groups[namespace].append(entry)
    return {namespace: polls_per_copy(group) for namespace, group in groups.items()}


def _stat(values: list[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "max": 0.0}
    return {
        "mean": round(statistics.fmean(values), 2),
        "median": float(statistics.median(values)),
        "max": float(max(values)),
    }


def left_on_objects(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Annotations and finalizers found on the objects; framework bookkeeping ones counted apart."""
    annotations = Counter(key for item in items for key in (item["metadata"].get("annotations") or {}))
    finalizers = Counter(f for item in items for f in item["metadata"].get("finalizers") or [])
    framework = {k: n for k, n in annotations.items() if any(m in k for m in FRAMEWORK_ANNOTATION_MARKERS)}
    return {
        "objects": len(items),
        "annotations": dict(sorted(annotations.items())),
        "frameworkAnnotations": framework,
        "finalizers": dict(sorted(finalizers.items())),
    }


# -- many objects -------------------------------------------------------------------------------------------


def idle(bench: Bench, operator: Operator, namespace: str, seconds: float) -> dict[str, Any]:
    window = bench.window()
    before, cpu = operator.memory(), operator.cpu_seconds()
    time.sleep(seconds)
    return {
        "seconds": seconds,
        "memoryBefore": before,
        "memoryAfter": operator.memory(),
        "cloudCalls": window.calls(),
        "apiWrites": window.writes(namespace),
        "operatorCpuSeconds": round(operator.cpu_seconds() - cpu, 2),
    }


def new_object(bench: Bench, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """One object created while all the others exist: from its creation (the API server's stamp) to the
    operator's first write on it, and to Ready."""
    window = bench.window()
    create(bench, namespace, [name])
    wait_ready(bench, namespace, [name], timeout=timeout, interval=0.1)
    time.sleep(bench.options.settle_seconds)
    writes = [w for w in bench.audit_log.writes(window.audit_mark) if w.name == name]
    created = min(w.time for w in writes if w.client == "kubectl" and w.verb == "create")
    mine = sorted(w.time for w in writes if w.by_operator and not w.is_event)
    ready = max(w.time for w in writes if w.by_operator and w.resource == STATUS)
    return {
        "firstWriteSeconds": round(mine[0] - created, 3),
        "readySeconds": round(ready - created, 3),
        "writes": len(mine),
    }


def sample_memory(operator: Operator, seconds: float, every: float) -> list[tuple[float, int]]:
    """(seconds since the start, VmRSS bytes) every `every` seconds for `seconds`."""
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    while True:
        now = time.monotonic() - started
        samples.append((round(now, 1), operator.memory()["vmRssBytes"]))
        if now >= seconds:
            return samples
        time.sleep(min(every, max(0.0, seconds - now)))


def first_period(
    entries: list[dict[str, Any]],
    writes: list[audit.Write],
    namespace: str,
    started: float,
    resync: float,
    count: int,
) -> dict[str, Any]:
    """What the restarted process did in its first resync period: its cloud calls and its writes."""
    inside = [e for e in entries if started <= wall(e["time"]) < started + resync]
    gets = sum(1 for e in inside if e["method"] == GET_METHOD)
    # The old process's shutdown is before `started`; everything after is the new one's.
    new = [w for w in writes if w.by_operator and w.namespace == namespace and w.time >= started]
    old = [w for w in writes if w.by_operator and w.namespace == namespace and w.time < started]
    return {
        "cloudCalls": tally_calls(inside),
        "getsPerObject": round(gets / count, 3),
        "writesByNewProcess": dict(Counter(w.key for w in new if not w.is_event)),
        "statusWritesByNewProcess": sum(1 for w in new if w.resource == STATUS),
        "eventsByNewProcess": sum(1 for w in new if w.is_event),
        "writesByOldProcessOnShutdown": dict(Counter(w.key for w in old)),
    }


def request_rate(
    entries: list[dict[str, Any]], started: float, resync: float, configured: float
) -> dict[str, Any]:
    """Cloud calls per wall-clock second after the restart: the peak against the configured rate and
    against an even spread of the first looks over the resync period."""
    seconds = Counter(int(wall(e["time"]) - started) for e in entries if wall(e["time"]) >= started)
    first = [seconds.get(second, 0) for second in range(int(resync))]
    peak_second = max(seconds, key=lambda s: seconds[s], default=0)
    return {
        "configuredPerSecond": configured,
        "peakPerSecond": seconds.get(peak_second, 0),
        "peakAtSecond": peak_second,
        "firstPeriodMeanPerSecond": round(statistics.fmean(first), 2) if first else 0.0,
        "firstTenSeconds": [seconds.get(second, 0) for second in range(10)],
    }


def growth(samples: list[tuple[float, int]], resync: float) -> dict[str, Any]:
    """Resident memory over the run: first, after the first resync period, last, and the most."""
    after_first = [rss for moment, rss in samples if moment >= resync]
    return {
        "samples": [[moment, rss] for moment, rss in samples],
        "firstBytes": samples[0][1],
        "afterFirstPeriodBytes": after_first[0] if after_first else samples[-1][1],
        "lastBytes": samples[-1][1],
        "maxBytes": max(rss for _, rss in samples),
    }
