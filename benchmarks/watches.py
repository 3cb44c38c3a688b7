"""`python -m benchmarks.watches [--secrets 12 100 400] [--out DIR]`: what a credentials Secret in use costs.

Each Secret in use is read once and then followed by a watch of its own (an asyncio task and a
connection; see `desktop_image_operator.kube`). For each count N, a fresh process logs in to a local
control plane, takes N Secrets into use through the operator's own `SecretCache`, and reports: the
resident memory before and after (so the cost of one watch), the tasks and sockets it then holds, the
Kubernetes reads made, how long after a change of one Secret the kept copy showed it, and how many reads
a second use of all N needed (none while the watches run). Writes `watches.md` and `watches.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from benchmarks import system
from desktop_image_operator.kube import KubeApi, SecretCache, SecretWatches, kubeconfig_login
from desktop_image_operator_dev.devenv.controlplane import ControlPlane

NAMESPACE = "watch-bench"
CHANGE_TIMEOUT = 30.0
SETTLE_SECONDS = 1.0


def _core(kubeconfig: Path) -> client.CoreV1Api:
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return client.CoreV1Api(api)


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor, closed by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


async def measure(kubeconfig: Path, count: int) -> dict[str, Any]:
    """In the child: take `count` Secrets into use and measure what that holds."""
    core = _core(kubeconfig)
    reads: list[float] = []
    async with KubeApi(kubeconfig_login(kubeconfig)) as kube:
        await kube.namespace_uid("kube-system")  # the client's connection and TLS set up before the baseline
        cache = SecretCache(
            kube, SecretWatches(kube), idle_seconds=3600.0, on_read=lambda: reads.append(time.monotonic())
        )
        tasks_before, sockets_before = len(asyncio.all_tasks()), _sockets()
        await asyncio.sleep(SETTLE_SECONDS)
        rss_before = _rss_kb()
        for n in range(count):
            await cache.get(NAMESPACE, f"key-{n}")
        await asyncio.sleep(SETTLE_SECONDS)  # every watch opened
        rss_after = _rss_kb()
        first_use_reads = len(reads)
        for n in range(count):
            await cache.get(NAMESPACE, f"key-{n}")
        second_use_reads = len(reads) - first_use_reads
        started = time.monotonic()
        body = {"data": {"key.json": base64.b64encode(b"rotated").decode()}}
        await asyncio.to_thread(core.patch_namespaced_secret, "key-0", NAMESPACE, body)
        while (await cache.get(NAMESPACE, "key-0")).data.get("key.json") != b"rotated":
            if time.monotonic() - started > CHANGE_TIMEOUT:
                raise TimeoutError("the change never reached the kept copy")
            await asyncio.sleep(0.01)
        change_seconds = time.monotonic() - started
        result = {
            "secrets": count,
            "watched": cache.watched,
            "reads": first_use_reads,
            "second_use_reads": second_use_reads,
            "rss_before_kb": rss_before,
            "rss_after_kb": rss_after,
            "kb_per_watch": round((rss_after - rss_before) / max(1, count), 1),
            "tasks_added": len(asyncio.all_tasks()) - tasks_before,
            "sockets_added": _sockets() - sockets_before,
            "change_seen_after_seconds": round(change_seconds, 3),
        }
        cache.close()
        return result


def _child(kubeconfig: Path, count: int) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.watches", "--child", str(count), "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the measurement of {count} Secrets failed:\n{completed.stderr[-4000:]}")
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


def create_secrets(kubeconfig: Path, count: int) -> None:
    core = _core(kubeconfig)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    for n in range(count):
        data = {"key.json": base64.b64encode(f"key material {n}".encode()).decode()}
        core.create_namespaced_secret(
            NAMESPACE, client.V1Secret(metadata=client.V1ObjectMeta(name=f"key-{n}"), data=data)
        )


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Credentials Secrets in use: one watch each",
        "",
        "> One run on the machine below, against a local control plane on loopback; not a guarantee.",
        "",
        "| Secrets in use | reads | reads on a second use | RSS added | per watch | tasks added "
        "| sockets added | a change seen after |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in results["runs"]:
        added = (run["rss_after_kb"] - run["rss_before_kb"]) / 1024
        lines.append(
            f"| {run['secrets']} | {run['reads']} | {run['second_use_reads']} | {added:.1f} MB "
            f"| {run['kb_per_watch']} KB | {run['tasks_added']} | {run['sockets_added']} "
            f"| {run['change_seen_after_seconds']} s |"
        )
    machine = results["machine"]
    lines += ["", f"Machine: {json.dumps(machine, sort_keys=True)}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.watches", description=__doc__)
    parser.add_argument("--secrets", type=int, nargs="+", default=[12, 100, 400])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(asyncio.run(measure(args.kubeconfig, args.child))))
        return 0
    with ControlPlane(with_controller_manager=False) as cp:
        create_secrets(cp.kubeconfig, max(args.secrets))
        runs = [_child(cp.kubeconfig, count) for count in args.secrets]
    results = {"runs": runs, "machine": system.machine()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "watches.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "watches.md").write_text(render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
