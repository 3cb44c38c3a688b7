"""`python -m benchmarks.failover [--objects 50] [--kills 10] [--replicas 3] [--out DIR]`: leader failover.

Several operator processes run with leader election against one fake cloud, each with a service account
of its own, so the fake's request log says which instance made each call. DesktopImages are applied in
batches, one batch per round, and in each round the leader is killed with SIGKILL at a random instant; the
killed process is started again (as a standby) once another instance leads. At the end every object must
be Ready with exactly one image.

Figures, all from the fake's request log: the calls split into terms (a run of calls by one instance); a
failover is the gap between the last call of one term and the first of the next (the standby must first
wait out the Lease), and is also given from the SIGKILL. A split brain would show as more terms than
leadership changes, or as terms that overlap.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

from benchmarks import manifests
from desktop_image_operator.api import GROUP, PLURAL, VERSION
from desktop_image_operator.commands.run import ENV_PREFIX
from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from desktop_image_operator_dev.devenv.stack import FakeCloudChild, Kubectl, OperatorChild, wait_until

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "crds" / "clouddesktop.yc.io_desktopimages.yaml"
MUTATING = frozenset(
    {
        "DesktopImageService.Copy",
        "DesktopImageService.CopyFromDesktop",
        "DesktopImageService.Update",
        "DesktopImageService.Delete",
    }
)
# Quick polls, and a short resync so a leader calls the cloud all the time (a failover is then measured
# from a call made just before the kill, not from an idle spell).
BUSY_SETTINGS = {"OPERATION_POLL_SECONDS": "0.2", "RETRY_BASE_SECONDS": "1", "RESYNC_SECONDS": "3"}
TAKEOVER_TIMEOUT = 60.0
# Room for every object's image (the fake's default quota is the cloud's, 8 images).
ROOMY_QUOTA = {"imageQuota": 1000, "imageSizeQuota": 1 << 50}


# -- the instances -------------------------------------------------------------------------------------------


class Replica:
    """One `run` process with leader election, its identity `name` and a service account of its own."""

    def __init__(
        self,
        workdir: Path,
        cloud: FakeCloudChild,
        *,
        kubeconfig: Path,
        namespace: str,
        name: str,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        response = cloud.http.post("/service-accounts", json={"name": name})
        response.raise_for_status()
        key = response.json()
        self.principal = str(key["service_account_id"])
        key_file = workdir / f"{name}-key.json"
        key_file.write_text(json.dumps(key))
        key_file.chmod(0o600)
        election = {"LEADER_ELECT": "true", "LEASE_NAMESPACE": namespace, "LEADER_IDENTITY": name}
        self.child = OperatorChild(
            workdir,
            cloud,
            kubeconfig=kubeconfig,
            settings={"NAMESPACE": namespace, **BUSY_SETTINGS, **election, **(settings or {})},
            log=workdir / f"{name}.log",
            overrides={ENV_PREFIX + "CREDENTIALS_FILE": str(key_file)},
        )

    def leading(self) -> bool:
        health = self.child.health()
        return bool(health and health.get("leader"))

    def running(self) -> bool:
        return self.child.process.poll() is None


@dataclass
class Replicas:
    members: list[Replica]

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.members)

    @property
    def principals(self) -> dict[str, str]:
        return {replica.principal: replica.name for replica in self.members}

    def leaders(self) -> list[Replica]:
        return [replica for replica in self.members if replica.running() and replica.leading()]

    def wait_leader(self, *, other_than: Replica | None = None, timeout: float = TAKEOVER_TIMEOUT) -> Replica:
        """The one leader (not `other_than`), once there is exactly one."""

        def one() -> Replica | None:
            found = self.leaders()
            return found[0] if len(found) == 1 and found[0] is not other_than else None

        leader: Replica = wait_until(one, timeout=timeout, interval=0.05, what="one leader")
        return leader

    def stop(self) -> None:
        for replica in self.members:
            replica.child.stop()


# -- what the request log shows ------------------------------------------------------------------------------


@dataclass
class Term:
    """A run of consecutive cloud calls by one instance."""

    instance: str
    first: float
    last: float
    calls: int = 0
    mutating: int = 0
    methods: Counter[str] = field(default_factory=Counter)


def call_time(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).timestamp()


def terms(entries: Sequence[dict[str, Any]], principals: dict[str, str]) -> list[Term]:
    """The calls of the given instances in time order, cut into terms wherever the caller changes."""
    found: list[Term] = []
    ours = [entry for entry in entries if entry.get("principal") in principals]
    for entry in sorted(ours, key=lambda entry: (call_time(entry), int(entry["seq"]))):
        who, at = principals[entry["principal"]], call_time(entry)
        if not found or found[-1].instance != who:
            found.append(Term(who, at, at))
        term = found[-1]
        term.last = at
        term.calls += 1
        term.mutating += entry["method"] in MUTATING
        term.methods[entry["method"]] += 1
    return found


def gaps(found: Sequence[Term]) -> list[float]:
    """Seconds from the last call of each term to the first call of the next."""
    return [after.first - before.last for before, after in itertools.pairwise(found)]


def calls_by_instance(entries: Sequence[dict[str, Any]], principals: dict[str, str]) -> dict[str, int]:
    counted = Counter(
        principals[entry["principal"]] for entry in entries if entry.get("principal") in principals
    )
    return {name: counted.get(name, 0) for name in principals.values()}


def lease_transitions(kubectl: Kubectl, namespace: str, name: str = "desktop-image-operator") -> int:
    lease = kubectl.json("get", "lease", "-n", namespace, name)
    return int(lease["spec"].get("leaseTransitions", 0))


def figures(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
        "min": round(min(values), 2),
    }


# -- the benchmark ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    objects: int
    kills: int
    replicas: int
    seed: int
    out: Path
    keep_workdir: bool


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover", description=__doc__)
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--keep-workdir", action="store_true")
    args = parser.parse_args(argv)
    return Options(args.objects, args.kills, args.replicas, args.seed, args.out, args.keep_workdir)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    workdir = Path(tempfile.mkdtemp(prefix="desktop-image-operator-failover-"))
    try:
        results = run(options, workdir)
    finally:
        if not options.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "failover.json").write_text(json.dumps(results, indent=2) + "\n")
    (options.out / "failover.md").write_text(render(results))
    print(render(results))
    return 0 if results["verdict"]["clean"] else 1


def run(options: Options, workdir: Path) -> dict[str, Any]:
    namespace = "failover"
    with ExitStack() as stack:
        control_plane = stack.enter_context(ControlPlane(with_controller_manager=False))
        kubectl = Kubectl(control_plane.kubeconfig)
        kubectl("apply", "-f", str(CRD_FILE))
        kubectl(
            "wait", "--for=condition=Established", "crd/desktopimages.clouddesktop.yc.io", "--timeout=60s"
        )
        kubectl("create", "namespace", namespace)
        cloud = FakeCloudChild(workdir, copy_seconds=5.0, operation_seconds=0.5)
        stack.callback(cloud.stop)
        cloud.config(**ROOMY_QUOTA)
        replicas = Replicas(
            [
                Replica(
                    workdir, cloud, kubeconfig=control_plane.kubeconfig, namespace=namespace, name=f"op-{i}"
                )
                for i in range(options.replicas)
            ]
        )
        stack.callback(replicas.stop)
        rounds = kill_rounds(options, kubectl, namespace, replicas, random.Random(options.seed))
        ready = wait_all_ready(control_plane.kubeconfig, namespace, options.objects)
        entries = cloud.requests()
        return report(
            options, entries, replicas, rounds, ready, cloud.images(), lease_transitions(kubectl, namespace)
        )


def kill_rounds(
    options: Options, kubectl: Kubectl, namespace: str, replicas: Replicas, rng: random.Random
) -> list[dict[str, Any]]:
    batches = [list(range(i, options.objects, options.kills)) for i in range(options.kills)]
    rounds = []
    for batch in batches:
        leader = replicas.wait_leader()
        items = [manifests.from_desktop(f"image-{i:03d}") for i in batch]
        kubectl("apply", "-n", namespace, "-f", "-", stdin=manifests.as_list(items))
        time.sleep(rng.uniform(1.0, 6.0))
        killed_at = time.time()
        leader.child.kill9()
        successor = replicas.wait_leader(other_than=leader)
        rounds.append({"killed": leader.name, "killedAt": killed_at, "successor": successor.name})
        leader.child.start()  # back as a standby, as its pod would restart
    return rounds


def wait_all_ready(kubeconfig: Path, namespace: str, count: int, timeout: float = 300.0) -> bool:
    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    custom = client.CustomObjectsApi(api)

    def all_ready() -> bool:
        found = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _request_timeout=30)
        items = found["items"]  # type: ignore[index]
        return len(items) == count and all(manifests.is_ready(item) for item in items)

    try:
        return bool(wait_until(all_ready, timeout=timeout, interval=1.0, what="every object Ready"))
    finally:
        api.close()


def report(
    options: Options,
    entries: list[dict[str, Any]],
    replicas: Replicas,
    rounds: list[dict[str, Any]],
    ready: bool,
    images: list[dict[str, Any]],
    transitions: int,
) -> dict[str, Any]:
    found = terms(entries, replicas.principals)
    since_kill = [after.first - kill["killedAt"] for kill, after in zip(rounds, found[1:], strict=False)]
    owners = Counter(image.get("labels", {}).get("clouddesktop-yc-io-owner-uid") for image in images)
    verdict = {
        "allReady": ready,
        "oneImagePerObject": len(images) == options.objects and all(n == 1 for n in owners.values()),
        "termsMatchLeaderships": len(found) == transitions + 1,
        "failoverWithin20s": bool(gaps(found)) and max(gaps(found)) <= 20.0,
    }
    verdict["clean"] = all(verdict.values())
    return {
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {k: v for k, v in vars(options).items() if k != "out"},
        "failoverSeconds": figures(gaps(found)),
        "killToFirstCallSeconds": figures(since_kill),
        "leaseTransitions": transitions,
        "terms": [{**vars(term), "methods": dict(term.methods)} for term in found],
        "callsByInstance": calls_by_instance(entries, replicas.principals),
        "rounds": rounds,
        "verdict": verdict,
    }


def render(results: dict[str, Any]) -> str:
    failover, since_kill = results["failoverSeconds"], results["killToFirstCallSeconds"]
    lines = [
        "# Failover benchmark",
        "",
        f"{results['options']['objects']} objects, {results['options']['kills']} SIGKILLs of the leader, "
        f"{results['options']['replicas']} replicas, default Lease durations (15 s / 10 s / 2 s), "
        f"seed {results['options']['seed']}.",
        "",
        "| figure | median | max | min |",
        "|---|---|---|---|",
        f"| last call of the old leader to first call of the new (s) | {failover.get('median')} "
        f"| {failover.get('max')} | {failover.get('min')} |",
        f"| SIGKILL to first call of the new leader (s) | {since_kill.get('median')} "
        f"| {since_kill.get('max')} | {since_kill.get('min')} |",
        "",
        f"Lease transitions: {results['leaseTransitions']}; "
        f"terms in the request log: {len(results['terms'])}.",
        "",
        "Calls by instance: "
        + ", ".join(f"{name} {count}" for name, count in sorted(results["callsByInstance"].items())),
        "",
        "Verdict: " + ", ".join(f"{key} {value}" for key, value in results["verdict"].items()),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
