"""Command line of `python -m benchmarks`: set up the stack, run the scenarios, write the report."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import config

from benchmarks import audit, report, scenarios, system
from benchmarks.options import QUICK, Options
from benchmarks.stack import FakeCloud
from desktop_image_operator.api import CRD_NAME
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from desktop_image_operator_dev.devenv.stack import Kubectl

CRD_FILE = system.REPO / "crds" / "clouddesktop.yc.io_desktopimages.yaml"
USER_AGENT = "desktop-image-operator-benchmarks"


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--objects", type=int, help="DesktopImages in the many-objects run (default 1000)")
    parser.add_argument(
        "--out", type=Path, default=Path("reports"), help="report directory (default reports/)"
    )
    parser.add_argument("--quick", action="store_true", help="a small, fast run (5 objects, 1 repetition)")
    parser.add_argument("--repetitions", type=int, help="one-object repetitions (default 5)")
    parser.add_argument("--no-grpc", dest="grpc", action="store_false", help="skip the one-object gRPC run")
    parser.add_argument("--observe-seconds", type=float, help="steady-state observation (default 60)")
    parser.add_argument("--idle-seconds", type=float, help="idle period after all Ready (default 60)")
    parser.add_argument("--resync-seconds", type=float, help="resync period in the steady state (default 30)")
    parser.add_argument("--ready-timeout", type=float, help="bound on waiting for all Ready (default 900)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    values.update(
        {"out": args.out, "quick": args.quick, "grpc": args.grpc, "keep_workdir": args.keep_workdir}
    )
    for name in (
        "objects",
        "repetitions",
        "observe_seconds",
        "idle_seconds",
        "resync_seconds",
        "ready_timeout",
    ):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    options = Options(**values)
    if options.objects < 1 or options.repetitions < 1:
        parser.error("--objects and --repetitions must be at least 1")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    started = time.monotonic()
    results = run(options)
    results["benchmarkSeconds"] = round(time.monotonic() - started, 1)
    markdown, data = report.write(results, options.out)
    print(f"wrote {markdown} and {data} in {results['benchmarkSeconds']:.0f} s")
    return 0


def run(options: Options) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="desktop-image-operator-bench-"))
    finished = False
    try:
        with ExitStack() as stack:
            # No controller manager: nothing here needs it, and it would compete for the same CPUs.
            control_plane = stack.enter_context(
                ControlPlane(with_controller_manager=False, audit_writes=True)
            )
            if options.keep_workdir:
                # Runs before the control plane stops (and removes its directory).
                stack.callback(_copy_if_exists, control_plane.audit_log, workdir / "audit.log")
            kubectl = Kubectl(control_plane.kubeconfig)
            kubectl("apply", "-f", str(CRD_FILE))
            kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s", timeout=70)
            cloud = FakeCloud(
                workdir, copy_seconds=options.single_copy_seconds, operation_seconds=options.operation_seconds
            )
            stack.callback(cloud.stop)
            cloud.config(
                imageQuota=options.objects + 100,
                imageSizeQuota=1 << 60,
                requestLogSize=max(100_000, options.objects * 200),
            )
            api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
            api.user_agent = USER_AGENT
            stack.callback(api.close)
            bench = scenarios.Bench(
                options=options,
                workdir=workdir,
                kubeconfig=control_plane.kubeconfig,
                kubectl=kubectl,
                audit_log=audit.AuditLog(control_plane.audit_log),
                cloud=cloud,
                api=api,
            )
            results: dict[str, Any] = {
                "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
                "disclaimer": report.DISCLAIMER,
                "machine": system.machine(),
                "versions": system.versions(kubectl.json("version", timeout=30), control_plane.binaries),
                "options": options.to_json(),
                "fakeCloud": cloud.config(),
            }
            results["singleObject"] = {"rest": scenarios.single_object(bench, "rest")}
            if options.grpc:
                results["singleObject"]["grpc"] = scenarios.single_object(bench, "grpc")
            results["manyObjects"] = scenarios.many_objects(bench)
            results["operatorSettings"] = bench.operator_settings
            results["operatorDefaults"] = _operator_defaults()
        finished = True
        return results
    finally:
        if finished and not options.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"process logs kept in {workdir}", file=sys.stderr)


def _copy_if_exists(source: Path, target: Path) -> None:
    if source.exists():
        shutil.copyfile(source, target)


def _operator_defaults() -> dict[str, Any]:
    """The operator's settings that the benchmark leaves at their defaults (poll, retry, resync, limits)."""
    settings = RunSettings()
    cloud = settings.cloud
    return {
        "resyncSeconds": settings.resync_seconds,
        "resyncJitter": settings.resync_jitter,
        "retryBaseSeconds": settings.retry_base_seconds,
        "requestsPerSecond": cloud.requests_per_second,
        "maxConcurrency": cloud.max_concurrency,
        "operationPollInitialSeconds": cloud.operation_poll_initial_seconds,
        "operationPollCapSeconds": cloud.operation_poll_cap_seconds,
        "maxAttempts": cloud.max_attempts,
    }
