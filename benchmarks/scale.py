"""Scale and speed: the operator against the direct-API limit, thousands of objects, restarts, memory.

`python -m benchmarks.scale [--quick] [--no-many] [--out DIR]` writes `scale.md` and `scale.json`:

1. paired run: the same copies driven straight at the fake by a minimal client and by the operator;
2. polls per operation for long copies, by an operator that has learned short ones and by a fresh one;
3. API-server writes per object from apply to Ready (audit log), and what is left on the objects;
4. many objects (5,000 by default): memory, apply-to-all-Ready, calls and writes, a new object's first
   reconcile; then a restart (SIGTERM, start) with a shortened resync, and memory over further resyncs.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import config

from benchmarks import audit, direct, manifests, system
from benchmarks import scale_measure as measure
from benchmarks import scale_report as report
from benchmarks.cli import CRD_FILE, USER_AGENT
from benchmarks.options import Options
from benchmarks.scenarios import Bench, Window
from benchmarks.stack import FakeCloud
from desktop_image_operator.api import CRD_NAME
from desktop_image_operator_dev import dockerfile
from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from desktop_image_operator_dev.devenv.stack import Kubectl


@dataclass(frozen=True)
class ScaleOptions:
    out: Path = Path("reports")
    quick: bool = False
    # Limits the operator runs with in every run here (the "raised limits").
    requests_per_second: float = 1000.0
    max_concurrency: int = 64
    # Paired run.
    paired_objects: int = 200
    paired_copy_seconds: float = 10.0
    direct_poll_seconds: float = 0.25
    # Long copies: polls per operation.
    long_objects: int = 3
    long_copy_seconds: float = 60.0
    # Many objects: a first step, then the rest.
    many: bool = True
    first_objects: int = 1000
    objects: int = 5000
    scale_copy_seconds: float = 1.0
    idle_seconds: float = 60.0
    # Restart and no growth, with a shortened resync period.
    resync_seconds: float = 120.0
    growth_seconds: float = 600.0
    sample_seconds: float = 10.0
    ready_timeout: float = 900.0
    paired_list_seconds: float = 0.5
    many_list_seconds: float = 3.0
    settle_seconds: float = 1.0
    keep_workdir: bool = False
    # The operator runs on the image's runtime environment (the Dockerfile's builder replayed), so memory
    # is measured on what ships: no development or test packages that kopf would import when present.
    image_env: bool = True

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["out"] = str(self.out)
        return values

    @property
    def limits(self) -> dict[str, str]:
        return {
            "REQUESTS_PER_SECOND": f"{self.requests_per_second:g}",
            "MAX_CONCURRENCY": str(self.max_concurrency),
        }


QUICK: dict[str, Any] = {
    "paired_objects": 5,
    "paired_copy_seconds": 1.0,
    "long_objects": 1,
    "long_copy_seconds": 3.0,
    "first_objects": 10,
    "objects": 20,
    "idle_seconds": 2.0,
    "resync_seconds": 4.0,
    "growth_seconds": 4.0,
    "sample_seconds": 1.0,
    "ready_timeout": 120.0,
    "paired_list_seconds": 0.3,
    "many_list_seconds": 0.5,
    "settle_seconds": 0.5,
    "image_env": False,
}


def parse(argv: Sequence[str] | None = None) -> ScaleOptions:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports"), help="report directory")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and waits (a smoke test)")
    parser.add_argument("--no-many", dest="many", action="store_false", help="skip the many-objects run")
    parser.add_argument("--objects", type=int, help="objects in the many-objects run (default 5000)")
    parser.add_argument("--paired-objects", type=int, help="objects in the paired run (default 200)")
    parser.add_argument("--resync-seconds", type=float, help="resync period after the restart (default 120)")
    parser.add_argument("--growth-seconds", type=float, help="resyncs watched for growth (default 600)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the processes' logs")
    parser.add_argument(
        "--dev-env",
        dest="image_env",
        action="store_false",
        default=None,
        help="run the operator on this environment, not on the image's runtime environment",
    )
    args = parser.parse_args(argv)
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    values.update(out=args.out, quick=args.quick, many=args.many, keep_workdir=args.keep_workdir)
    if args.image_env is not None:
        values["image_env"] = args.image_env
    for name in ("objects", "paired_objects", "resync_seconds", "growth_seconds"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    options = ScaleOptions(**values)
    if options.objects <= options.first_objects and options.many:
        values["first_objects"] = max(1, options.objects // 5)
        options = ScaleOptions(**values)
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    started = time.monotonic()
    results = run(options)
    results["benchmarkSeconds"] = round(time.monotonic() - started, 1)
    markdown, data = report.write(results, options.out)
    print(f"wrote {markdown} and {data} in {results['benchmarkSeconds']:.0f} s")
    return 0


def run(options: ScaleOptions) -> dict[str, Any]:
    with _bench(options) as bench:
        results: dict[str, Any] = {
            "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": system.machine(),
            "versions": system.versions(bench.kubectl.json("version", timeout=30), None),
            "options": options.to_json(),
        }
        measure.say("paired run")
        results["paired"] = paired(bench, options)
        if options.many:
            results["many"] = many(bench, options)
        results["operatorSettings"] = bench.operator_settings
    return results


@contextmanager
def _bench(options: ScaleOptions) -> Iterator[Bench]:
    workdir = Path(tempfile.mkdtemp(prefix="desktop-image-operator-scale-"))
    with ExitStack() as stack:
        stack.callback(_keep_or_remove, workdir, options.keep_workdir)
        python: str | Path = sys.executable
        if options.image_env:
            measure.say("building the image's runtime environment")
            python = dockerfile.runtime_python(workdir / "image", python=sys.executable)
        control_plane = stack.enter_context(ControlPlane(with_controller_manager=False, audit_writes=True))
        kubectl = Kubectl(control_plane.kubeconfig)
        kubectl("apply", "-f", str(CRD_FILE))
        kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s", timeout=70)
        cloud = FakeCloud(workdir, copy_seconds=options.paired_copy_seconds, operation_seconds=0.5)
        stack.callback(cloud.stop)
        # Direct, fresh and learned paired copies, long copies, many objects and the new one, with room.
        total = options.paired_objects * 3 + options.long_objects * 2 + options.objects + 100
        cloud.config(imageQuota=total, imageSizeQuota=1 << 60, requestLogSize=max(200_000, total * 40))
        api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
        api.user_agent = USER_AGENT
        stack.callback(api.close)
        yield Bench(
            options=Options(settle_seconds=options.settle_seconds),
            workdir=workdir,
            kubeconfig=control_plane.kubeconfig,
            kubectl=kubectl,
            audit_log=audit.AuditLog(control_plane.audit_log),
            cloud=cloud,
            api=api,
            python=python,
        )


def _keep_or_remove(workdir: Path, keep: bool) -> None:
    if keep:
        print(f"process logs kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


# -- paired run and long copies -----------------------------------------------------------------------------


def paired(bench: Bench, options: ScaleOptions) -> dict[str, Any]:
    """The direct client first (nothing else running), then the operator on the same number of copies."""
    count = options.paired_objects
    bench.cloud.config(copySeconds=options.paired_copy_seconds)
    token = bench.cloud.http.post("/tokens", json={}).raise_for_status().json()["iamToken"]
    endpoints = bench.cloud.endpoints
    target = direct.Target(endpoints["cloudDesktop"], endpoints["operation"], token)
    window = bench.window()
    limit = direct.copy_all(
        target,
        [f"direct-{index:04d}" for index in range(count)],
        in_flight=options.max_concurrency,
        poll_seconds=options.direct_poll_seconds,
        timeout=options.ready_timeout,
    )
    limit["cloudCalls"] = window.calls()
    namespace = bench.namespace("bench-paired")
    names = [f"paired-{index:04d}" for index in range(count)]
    every = options.paired_list_seconds
    with bench.operator("paired", namespace=namespace, **options.limits) as operator:
        time.sleep(options.settle_seconds)  # kopf lists and starts watching
        run = measure.create_and_wait(bench, operator, namespace, names, every, options)
        run["leftOnObjects"] = measure.left_on_objects(bench.list_objects(namespace))
        # The same again now that the process has seen copies end: it polls when they are expected to.
        again = [f"again-{index:04d}" for index in range(count)]
        learned = measure.create_and_wait(
            bench, operator, namespace, again, options.paired_list_seconds, options
        )
        measure.say("long copies")
        long = long_copies(bench, options, namespace)
    return {
        "objects": count,
        "copySeconds": options.paired_copy_seconds,
        "direct": limit,
        "operator": run,
        "ratio": round(run["allReadySeconds"] / limit["allDoneSeconds"], 3),
        "operatorLearned": learned,
        "ratioLearned": round(learned["allReadySeconds"] / limit["allDoneSeconds"], 3),
        "longCopies": long,
    }


def long_copies(bench: Bench, options: ScaleOptions, learned_namespace: str) -> dict[str, Any]:
    """Long copies at once by the paired run's operator (which has seen short ones) and a fresh one."""
    bench.cloud.config(copySeconds=options.long_copy_seconds)
    fresh_namespace = bench.namespace("bench-long")
    with bench.operator("long-fresh", namespace=fresh_namespace, **options.limits):
        time.sleep(options.settle_seconds)
        window = bench.window()
        # Image names are unique in a folder: each namespace's objects get their own.
        names = {
            namespace: [f"long-{namespace}-{index:02d}" for index in range(options.long_objects)]
            for namespace in (learned_namespace, fresh_namespace)
        }
        for namespace, batch in names.items():
            measure.create(bench, namespace, batch)
        for namespace, batch in names.items():
            measure.wait_ready(bench, namespace, batch, timeout=options.long_copy_seconds * 3 + 60)
        time.sleep(options.settle_seconds)
        entries = bench.cloud.calls_since(window.cloud_seq)
    by_namespace = measure.polls_by_namespace(bench, entries)
    empty = measure.polls_per_copy([])
    return {
        "copySeconds": options.long_copy_seconds,
        "objectsPerOperator": options.long_objects,
        "learned": by_namespace.get(learned_namespace, empty),
        "fresh": by_namespace.get(fresh_namespace, empty),
    }


# -- many objects, restart, growth ------------------------------------------------------------------------


def many(bench: Bench, options: ScaleOptions) -> dict[str, Any]:
    namespace = bench.namespace("bench-many")
    bench.cloud.config(copySeconds=options.scale_copy_seconds)
    names = [f"many-{index:05d}" for index in range(options.objects)]
    first, rest = names[: options.first_objects], names[options.first_objects :]
    result: dict[str, Any] = {"objects": options.objects, "copySeconds": options.scale_copy_seconds}
    with bench.operator("many", namespace=namespace, **options.limits) as operator:
        time.sleep(options.settle_seconds)
        result["memoryNoObjects"] = operator.memory()
        every = options.many_list_seconds
        result["firstStep"] = measure.create_and_wait(bench, operator, namespace, first, every, options)
        result["secondStep"] = measure.create_and_wait(bench, operator, namespace, rest, every, options)
        measure.say("idle")
        result["idle"] = measure.idle(bench, operator, namespace, options.idle_seconds)
        measure.say("one new object")
        result["newObject"] = measure.new_object(bench, namespace, "many-new", options.ready_timeout)
        result["leftOnObjects"] = measure.left_on_objects(bench.list_objects(namespace))
        window = bench.window()
        stop_started = time.monotonic()
    result["stopSeconds"] = round(time.monotonic() - stop_started, 2)
    measure.say("restart")
    result["restart"] = restart(bench, options, namespace, window, options.objects + 1)
    return result


def restart(
    bench: Bench, options: ScaleOptions, namespace: str, window: Window, count: int
) -> dict[str, Any]:
    """A new process with a shortened resync: its first resync period, then further resyncs for growth."""
    resync = options.resync_seconds
    settings = {"RESYNC_SECONDS": f"{resync:g}", **options.limits}
    # From the launch: its first looks may come before it answers its health endpoint.
    started_wall = time.time()
    with bench.operator("restart", namespace=namespace, **settings) as operator:
        samples = measure.sample_memory(operator, resync + options.growth_seconds, options.sample_seconds)
        entries = bench.cloud.calls_since(window.cloud_seq)
        writes = bench.audit_log.writes(window.audit_mark)
        ready = sum(1 for item in bench.list_objects(namespace) if manifests.is_ready(item))
    return {
        "resyncSeconds": resync,
        "objects": count,
        "readyAtEnd": ready,
        "firstPeriod": measure.first_period(entries, writes, namespace, started_wall, resync, count),
        "requestRate": measure.request_rate(entries, started_wall, resync, options.requests_per_second),
        "memory": measure.growth(samples, resync),
    }


if __name__ == "__main__":
    sys.exit(main())
