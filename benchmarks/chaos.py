"""Chaos benchmark: the operator killed with SIGKILL at random instants while objects converge and go.

`python -m benchmarks.chaos` (or `make bench-chaos`) starts the local control plane, the fake cloud and the
operator, applies N DesktopImages (both sources, distinct names) in batches, one batch each time the operator
comes up, and kills it with SIGKILL a random while after each batch and restarts it at once; it waits
(bounded) until all are Ready, then deletes them the same way, batch by batch between kills, and waits
(bounded) until all are gone. It runs that once per case of a matrix: the fake honouring
idempotency keys and ignoring them, each with transient faults (UNAVAILABLE and INTERNAL on the
DesktopImageService and OperationService methods) and optionally without. With `--strict-fake` the fake
refuses copies carrying labels or a description, as a cloud serving only the published schema would: the
operator must then label its images by Update and stay crash-safe without labels on the copy.

It judges only by what can be seen from outside: the objects' Ready conditions, the cloud's images (each
carries its object's UID in the owner label) and the fake's request and operation logs. It writes
`reports/chaos.md` and `reports/chaos.json` and exits non-zero when a case has a duplicate image, a leaked
image, a stuck object or could not finish.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from kubernetes import client, config

from benchmarks import manifests, system
from benchmarks.scenarios import tally_calls
from benchmarks.stack import FakeCloud, Operator
from desktop_image_operator.api import CRD_NAME, GROUP, PLURAL, VERSION
from desktop_image_operator.api.constants import OWNER_UID_LABEL
from desktop_image_operator_dev.devenv.binaries import Binaries
from desktop_image_operator_dev.devenv.controlplane import ControlPlane
from desktop_image_operator_dev.devenv.stack import Kubectl, StackError, WaitTimeout, wait_until
from desktop_image_operator_dev.fakecloud import methods, seeds

T = TypeVar("T")

CRD_FILE = system.REPO / "crds" / "clouddesktop.yc.io_desktopimages.yaml"
USER_AGENT = "desktop-image-operator-chaos"
NA = "n/a"  # a figure of a case that did not get that far
COPY_METHODS = (methods.COPY, methods.COPY_FROM_DESKTOP)
COPY_DESCRIPTION = "Copy desktop image"  # the fake's copy operations (from an image or a desktop)
FAULTY_SERVICES = ("DesktopImageService.*", "OperationService.*")
# Where the objects' images go: compute-image copies alternate between two folders, desktop copies between
# three stopped desktops (two folders); all of one cloud, whose quota the benchmark raises.
COMPUTE_FOLDERS = (seeds.FOLDER_ID, seeds.SECOND_FOLDER_ID)
DESKTOPS = (seeds.STOPPED_DESKTOP_ID, seeds.SECOND_STOPPED_DESKTOP_ID, seeds.SECOND_FOLDER_DESKTOP_ID)
# Quick polls and retries (as the integration tests use), and limits that let N objects move at once.
OPERATOR_SETTINGS = {
    "OPERATION_POLL_SECONDS": "0.2",
    "RETRY_BASE_SECONDS": "1",
    "REQUESTS_PER_SECOND": "100",
    "MAX_CONCURRENCY": "16",
}
# The verdict's figures, each of which must be zero.
VERDICT_FIGURES = {
    "duplicates": "objects with more than one image",
    "leakedAfterDeletion": "images left after all objects were deleted",
    "orphansAtConvergence": "images without an object at convergence",
    "stuckConverging": "objects not Ready at the end of convergence",
    "stuckDeleting": "objects not gone at the end of deletion",
}
# How each phase's kills are described: what the phase does, to what, and what is still to happen.
KILL_COLUMNS = {
    "converge": ("converging", "applied", "not Ready"),
    "delete": ("deleting", "deleted", "not gone"),
}
DISCLAIMER = (
    "Kill instants are random (the seed below reproduces the schedule, not the timing of the processes); "
    "call counts and timings are of one run on the machine described below, not guarantees."
)


@dataclass(frozen=True)
class ChaosOptions:
    objects: int = 50
    kills_converging: int = 15
    kills_deleting: int = 15
    seed: int = 0
    fault_rate: float = 0.2
    # Run each idempotency mode without faults too (4 cases instead of 2).
    without_faults: bool = False
    # Which idempotency modes to run: "both", "honoured" or "ignored".
    keys: str = "both"
    copy_seconds: float = 2.0
    operation_seconds: float = 1.5
    # The fake refuses copies carrying fields the published API pages do not list (labels, description).
    strict_fake: bool = False
    # Each kill comes this long (uniformly drawn) after the batch of objects applied or deleted when the
    # operator last came up.
    min_uptime: float = 0.5
    max_uptime: float = 4.0
    converge_timeout: float = 240.0
    delete_timeout: float = 240.0
    poll_seconds: float = 1.0
    settle_seconds: float = 1.0
    out: Path = Path("reports")
    keep_workdir: bool = False

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["out"] = str(self.out)
        return values


@dataclass(frozen=True)
class Case:
    honour_keys: bool
    fault_rate: float

    @property
    def label(self) -> str:
        keys = "keys-honoured" if self.honour_keys else "keys-ignored"
        return f"{keys}-faults-{round(self.fault_rate * 100)}"

    @property
    def prefix(self) -> str:
        """Object names of this case: short and distinct from every other case's."""
        return f"chaos-{'h' if self.honour_keys else 'i'}{round(self.fault_rate * 100)}"


def cases(options: ChaosOptions) -> list[Case]:
    modes = {"both": (True, False), "honoured": (True,), "ignored": (False,)}[options.keys]
    rates = (
        (options.fault_rate, 0.0) if options.without_faults and options.fault_rate else (options.fault_rate,)
    )
    return [Case(honour, rate) for honour in modes for rate in rates]


@dataclass
class Harness:
    """The running pieces a case drives: the control plane (through kubectl and the API), the fake cloud."""

    options: ChaosOptions
    workdir: Path
    kubeconfig: Path
    kubectl: Kubectl
    api: client.ApiClient
    cloud: FakeCloud
    binaries: Binaries | None

    def objects(self, namespace: str) -> list[dict[str, Any]]:
        custom = client.CustomObjectsApi(self.api)
        found = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _request_timeout=60)
        return cast(list[dict[str, Any]], found["items"])  # type: ignore[index]

    def ready_count(self, namespace: str) -> int:
        return sum(1 for item in self.objects(namespace) if manifests.is_ready(item))

    def copy_operations(self) -> list[dict[str, Any]]:
        response = self.cloud.http.get("/operations")
        response.raise_for_status()
        found = response.json()["operations"]
        return [op for op in found if str(op.get("description", "")).startswith(COPY_DESCRIPTION)]


# -- command line ------------------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None = None) -> ChaosOptions:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--objects", type=int, default=50, help="DesktopImages per case (default 50)")
    parser.add_argument("--kills", type=int, default=30, help="kills per case, half of them while converging")
    parser.add_argument("--seed", type=int, help="seed of the kill schedule and the faults (default random)")
    parser.add_argument("--fault-rate", type=float, default=0.2, help="transient fault rate (default 0.2)")
    parser.add_argument("--without-faults", action="store_true", help="also run each case without faults")
    parser.add_argument(
        "--keys", choices=("both", "honoured", "ignored"), default="both", help="idempotency modes to run"
    )
    parser.add_argument("--copy-seconds", type=float, default=2.0, help="the fake's copy time (default 2)")
    parser.add_argument(
        "--delete-seconds", type=float, default=1.5, help="the fake's delete operation time (default 1.5)"
    )
    parser.add_argument(
        "--strict-fake",
        action="store_true",
        help="the fake refuses copies carrying labels or a description (the published schema only)",
    )
    parser.add_argument("--min-uptime", type=float, default=0.5, help="shortest life before a kill (s)")
    parser.add_argument("--max-uptime", type=float, default=4.0, help="longest life before a kill (s)")
    parser.add_argument("--timeout", type=float, default=240.0, help="bound on each phase's final wait (s)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="report directory")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    if args.objects < 1 or args.kills < 0 or not 0 <= args.fault_rate < 1:
        parser.error("--objects must be at least 1, --kills at least 0, --fault-rate in [0, 1)")
    if not 0 < args.min_uptime <= args.max_uptime:
        parser.error("need 0 < --min-uptime <= --max-uptime")
    return ChaosOptions(
        objects=args.objects,
        kills_converging=(args.kills + 1) // 2,
        kills_deleting=args.kills // 2,
        seed=args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32),
        fault_rate=args.fault_rate,
        without_faults=args.without_faults,
        keys=args.keys,
        copy_seconds=args.copy_seconds,
        operation_seconds=args.delete_seconds,
        strict_fake=args.strict_fake,
        min_uptime=args.min_uptime,
        max_uptime=args.max_uptime,
        converge_timeout=args.timeout,
        delete_timeout=args.timeout,
        out=args.out,
        keep_workdir=args.keep_workdir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    print(f"chaos benchmark, seed {options.seed}", flush=True)
    started = time.monotonic()
    results = run(options)
    results["benchmarkSeconds"] = round(time.monotonic() - started, 1)
    markdown, data = write(results, options.out)
    print(summary(results))
    print(f"wrote {markdown} and {data}")
    return 0 if results["clean"] else 1


# -- the run -----------------------------------------------------------------------------------------------


def run(options: ChaosOptions) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="desktop-image-operator-chaos-"))
    results: dict[str, Any] = {}
    try:
        with ExitStack() as stack:
            harness = _start(options, workdir, stack)
            results = _header(options, harness)
            results["cases"] = [run_case(harness, case) for case in cases(options)]
        results["clean"] = all(case["verdict"]["clean"] for case in results["cases"])
        return results
    finally:
        if results.get("clean") and not options.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"process logs kept in {workdir}", file=sys.stderr)


def _start(options: ChaosOptions, workdir: Path, stack: ExitStack) -> Harness:
    control_plane = stack.enter_context(ControlPlane(with_controller_manager=False))
    kubectl = Kubectl(control_plane.kubeconfig)
    kubectl("apply", "-f", str(CRD_FILE))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s", timeout=70)
    cloud = FakeCloud(workdir, copy_seconds=options.copy_seconds, operation_seconds=options.operation_seconds)
    stack.callback(cloud.stop)
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    api.user_agent = USER_AGENT
    stack.callback(api.close)
    return Harness(options, workdir, control_plane.kubeconfig, kubectl, api, cloud, control_plane.binaries)


def _header(options: ChaosOptions, harness: Harness) -> dict[str, Any]:
    return {
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "seed": options.seed,
        "machine": system.machine(),
        "versions": system.versions(harness.kubectl.json("version", timeout=30), harness.binaries),
        "options": options.to_json(),
        "operatorSettings": dict(OPERATOR_SETTINGS),
    }


def run_case(harness: Harness, case: Case) -> dict[str, Any]:
    """One case on a fresh fake cloud and namespace: converge under kills, delete under kills, judge."""
    options = harness.options
    rng = random.Random(f"{options.seed}/{case.label}")  # a case's draws do not depend on the others
    namespace = case.prefix
    _prepare_cloud(harness, case, rng)
    harness.kubectl("create", "namespace", namespace)
    result: dict[str, Any] = {
        "label": case.label,
        "honourKeys": case.honour_keys,
        "faultRate": case.fault_rate,
        "objects": options.objects,
    }
    result["fakeCloud"] = harness.cloud.config()
    print(f"[{case.label}] {options.objects} objects, namespace {namespace}", flush=True)
    try:
        operator = Operator(
            harness.workdir, case.label, kubeconfig=harness.kubeconfig, cloud=harness.cloud,
            namespace=namespace, settings=OPERATOR_SETTINGS,
        )  # fmt: skip
    except StackError as exc:
        result["error"] = str(exc)
        result["verdict"] = {"clean": False}
        return result
    try:
        _phases(harness, case, operator, rng, namespace, result)
    except StackError as exc:
        result["error"] = str(exc)
    finally:
        operator.stop()
    result["verdict"] = verdict(result)
    print(f"[{case.label}] {case_line(result)}", flush=True)
    return result


def _prepare_cloud(harness: Harness, case: Case, rng: random.Random) -> None:
    cloud, count = harness.cloud, harness.options.objects
    cloud.reset()
    cloud.config(
        honorIdempotency=case.honour_keys,
        strictCopyFields=harness.options.strict_fake,
        copySeconds=harness.options.copy_seconds,
        operationSeconds=harness.options.operation_seconds,
        # Room for every object and for every duplicate a broken operator could make, so none is refused.
        imageQuota=count * 10 + 100,
        imageSizeQuota=1 << 60,
        requestLogSize=max(100_000, count * 2000),
    )
    for rule in fault_rules(case.fault_rate, rng):
        cloud.fault(**rule)


def fault_rules(rate: float, rng: random.Random) -> list[dict[str, Any]]:
    """UNAVAILABLE and INTERNAL, each on half of the faulty calls, on every method of the faulty services.

    The fake tries every matching rule and the first that fires decides, so the second rule's rate is
    raised to make both outcomes equally likely and the total `rate`."""
    if not rate:
        return []
    half = rate / 2
    rules: list[dict[str, Any]] = []
    for service in FAULTY_SERVICES:
        rules.append({"method": service, "code": "UNAVAILABLE", "rate": half, "seed": rng.randrange(1 << 31)})
        second = {"method": service, "code": "INTERNAL", "rate": half / (1 - half)}
        rules.append({**second, "seed": rng.randrange(1 << 31)})
    return rules


def _phases(
    harness: Harness,
    case: Case,
    operator: Operator,
    rng: random.Random,
    namespace: str,
    result: dict[str, Any],
) -> None:
    options = harness.options
    converge_uptimes = _uptimes(options, rng, options.kills_converging)
    delete_uptimes = _uptimes(options, rng, options.kills_deleting)
    objects = _manifests(case, options.objects)
    result["sources"] = dict(Counter(next(iter(o["spec"]["source"])) for o in objects))
    result["converge"] = converge(harness, operator, namespace, objects, converge_uptimes)
    print(f"[{case.label}] converged: {_phase_line(result['converge'])}", flush=True)
    result["delete"] = delete(harness, operator, namespace, delete_uptimes)
    print(f"[{case.label}] deleted: {_phase_line(result['delete'])}", flush=True)
    result["copies"] = copies(harness, result["converge"]["uids"])


def _uptimes(options: ChaosOptions, rng: random.Random, count: int) -> list[float]:
    return [round(rng.uniform(options.min_uptime, options.max_uptime), 2) for _ in range(count)]


def _manifests(case: Case, count: int) -> list[dict[str, Any]]:
    """Even indices copy the Compute image, odd ones a stopped desktop; folders and desktops rotate."""
    found: list[dict[str, Any]] = []
    for index in range(count):
        name = f"{case.prefix}-{index:03d}"
        if index % 2 == 0:
            manifest = manifests.from_compute_image(name)
            manifest["spec"]["folderId"] = COMPUTE_FOLDERS[(index // 2) % len(COMPUTE_FOLDERS)]
        else:
            manifest = manifests.from_desktop(name)
            manifest["spec"]["source"]["desktopId"] = DESKTOPS[(index // 2) % len(DESKTOPS)]
        found.append(manifest)
    return found


# -- phases ------------------------------------------------------------------------------------------------


def converge(
    harness: Harness,
    operator: Operator,
    namespace: str,
    objects: list[dict[str, Any]],
    uptimes: list[float],
) -> dict[str, Any]:
    """Apply the objects in batches, one batch per kill, so every kill can catch copies in flight; then wait
    (bounded) until all are Ready."""
    options = harness.options
    mark = harness.cloud.mark()
    started = time.monotonic()

    def apply(batch: list[dict[str, Any]]) -> None:
        harness.kubectl("apply", "-n", namespace, "-f", "-", stdin=manifests.as_list(batch), timeout=120)

    def not_ready() -> int:
        return len(objects) - harness.ready_count(namespace)

    kills = kill_on_schedule(operator, uptimes, objects, apply, not_ready, started)
    killed = time.monotonic() - started

    def all_ready() -> bool:
        operator.check()
        return not_ready() == 0

    reached = _wait(all_ready, options.converge_timeout, options.poll_seconds)
    wall = time.monotonic() - started
    time.sleep(options.settle_seconds)  # calls that trail the last Ready are counted
    items = harness.objects(namespace)
    images = harness.cloud.images()
    uids = {item["metadata"]["uid"]: item["metadata"]["name"] for item in items}
    return {
        "wallSeconds": round(wall, 1),
        "killsWallSeconds": round(killed, 1),
        "reached": reached,
        "kills": kills,
        "stuck": sorted(item["metadata"]["name"] for item in items if not manifests.is_ready(item)),
        "stuckConditions": {
            item["metadata"]["name"]: ready_condition(item) for item in items if not manifests.is_ready(item)
        },
        "missing": len(objects) - len(items),
        "uids": uids,
        "duplicates": duplicates(images, uids),
        "orphans": [_image_summary(image) for image in images if owner(image) not in uids],
        "imagesAtEnd": len(images),
        "cloudCalls": _calls(harness, mark, len(objects)),
    }


def delete(harness: Harness, operator: Operator, namespace: str, uptimes: list[float]) -> dict[str, Any]:
    """Delete the objects in batches, one batch per kill, then wait (bounded) until all are gone; every image
    left in the cloud then is a leak."""
    options = harness.options
    names = sorted(item["metadata"]["name"] for item in harness.objects(namespace))
    mark = harness.cloud.mark()
    started = time.monotonic()

    def delete_batch(batch: list[str]) -> None:
        harness.kubectl("delete", "-n", namespace, "desktopimages", *batch, "--wait=false", timeout=120)

    def remaining() -> int:
        return len(harness.objects(namespace))

    kills = kill_on_schedule(operator, uptimes, names, delete_batch, remaining, started)
    killed = time.monotonic() - started

    def all_gone() -> bool:
        operator.check()
        return remaining() == 0

    reached = _wait(all_gone, options.delete_timeout, options.poll_seconds)
    wall = time.monotonic() - started
    time.sleep(options.settle_seconds)
    left = harness.objects(namespace)
    return {
        "wallSeconds": round(wall, 1),
        "killsWallSeconds": round(killed, 1),
        "reached": reached,
        "kills": kills,
        "stuck": sorted(item["metadata"]["name"] for item in left),
        "stuckConditions": {item["metadata"]["name"]: ready_condition(item) for item in left},
        "leaked": [_image_summary(image) for image in harness.cloud.images()],
        "cloudCalls": _calls(harness, mark, max(len(names), 1)),
    }


def kill_on_schedule(
    operator: Operator,
    uptimes: list[float],
    items: list[T],
    act: Callable[[list[T]], None],
    undone: Callable[[], int],
    started: float,
) -> list[dict[str, Any]]:
    """Split `items` into one batch per planned uptime; for each: `act` on the batch, let the operator live
    that long, SIGKILL it, note the work it left (`undone()` counts objects not yet where the phase wants
    them: the count cannot move while it is dead), and start it again at once. Without kills, `act` on all."""
    batches = split(items, max(len(uptimes), 1))
    kills: list[dict[str, Any]] = []
    acted = 0
    schedule: list[float | None] = [*uptimes] or [None]
    for batch, uptime in zip(batches, schedule, strict=True):
        if batch:
            act(batch)
            acted += len(batch)
        if uptime is None:
            break
        time.sleep(uptime)
        operator.check()
        operator.kill9()
        at = time.monotonic() - started
        # Objects not yet acted on are not work in flight.
        pending = undone() - (len(items) - acted)
        kills.append({"atSeconds": round(at, 2), "uptimeSeconds": uptime, "acted": acted, "pending": pending})
        restart = time.monotonic()
        operator.start()
        kills[-1]["restartSeconds"] = round(time.monotonic() - restart, 2)
    return kills


def split(items: list[T], parts: int) -> list[list[T]]:
    """`parts` consecutive batches whose sizes differ by at most one (some empty when items are few)."""
    size, extra = divmod(len(items), parts)
    bounds = [index * size + min(index, extra) for index in range(parts + 1)]
    return [items[bounds[index] : bounds[index + 1]] for index in range(parts)]


def _wait(predicate: Callable[[], bool], timeout: float, interval: float) -> bool:
    try:
        wait_until(predicate, timeout=timeout, interval=interval)
    except WaitTimeout:
        return False
    return True


def _calls(harness: Harness, mark: int, objects: int) -> dict[str, Any]:
    """The phase's cloud calls by method, in total and per object, and how many the fake failed on purpose."""
    entries = harness.cloud.calls_since(mark)
    tally = tally_calls(entries)
    tally["perObject"] = {method: round(n / objects, 2) for method, n in tally["byMethod"].items()}
    tally["perObject"]["total"] = round(tally["total"] / objects, 2)
    tally["injectedFaults"] = sum(1 for entry in entries if entry.get("fault") == "error")
    return tally


# -- judging -----------------------------------------------------------------------------------------------


def owner(image: dict[str, Any]) -> str | None:
    return cast(str | None, (image.get("labels") or {}).get(OWNER_UID_LABEL))


def duplicates(images: list[dict[str, Any]], uids: dict[str, str]) -> dict[str, list[str]]:
    """Objects (by name) with more than one cloud image carrying their UID, and those images' ids."""
    by_owner: dict[str, list[str]] = {}
    for image in images:
        uid = owner(image)
        if uid in uids:
            by_owner.setdefault(uids[uid], []).append(str(image["id"]))
    return {name: sorted(ids) for name, ids in sorted(by_owner.items()) if len(ids) > 1}


def copies(harness: Harness, uids: dict[str, str]) -> dict[str, Any]:
    """Copy operations that produced an image, per object (from the operations' answers, which carry the
    image's labels): an object copied twice shows here even if the operator removed the spare since."""
    per_owner: Counter[str] = Counter()
    unfinished = 0
    for operation in harness.copy_operations():
        response = operation.get("response") or {}
        uid = owner(response)
        if uid is not None:
            per_owner[uid] += 1
        elif not operation.get("done"):
            unfinished += 1
    counts = [per_owner.get(uid, 0) for uid in uids]
    return {
        "imagesCopied": sum(per_owner.values()),
        "perObjectMax": max(counts, default=0),
        "perObjectMean": round(sum(counts) / len(counts), 2) if counts else 0.0,
        "objectsCopiedMoreThanOnce": sorted(uids[uid] for uid in uids if per_owner.get(uid, 0) > 1),
        "objectsNeverCopied": sorted(uids[uid] for uid in uids if per_owner.get(uid, 0) == 0),
        "unfinishedOperations": unfinished,
    }


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    converged, deleted = result.get("converge", {}), result.get("delete", {})
    figures = {
        "duplicates": len(converged.get("duplicates", {})),
        "orphansAtConvergence": len(converged.get("orphans", [])),
        "leakedAfterDeletion": len(deleted.get("leaked", [])),
        "stuckConverging": len(converged.get("stuck", [])) + converged.get("missing", 0),
        "stuckDeleting": len(deleted.get("stuck", [])),
    }
    finished = "error" not in result and bool(converged) and bool(deleted)
    return {**figures, "finished": finished, "clean": finished and not any(figures.values())}


def ready_condition(item: dict[str, Any]) -> str:
    """An object's Ready condition in short, to tell why it is stuck."""
    for condition in (item.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            text = f"{condition.get('status')} {condition.get('reason')}: {condition.get('message', '')}"
            return text[:300]
    return "no Ready condition"


def _image_summary(image: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": image.get("id"),
        "name": image.get("name"),
        "status": image.get("status"),
        "owner": owner(image),
    }


# -- report ------------------------------------------------------------------------------------------------


def write(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "chaos.json"
    data.write_text(json.dumps(results, indent=2) + "\n")
    markdown = out / "chaos.md"
    markdown.write_text(render(results))
    return markdown, data


def summary(results: dict[str, Any]) -> str:
    lines = [f"seed {results['seed']}"]
    lines += [f"{case['label']}: {case_line(case)}" for case in results["cases"]]
    lines.append("clean" if results["clean"] else "NOT CLEAN: see the report")
    return "\n".join(lines)


def case_line(case: dict[str, Any]) -> str:
    v = case["verdict"]
    if not v.get("finished"):
        return "did not finish: " + str(case.get("error", "unknown error")).splitlines()[0]
    return (
        f"duplicates {v['duplicates']}, leaked {v['leakedAfterDeletion']}, "
        f"orphans {v['orphansAtConvergence']}, "
        f"stuck {v['stuckConverging']} converging / {v['stuckDeleting']} deleting; "
        f"converge {case['converge']['wallSeconds']:g} s, delete {case['delete']['wallSeconds']:g} s"
    )


def _phase_line(phase: dict[str, Any]) -> str:
    return (
        f"{len(phase['kills'])} kills, {phase['wallSeconds']:g} s, stuck {len(phase['stuck'])}, "
        f"{phase['cloudCalls']['total']} cloud calls"
    )


def render(results: dict[str, Any]) -> str:
    options = results["options"]
    lines = ["# DesktopImage operator: chaos benchmark", "", f"> {DISCLAIMER}", ""]
    lines += [
        f"Generated {results['generatedAt']}, seed **{results['seed']}**, the whole run took "
        f"{results.get('benchmarkSeconds', 0):.0f} s. Verdict: "
        + ("**clean**." if results["clean"] else "**not clean** (see below)."),
        "",
        f"Per case: {options['objects']} DesktopImages (every other one from the Compute image, the rest "
        "from stopped desktops; distinct names) are applied, then deleted, in batches: one batch as soon as "
        f"the operator serves, then a SIGKILL {options['min_uptime']:g} to {options['max_uptime']:g} s later "
        "(uniform, seeded), a restart at once (done when its liveness probe answers), the next batch, and so "
        f"on: {options['kills_converging']} kills while converging, {options['kills_deleting']} while "
        "deleting, each able to catch copies or deletions in flight. After the kills each phase waits up to "
        f"{options['converge_timeout']:g} s for all Ready / "
        f"all gone. The fake's copy takes {options['copy_seconds']:g} s, its delete "
        f"{options['operation_seconds']:g} s. Transient faults: UNAVAILABLE and INTERNAL in equal parts on "
        "every DesktopImageService and OperationService method.",
        "",
    ]
    lines += _verdict_table(results["cases"])
    lines += _calls_table(results["cases"], "converge", "Cloud calls per object while converging")
    lines += _calls_table(results["cases"], "delete", "Cloud calls per object while deleting")
    for case in results["cases"]:
        lines += _case_details(case)
    lines += _environment(results)
    return "\n".join(lines).rstrip() + "\n"


def _verdict_table(cases_: list[dict[str, Any]]) -> list[str]:
    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("fault rate", lambda c: f"{c['faultRate']:g}"),
        *((f"**{label}**", _verdict_figure(key)) for key, label in VERDICT_FIGURES.items()),
        ("kills converging / deleting", _kills),
        ("of them with work in flight (objects not yet Ready / gone)", _kills_in_flight),
        ("converge wall time, incl. kills (s)", lambda c: _get(c, "converge", "wallSeconds")),
        ("delete wall time, incl. kills (s)", lambda c: _get(c, "delete", "wallSeconds")),
        ("copies that made an image, per object: mean / max", _copies),
        ("copy calls per object (all answers, both phases)", _copy_calls),
        ("faults injected (converge + delete)", _faults),
        ("finished", lambda c: "yes" if c["verdict"].get("finished") else "**no**"),
    ]
    lines = ["## Verdict", "", "| figure | " + " | ".join(c["label"] for c in cases_) + " |"]
    lines.append("|---|" + "---:|" * len(cases_))
    lines += [f"| {name} | " + " | ".join(str(get(c)) for c in cases_) + " |" for name, get in rows]
    return [*lines, ""]


def _verdict_figure(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda case: case["verdict"].get(key, NA)


def _calls_table(cases_: list[dict[str, Any]], phase: str, title: str) -> list[str]:
    done = [c for c in cases_ if phase in c]
    if not done:
        return []
    methods_ = sorted({m for c in done for m in c[phase]["cloudCalls"]["perObject"] if m != "total"})
    lines = [
        f"## {title}",
        "",
        "Calls over all objects of the case (both sources), failed answers included; token calls apart.",
        "",
    ]
    lines.append("| method | " + " | ".join(c["label"] for c in done) + " |")
    lines.append("|---|" + "---:|" * len(done))
    for method in [*methods_, "total"]:
        values = [c[phase]["cloudCalls"]["perObject"].get(method, 0) for c in done]
        lines.append(f"| {method} | " + " | ".join(f"{v:g}" for v in values) + " |")
    tokens = [str(c[phase]["cloudCalls"]["tokenCalls"]) for c in done]
    lines.append("| token calls (in all) | " + " | ".join(tokens) + " |")
    return [*lines, ""]


def _case_details(case: dict[str, Any]) -> list[str]:
    lines = [f"## {case['label']}", ""]
    if "error" in case:
        lines += ["Did not finish:", "", "```", str(case["error"])[-3000:], "```", ""]
    for phase, (verb, acted, pending) in KILL_COLUMNS.items():
        kills = case.get(phase, {}).get("kills", [])
        listed = ", ".join(
            f"{k['atSeconds']:g}/{k['uptimeSeconds']:g}/{k['acted']}/{k['pending']}/{k['restartSeconds']:g}"
            for k in kills
        )
        lines.append(
            f"Kills while {verb} (s since the phase began / uptime s / objects {acted} so far / of them "
            f"{pending} / restart s): {listed or 'none'}."
        )
        lines.append("")
    lines += _findings(case)
    return lines


def _findings(case: dict[str, Any]) -> list[str]:
    converged, deleted = case.get("converge", {}), case.get("delete", {})
    lines: list[str] = []
    for name, ids in converged.get("duplicates", {}).items():
        lines.append(f"- duplicate: {name} has images {', '.join(ids)}")
    for image in converged.get("orphans", []):
        lines.append(f"- image without an object at convergence: {json.dumps(image)}")
    for name, condition in converged.get("stuckConditions", {}).items():
        lines.append(f"- not Ready at the end of convergence: {name} (Ready {condition})")
    for name, condition in deleted.get("stuckConditions", {}).items():
        lines.append(f"- not gone at the end of deletion: {name} (Ready {condition})")
    for image in deleted.get("leaked", []):
        lines.append(f"- leaked image: {json.dumps(image)}")
    copied = case.get("copies", {})
    if copied.get("objectsCopiedMoreThanOnce"):
        lines.append(f"- copied more than once: {', '.join(copied['objectsCopiedMoreThanOnce'])}")
    return [*lines, ""] if lines else ["No findings.", ""]


def _environment(results: dict[str, Any]) -> list[str]:
    machine, versions = results["machine"], results["versions"]
    lines = ["## Machine, versions, settings", ""]
    lines += [
        f"{machine['nproc']} CPUs ({machine.get('cpuModel') or 'unknown model'}), shared by etcd, the API "
        f"server, the fake cloud, the operator and kubectl; Python {machine['python']}; "
        f"operator {versions.get('desktop-image-operator')}, kopf {versions.get('kopf')}, "
        f"kube-apiserver {versions.get('kubeApiserver')}, commit {versions.get('gitCommit')}"
        + (" (with uncommitted changes)" if versions.get("gitDirty") else "")
        + ".",
        "",
        "Operator settings (`DESKTOP_IMAGE_OPERATOR_<NAME>`; endpoints omitted): "
        + ", ".join(f"`{k}={v}`" for k, v in results["operatorSettings"].items())
        + ".",
        "",
        "Options: " + ", ".join(f"`{k}={v}`" for k, v in results["options"].items()) + ".",
        "",
    ]
    return lines


def _get(case: dict[str, Any], phase: str, key: str) -> Any:
    return case.get(phase, {}).get(key, NA)


def _kills(case: dict[str, Any]) -> str:
    return (
        f"{len(case.get('converge', {}).get('kills', []))} / {len(case.get('delete', {}).get('kills', []))}"
    )


def _kills_in_flight(case: dict[str, Any]) -> str:
    counts = [sum(1 for k in case.get(p, {}).get("kills", []) if k["pending"]) for p in KILL_COLUMNS]
    return " / ".join(str(n) for n in counts)


def _copies(case: dict[str, Any]) -> str:
    copied = case.get("copies")
    return f"{copied['perObjectMean']:g} / {copied['perObjectMax']}" if copied else NA


def _copy_calls(case: dict[str, Any]) -> str:
    """Copy calls of both phases (a copy while deleting would be a bug) over the objects."""
    calls = [case[p]["cloudCalls"]["byMethod"] for p in ("converge", "delete") if p in case]
    if not calls:
        return NA
    total = sum(by_method.get(method, 0) for by_method in calls for method in COPY_METHODS)
    return f"{round(total / case['objects'], 2):g}"


def _faults(case: dict[str, Any]) -> str:
    return " + ".join(
        str(case.get(p, {}).get("cloudCalls", {}).get("injectedFaults", NA)) for p in ("converge", "delete")
    )


if __name__ == "__main__":
    sys.exit(main())
