"""The scale benchmark's report: `scale.json` (everything measured) and `scale.md` (each figure next to
its target)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MB = 1_000_000  # targets in MB are read as 10^6 bytes, the stricter reading
# Memory is "not growing" while it stays within this fraction of where it started (allocator noise).
GROWTH_TOLERANCE = 0.05
# Writes per object from apply to Ready: kopf's finalizer, the copy recorded as Sent before its request goes
# out (so a lost answer is never a copy nobody knows of), the copy Running, and Ready.
WRITES_PER_OBJECT = 4

DISCLAIMER = (
    "Measurements of one run on the machine below (control plane, fake cloud, operator and the benchmark "
    "all on its CPUs, on loopback); timings are not guarantees. Counts of calls and writes depend on "
    "timing much less than durations do."
)


def write(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "scale.json"
    results["targets"] = targets(results)
    data.write_text(json.dumps(results, indent=2) + "\n")
    markdown = out / "scale.md"
    markdown.write_text(render(results))
    return markdown, data


def _row(figure: str, target: str, measured: str, met: bool | None) -> dict[str, Any]:
    return {"figure": figure, "target": target, "measured": measured, "met": met}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = _paired_rows(results["paired"])
    if "many" in results:
        rows += _many_rows(results["many"])
    return rows


def _paired_rows(paired: dict[str, Any]) -> list[dict[str, Any]]:
    run, limit, long = paired["operator"], paired["direct"], paired["longCopies"]
    learned = paired["operatorLearned"]
    count, copy = paired["objects"], paired["copySeconds"]
    writes = run["writes"]
    framework = paired["operator"]["leftOnObjects"]["frameworkAnnotations"]
    rows = [
        _row(
            f"{count} objects, {copy:g} s copies: fresh operator / direct client, apply → all Ready",
            "≤ 1.3 x",
            f"{run['allReadySeconds']:g} s / {limit['allDoneSeconds']:g} s = {paired['ratio']:.2f} x",
            paired["ratio"] <= 1.3,
        ),
        _row(
            f"the same {count} again by the same process (copy durations learned)",
            "≤ 1.3 x",
            f"{learned['allReadySeconds']:g} s / {limit['allDoneSeconds']:g} s = "
            f"{paired['ratioLearned']:.2f} x",
            paired["ratioLearned"] <= 1.3,
        ),
        _row(
            f"polls per operation, {long['copySeconds']:g} s copy (operator that saw {copy:g} s copies)",
            "≤ 8",
            _polls(long["learned"]),
            long["learned"]["copies"] > 0 and long["learned"]["pollsPerCopy"]["max"] <= 8,
        ),
        _row(
            f"polls per operation, {long['copySeconds']:g} s copy (fresh operator)",
            "≤ 8",
            _polls(long["fresh"]),
            long["fresh"]["copies"] > 0 and long["fresh"]["pollsPerCopy"]["max"] <= 8,
        ),
        _row(
            f"polls per operation, {copy:g} s copy (paired run: fresh / learned)",
            "(no target)",
            f"{_polls(run)} / {_polls(learned)}",
            None,
        ),
        _row(
            "API-server writes per object, apply → Ready (audit log)",
            f"≤ {WRITES_PER_OBJECT}",
            f"{writes['perObject']:g} mean, {writes['maxPerObject']} max",
            writes["maxPerObject"] <= WRITES_PER_OBJECT,
        ),
        _row(
            "framework bookkeeping annotations left on the objects",
            "none",
            ", ".join(f"{k} on {n}" for k, n in framework.items()) or "none",
            not framework,
        ),
    ]
    return rows


def _polls(figures: dict[str, Any]) -> str:
    stat = figures["pollsPerCopy"]
    offsets = ", ".join(f"{offset:g}" for offset in figures.get("pollOffsetsSeconds", []))
    return f"{stat['mean']:g} mean, {stat['max']:g} max over {figures['copies']} copies (at {offsets} s)"


def _many_rows(many: dict[str, Any]) -> list[dict[str, Any]]:
    first, second, idle = many["firstStep"], many["secondStep"], many["idle"]
    count = many["objects"]
    rss_all = second["memory"]["vmRssBytes"]
    idle_after = idle["memoryAfter"]["vmRssBytes"]
    restart = many["restart"]
    period, rate, memory = restart["firstPeriod"], restart["requestRate"], restart["memory"]
    resync = restart["resyncSeconds"]
    rows = [
        _row("RSS with no objects", "(reported)", _mb(many["memoryNoObjects"]["vmRssBytes"]), None),
        _row(f"RSS with {first['objects']} Ready", "(reported)", _mb(first["memory"]["vmRssBytes"]), None),
        _row(f"RSS with {count} Ready", "≤ 150 MB", _mb(rss_all), rss_all <= 150 * MB),
        _row(
            f"RSS after {idle['seconds']:g} s idle",
            "no growth",
            f"{_mb(idle['memoryBefore']['vmRssBytes'])} → {_mb(idle_after)}",
            idle_after <= idle["memoryBefore"]["vmRssBytes"] * (1 + GROWTH_TOLERANCE),
        ),
        _row(
            f"apply → all Ready, first {first['objects']} / next {second['objects']}",
            "(reported)",
            f"{first['allReadySeconds']:g} s / {second['allReadySeconds']:g} s",
            None,
        ),
        _row(
            "cloud calls per object (creation)",
            "(reported)",
            _per_kind(second["cloudCallsPerObject"]),
            None,
        ),
        _row(
            f"API-server writes per object, apply → Ready ({second['objects']} at once)",
            f"≤ {WRITES_PER_OBJECT}",
            f"{second['writes']['perObject']:g} mean, {second['writes']['maxPerObject']} max",
            second["writes"]["maxPerObject"] <= WRITES_PER_OBJECT,
        ),
        _row(
            f"one new object while {count} exist: creation → first write / → Ready",
            "(reported)",
            f"{many['newObject']['firstWriteSeconds']:g} s / {many['newObject']['readySeconds']:g} s",
            None,
        ),
        _row(
            "restart: status writes by the new process",
            "0",
            str(period["statusWritesByNewProcess"]),
            period["statusWritesByNewProcess"] == 0,
        ),
        _row(
            f"restart: Gets per object in the first resync period ({resync:g} s, shortened)",
            "≤ 1",
            f"{period['getsPerObject']:g}",
            period["getsPerObject"] <= 1,
        ),
        _row(
            "restart: peak cloud calls per second",
            f"≤ {rate['configuredPerSecond']:g} (configured)",
            f"{rate['peakPerSecond']} (mean {rate['firstPeriodMeanPerSecond']:g} over the period)",
            rate["peakPerSecond"] <= rate["configuredPerSecond"],
        ),
        _row(
            f"RSS over {len(memory['samples'])} samples of resyncs: after the first period → last",
            "no growth",
            f"{_mb(memory['afterFirstPeriodBytes'])} → {_mb(memory['lastBytes'])} "
            f"(max {_mb(memory['maxBytes'])})",
            memory["lastBytes"] <= memory["afterFirstPeriodBytes"] * (1 + GROWTH_TOLERANCE),
        ),
    ]
    return rows


def render(results: dict[str, Any]) -> str:
    options = results["options"]
    lines = ["# DesktopImage operator: scale and speed", "", f"> {DISCLAIMER}", ""]
    lines.append(
        f"Generated {results['generatedAt']}, the run took {results.get('benchmarkSeconds', 0):.0f} s"
        + (" (**quick mode**: tiny sizes; not representative)." if options["quick"] else ".")
    )
    lines += ["", *_machine(results), "## Figures and targets", ""]
    lines += ["| figure | target | measured | met? |", "|---|---|---|---|"]
    for row in results["targets"]:
        met = {True: "yes", False: "**no**", None: "—"}[row["met"]]
        lines.append(f"| {row['figure']} | {row['target']} | {row['measured']} | {met} |")
    lines += ["", *_how(results), *_details(results)]
    return "\n".join(lines).rstrip() + "\n"


def _machine(results: dict[str, Any]) -> list[str]:
    machine, versions = results["machine"], results["versions"]
    return [
        f"Machine: {machine['nproc']} CPUs ({machine.get('cpuModel') or 'unknown model'}), "
        f"{(machine.get('memoryTotalBytes') or 0) / (1 << 30):.1f} GiB, kernel {machine['kernel']}, "
        f"Python {machine['python']}; kopf {versions.get('kopf')}, kube-apiserver "
        f"{versions.get('kubeApiserver')}, commit {versions.get('gitCommit')}"
        + (" (with uncommitted changes)" if versions.get("gitDirty") else "")
        + ".",
        "",
    ]


def _how(results: dict[str, Any]) -> list[str]:
    options = results["options"]
    paired = results["paired"]
    lines = [
        "## How",
        "",
        f"- Operator limits in every run: {options['requests_per_second']:g} requests/s, "
        f"{options['max_concurrency']} calls in flight.",
        f"- Paired run: first the direct client (asyncio + httpx, every copy at once, at most "
        f"{options['max_concurrency']} calls in flight, each operation polled every "
        f"{options['direct_poll_seconds']:g} s, then the image read), then the operator on the same number "
        "of objects created with one `kubectl create` of a List. The operator's time runs from just before "
        f"`kubectl create` (which took {paired['operator']['createSeconds']:g} s) to the last object's last "
        "status write (audit log); all Ready was also observed by listing "
        f"({paired['operator']['allReadyObservedSeconds']:g} s).",
        f"- Long copies: {options['long_objects']} objects with {options['long_copy_seconds']:g} s copies "
        "applied at once to the paired run's operator and to a fresh one; polls are the request log's "
        "OperationService.Get calls on each copy's operation.",
        "- Writes per object: the audit log's writes by the operator's user agents on each object from "
        "its creation to Ready (plus a settle second), events apart.",
    ]
    if "many" in results:
        lines += [
            f"- Many objects: {options['first_objects']} created, all Ready, then "
            f"{options['objects'] - options['first_objects']} more; fake copies take "
            f"{options['scale_copy_seconds']:g} s. RSS is VmRSS from /proc. "
            + (
                "The operator runs on the image's runtime environment (the Dockerfile's builder stage "
                "replayed), so no development package is loaded."
                if options.get("image_env")
                else "The operator runs on the development environment (test packages installed)."
            ),
            f"- Restart: SIGTERM to the operator, then a new process with a resync period of "
            f"{options['resync_seconds']:g} s (shortened from 600 s); its first period's calls and "
            f"writes, then {options['growth_seconds']:g} s more of resyncs with RSS sampled every "
            f"{options['sample_seconds']:g} s.",
        ]
    return [*lines, ""]


def _details(results: dict[str, Any]) -> list[str]:
    paired = results["paired"]
    run, limit = paired["operator"], paired["direct"]
    left = run.get("leftOnObjects", {}).get("annotations", {})
    lines = [
        "## Details",
        "",
        f"Direct client: {limit['allDoneSeconds']:g} s, per copy {limit['perCopySeconds']['min']:g} to "
        f"{limit['perCopySeconds']['max']:g} s, {limit['pollsPerCopy']:g} polls per copy; calls "
        f"{_counts(limit['cloudCalls']['byMethod'])}.",
        "",
        f"Operator, paired run: cloud calls per object {_per_kind(run['cloudCallsPerObject'])}; writes per "
        f"object {_per_kind(run['writes']['byKindPerObject'])}; objects by write count "
        f"{_counts(run['writes']['objectsByCount'])}; events {run['writes']['events']}; operator CPU "
        f"{run['operatorCpuSeconds']:g} s; annotations left {_counts(left) or 'none'}.",
        "",
        *_timeline("fresh operator", run),
        *_timeline("the same process again (durations learned)", paired["operatorLearned"]),
    ]
    if "many" in results:
        lines += _many_details(results["many"])
    return lines


def _timeline(label: str, run: dict[str, Any]) -> list[str]:
    """Where an object's time goes (median / max over the objects, seconds)."""
    stages = run.get("timeline", {})
    if not stages:
        return []
    lines = [f"Where the time goes, {label} (s, median / max over the objects):", ""]
    lines += ["| stage | median | max |", "|---|---:|---:|"]
    for stage, stat in stages.items():
        lines.append(f"| {_STAGES.get(stage, stage)} | {stat['median']:g} | {stat['max']:g} |")
    return [*lines, ""]


_STAGES = {
    "createdToFirstWrite": "creation → operator's first write (finalizer)",
    "firstWriteToCopy": "finalizer → Copy call",
    "copyToRecord": "Copy call → operation record written",
    "copyToDonePoll": "Copy call → the poll that saw it done",
    "donePollToReady": "that poll → Ready written",
    "createdToReady": "creation → Ready",
}


def _many_details(many: dict[str, Any]) -> list[str]:
    second, idle = many["secondStep"], many["idle"]
    period, rate = many["restart"]["firstPeriod"], many["restart"]["requestRate"]
    return [
        *_timeline(f"many objects, second step ({second['objects']})", second),
        f"Many objects, second step: cloud calls {_counts(second['cloudCalls']['byMethod'])}; writes per "
        f"object {_per_kind(second['writes']['byKindPerObject'])}; operator CPU "
        f"{second['operatorCpuSeconds']:g} s.",
        "",
        f"Idle {idle['seconds']:g} s: cloud calls {idle['cloudCalls']['total']}, writes "
        f"{idle['apiWrites']['total']}, CPU {idle['operatorCpuSeconds']:g} s. "
        f"SIGTERM to exit: {many['stopSeconds']:g} s.",
        "",
        f"Restart, first period: calls {_counts(period['cloudCalls']['byMethod'])}; writes by the new "
        f"process {_counts(period['writesByNewProcess']) or 'none'}; by the old one while stopping "
        f"{_counts(period['writesByOldProcessOnShutdown']) or 'none'}; calls in each of the first ten "
        f"seconds {rate['firstTenSeconds']}; objects Ready at the end {many['restart']['readyAtEnd']}.",
        "",
        "RSS samples after the restart (s: MB): "
        + ", ".join(f"{m:g}: {rss / MB:.1f}" for m, rss in many["restart"]["memory"]["samples"])
        + ".",
        "",
    ]


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())


def _per_kind(figures: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:g}" for key, value in figures.items())


def _mb(value: int) -> str:
    return f"{value / MB:.1f} MB"
