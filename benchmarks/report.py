"""The report: `benchmarks.json` (everything measured) and `benchmarks.md` (the figures that matter)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DISCLAIMER = (
    "All timings are measurements of one run on the machine described below, against a local control "
    "plane and the fake cloud on loopback; they are not guarantees. Call and write counts are what the "
    "operator did in this run; they depend on timing too (operation polls back off with jitter), but much "
    "less on the machine's speed than the timings do."
)


def write(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "benchmarks.json"
    data.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    markdown = out / "benchmarks.md"
    markdown.write_text(render(results))
    return markdown, data


def render(results: dict[str, Any]) -> str:
    lines: list[str] = ["# DesktopImage operator: benchmarks", ""]
    lines += [f"> {DISCLAIMER}", ""]
    options = results["options"]
    lines.append(
        f"Generated {results['generatedAt']}, the whole run took {results.get('benchmarkSeconds', 0):.0f} s"
        + (" (**quick mode**: small sizes, short waits; not representative)." if options["quick"] else ".")
    )
    lines.append("")
    lines += _environment(results)
    single = results["singleObject"]
    rest = single["rest"]
    lines += [
        "## 1. One DesktopImage, apply → Ready",
        "",
        f"Desktop source, REST transport, the fake's copy takes {rest['copySeconds']:g} s. One warm-up "
        f"object, then {rest['repetitions']} fresh objects one after another (each deleted before the next). "
        "Time: from `kubectl apply` returning to `kubectl wait --for=condition=Ready` returning (so it "
        "includes starting kubectl wait); the line below it subtracts the configured copy time, leaving "
        "mostly where the operation polls fall: by default the operator reads the operation at once, then "
        "after 0.5 to 1 s, 1 to 2 s, 2 to 4 s and so on (equal jitter, capped at 15 s), so a 3 s copy is "
        "typically seen done 1 to 3 s late. Cloud calls come from the fake's request log, token calls (IAM "
        "exchange) apart. "
        "API writes are the audit log's entries with the operator's user agents (kopf and the Kubernetes "
        f"client) in the namespace, up to {options['settle_seconds']:g} s after Ready (those after Ready "
        "are shown too).",
        "",
    ]
    lines += _summary_table(rest["apply"]["summary"], "applyToReadySeconds", "apply → Ready (s)")
    lines += _warm_up(rest["warmUp"]["apply"], "applyToReadySeconds")
    lines += [
        "## 2. Delete → gone",
        "",
        "Deleting one Ready object (deletionPolicy Delete): from `kubectl delete --wait` starting to it "
        "returning (the object is gone: finalizer released after the cloud's Delete operation, "
        f"{rest['operationSeconds']:g} s in the fake).",
        "",
    ]
    lines += _summary_table(rest["delete"]["summary"], "deleteToGoneSeconds", "delete → gone (s)")
    many = results["manyObjects"]
    lines += _steady_state(many)
    lines += _many(many)
    if "grpc" in single:
        grpc = single["grpc"]
        lines += [
            "## 5. One DesktopImage over gRPC",
            "",
            "Section 1 and 2 again with `DESKTOP_IMAGE_OPERATOR_TRANSPORT=grpc` (a fresh operator process).",
            "",
            "### apply → Ready",
            "",
        ]
        lines += _summary_table(grpc["apply"]["summary"], "applyToReadySeconds", "apply → Ready (s)")
        lines += _warm_up(grpc["warmUp"]["apply"], "applyToReadySeconds")
        lines += ["### delete → gone", ""]
        lines += _summary_table(grpc["delete"]["summary"], "deleteToGoneSeconds", "delete → gone (s)")
    lines += _settings(results)
    return "\n".join(lines).rstrip() + "\n"


def _environment(results: dict[str, Any]) -> list[str]:
    machine, versions = results["machine"], results["versions"]
    lines = ["## Machine and versions", "", "| | |", "|---|---|"]
    lines.append(
        f"| CPUs (nproc) | {machine['nproc']} ({machine.get('cpuModel') or 'unknown model'}), shared by "
        "etcd, the API server, the fake cloud, the operator and kubectl |"
    )
    lines.append(f"| memory | {_gib(machine.get('memoryTotalBytes'))} total |")
    lines.append(f"| kernel | {machine['kernel']} |")
    lines.append(f"| Python | {machine['python']} ({machine['pythonImplementation']}) |")
    for name, value in versions.items():
        lines.append(f"| {name} | {value} |")
    return [*lines, ""]


def _summary_table(summary: dict[str, Any], seconds_key: str, label: str) -> list[str]:
    lines = ["| figure | median | max |", "|---|---:|---:|"]

    def row(name: str, stat: dict[str, float]) -> None:
        lines.append(f"| {name} | {_num(stat['median'])} | {_num(stat['max'])} |")

    row(label, summary[seconds_key])
    if "overheadSeconds" in summary:
        row("… minus the copy time (s)", summary["overheadSeconds"])
    row("**cloud calls** (without token calls)", summary["cloudCallsTotal"])
    for method, stat in summary["cloudCalls"].items():
        row(f"&nbsp;&nbsp;{method}", stat)
    row("token calls (IAM)", summary["tokenCalls"])
    for call, stat in summary["failedCalls"].items():
        row(f"failed call: {call}", stat)
    row("**API writes by the operator** (without events)", summary["apiWritesTotal"])
    for kind, stat in summary["apiWrites"].items():
        row(f"&nbsp;&nbsp;{kind}", stat)
    row("events posted", summary["eventsTotal"])
    for kind, stat in summary["events"].items():
        row(f"&nbsp;&nbsp;{kind}", stat)
    for kind, stat in summary["writesAfterEnd"].items():
        row(f"of these after the end: {kind}", stat)
    for kind, stat in summary["failedWrites"].items():
        row(f"refused write: {kind}", stat)
    lines.append("")
    if summary["failedWriteMessages"]:
        lines.append("Refused writes, as the API server answered:")
        lines.append("")
        lines += [f"- `{message}`" for message in summary["failedWriteMessages"]]
        lines.append("")
    return lines


def _warm_up(run: dict[str, Any], seconds_key: str) -> list[str]:
    calls, writes = run["cloudCalls"], run["apiWrites"]
    return [
        f"Warm-up object (first after the operator started; not in the table): {run[seconds_key]:.2f} s, "
        f"cloud calls {_counts(calls['byMethod'])}, token calls {_counts(calls['tokenCallsByMethod']) or 0}, "
        f"writes {_counts(writes['byKind'])}, events {writes['events']}.",
        "",
    ]


def _steady_state(many: dict[str, Any]) -> list[str]:
    steady, restart = many["steadyState"], many["restart"]
    calls = steady["cloudCalls"]
    lines = [
        "## 3. Steady state",
        "",
        f"The {steady['objects']} Ready objects of section 4, after restarting the operator with "
        f"`DESKTOP_IMAGE_OPERATOR_RESYNC_SECONDS={steady['resyncSeconds']:g}` "
        f"(jitter {_jitter(steady['resyncJitter'])}), observed for {steady['observeSeconds']:g} s once the "
        "restart's burst of calls was over.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| DesktopImageService.Get per second | {steady['getsPerSecond']} |",
        f"| expected (objects / resync period) | {steady['expectedGetsPerSecond']} |",
        f"| cloud calls other than DesktopImageService.Get | {steady['otherCalls']} |",
        f"| token calls (IAM) | {calls['tokenCalls']} |",
        f"| API writes by the operator / events | {steady['apiWrites']['total']} / "
        f"{steady['apiWrites']['events']} |",
        f"| objects Ready at the end | {steady['readyAtEnd']} |",
        f"| operator memory VmRSS / VmHWM | {_mib(steady['memory']['vmRssBytes'])} / "
        f"{_mib(steady['memory']['vmHwmBytes'])} |",
        "",
        f"Calls per minute by method: {_counts(steady['callsPerMinute'])}.",
        "",
        f"The restart itself (a new operator process resuming {steady['objects']} Ready objects): "
        f"{restart['startToLastCallSeconds']:g} s from starting the process to its last call (0.5 s "
        "precision)"
        + ("" if restart["quietReached"] else " (**did not settle within the bound**)")
        + f"; cloud calls {_counts(restart['cloudCalls']['byMethod'])}, token calls "
        f"{restart['cloudCalls']['tokenCalls']}; API writes {_counts(restart['apiWrites']['byKind']) or 0}, "
        f"events {restart['apiWrites']['events']}.",
        "",
    ]
    return lines


def _many(many: dict[str, Any]) -> list[str]:
    create, memory, idle = many["create"], many["memory"], many["idle"]
    count = many["objects"]
    latency = create["perObjectCreateToReadySeconds"]
    lines = [
        f"## 4. {count} DesktopImages",
        "",
        f"Compute-image source, unique names, applied with kubectl in batches; the fake's copy takes "
        f"{many['copySeconds']:g} s; the operator runs with raised limits (see settings). Time starts before "
        f"the first `kubectl apply`; all Ready is observed by listing the objects every "
        f"{create['pollSeconds']:g} s.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| applying all batches (s) | {create['applySeconds']:g} |",
        f"| time to all Ready, observed (s) | {create['allReadySeconds']:g} |",
        "| time to all Ready, by the Ready conditions' timestamps (s) | "
        f"{create['allReadySecondsByConditions']:g} |",
        f"| throughput (objects/s) | {create['objectsPerSecond']:g} |",
        "| per object, creation → Ready: p50 / p95 / max (s; API timestamps, whole seconds) | "
        f"{latency['p50']:g} / {latency['p95']:g} / {latency['max']:g} |",
        f"| cloud images at the end | {create['cloudImages']} |",
        f"| **cloud calls** total (per object) | {create['cloudCalls']['total']} "
        f"({create['cloudCallsPerObject']['total']:g}) |",
    ]
    for method, n in create["cloudCalls"]["byMethod"].items():
        lines.append(f"| &nbsp;&nbsp;{method} | {n} ({create['cloudCallsPerObject'][method]:g}) |")
    lines.append(f"| token calls (IAM) | {create['cloudCalls']['tokenCalls']} |")
    for call, n in create["cloudCalls"]["failed"].items():
        lines.append(f"| failed call: {call} | {n} |")
    lines.append(
        f"| **API writes by the operator** total (per object) | {create['apiWrites']['total']} "
        f"({create['apiWritesPerObject']['total']:g}) |"
    )
    for kind, n in create["apiWrites"]["byKind"].items():
        lines.append(f"| &nbsp;&nbsp;{kind} | {n} ({create['apiWritesPerObject'][kind]:g}) |")
    lines.append(f"| events (per object) | {create['apiWrites']['events']} ({create['eventsPerObject']:g}) |")
    for kind, n in create["apiWrites"]["failed"].items():
        lines.append(f"| refused write: {kind} | {n} |")
    lines.append(f"| operator CPU time until all Ready (s) | {create['operatorCpuSeconds']:g} |")
    lines += [
        "",
        "Operator memory (from /proc/<pid>/status):",
        "",
        "| moment | VmRSS | VmHWM |",
        "|---|---:|---:|",
    ]
    for label, key in (
        ("started, no objects", "beforeObjects"),
        ("all Ready", "allReady"),
        (f"after {idle['seconds']:g} s more, idle", "afterIdle"),
    ):
        lines.append(f"| {label} | {_mib(memory[key]['vmRssBytes'])} | {_mib(memory[key]['vmHwmBytes'])} |")
    lines += [
        "",
        f"While idle ({idle['seconds']:g} s, default 10-minute resync): cloud calls "
        f"{_counts(idle['cloudCalls']['byMethod']) or 0}, API writes "
        f"{_counts(idle['apiWrites']['byKind']) or 0}, events {idle['apiWrites']['events']}, "
        f"operator CPU {idle['operatorCpuSeconds']:g} s.",
        "",
        "Ready objects over time (seconds since the first apply: count): "
        + ", ".join(f"{seconds:g}: {ready}" for seconds, ready in create["progress"])
        + ".",
        "",
    ]
    return lines


def _settings(results: dict[str, Any]) -> list[str]:
    lines = ["## Settings", "", "Benchmark options:", ""]
    lines += [f"- `{key}`: {value}" for key, value in results["options"].items()]
    lines += ["", "Fake cloud configuration at the start (copy time is changed per section as stated):", ""]
    lines += [f"- `{key}`: {value}" for key, value in results["fakeCloud"].items()]
    lines += [
        "",
        "Operator settings per run (`DESKTOP_IMAGE_OPERATOR_<NAME>`; endpoints and ports omitted):",
        "",
    ]
    for label, settings in results["operatorSettings"].items():
        lines.append(f"- {label}: " + ", ".join(f"`{k}={v}`" for k, v in settings.items()))
    lines += ["", "Operator defaults left unchanged:", ""]
    lines += [f"- `{key}`: {value}" for key, value in results["operatorDefaults"].items()]
    lines += [
        "",
        "Local control plane: etcd + kube-apiserver on 127.0.0.1 (no controller manager), audit log of "
        "write requests; reads are not audited. kubectl's own writes are not counted.",
        "",
    ]
    return lines


def _jitter(value: float) -> str:
    return f"±{value * 100:g}%, the operator's default"


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {_num(value)}" for key, value in counts.items())


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _mib(value: int) -> str:
    return f"{value / (1 << 20):.1f} MiB"


def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / (1 << 30):.1f} GiB"
