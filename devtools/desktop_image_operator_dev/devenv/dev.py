"""`desktop-image-operator dev`: the whole local stack in one command (what `make run` runs).

Starts the local control plane, the fake Yandex Cloud, the CRD, the operator and the examples, then shows
the DesktopImages reaching Ready. Ctrl-C or SIGTERM stops everything it started and removes its files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desktop_image_operator.api.constants import CRD_NAME
from desktop_image_operator_dev.devenv.liveview import Display, Watcher, is_interactive
from desktop_image_operator_dev.devenv.signals import Interrupted, Interrupts
from desktop_image_operator_dev.devenv.stack import (
    FakeCloudChild,
    Kubectl,
    OperatorChild,
    StackError,
    as_arguments,
    operator_wiring,
)

if TYPE_CHECKING:
    from desktop_image_operator_dev.devenv.controlplane import ControlPlane

# The repository's examples/, next to operator/ (an editable install, as `make run` makes).
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FIELD_MANAGER = "desktop-image-operator-dev"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig-out", type=Path, metavar="PATH", help="also write the kubeconfig here (removed on exit)"
    )
    parser.add_argument(
        "--fake-cloud-port",
        type=int,
        default=0,
        metavar="P",
        help="HTTP port of the fake cloud (default: free)",
    )
    parser.add_argument("--no-operator", action="store_true", help="do not start the operator")
    parser.add_argument("--no-examples", action="store_true", help="do not apply the examples")
    parser.add_argument(
        "--examples",
        type=Path,
        default=EXAMPLES,
        metavar="DIR",
        help="directory of manifests to apply (default: the repository's examples/)",
    )
    parser.add_argument(
        "--copy-seconds",
        type=float,
        default=5.0,
        metavar="S",
        help="how long the fake cloud's copy operations take (default: 5)",
    )
    parser.add_argument(
        "--transport", choices=("rest", "grpc"), default="rest", help="the operator's cloud API transport"
    )


def say(text: str = "") -> None:
    print(text, flush=True)


# -- the parts of the stack, in start order -----------------------------------------------------------


def start_control_plane(cleanup: contextlib.ExitStack) -> ControlPlane:
    from desktop_image_operator_dev.devenv.controlplane import ControlPlane, ControlPlaneError

    say("Starting the local control plane (etcd, kube-apiserver, kube-controller-manager)...")
    try:
        return cleanup.enter_context(ControlPlane())
    except (ControlPlaneError, RuntimeError, OSError, subprocess.CalledProcessError) as error:
        raise StackError(f"the local control plane did not start: {error}") from None


def start_fake_cloud(
    args: argparse.Namespace, workdir: Path, cleanup: contextlib.ExitStack
) -> FakeCloudChild:
    say("Starting the fake Yandex Cloud...")
    fake = FakeCloudChild(workdir, port=args.fake_cloud_port, copy_seconds=args.copy_seconds)
    cleanup.callback(fake.stop)
    return fake


def apply_crd(kubectl: Kubectl) -> None:
    from desktop_image_operator.api.crd_manifest import render_crd

    say("Applying the DesktopImage CRD...")
    kubectl("apply", "-f", "-", stdin=render_crd())
    kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{CRD_NAME}", timeout=40)


def start_operator(
    args: argparse.Namespace,
    fake: FakeCloudChild,
    kubeconfig: Path,
    workdir: Path,
    cleanup: contextlib.ExitStack,
) -> OperatorChild:
    say(f"Starting the operator ({args.transport} transport)...")
    # On the command line, as the banner shows it when the operator is not started.
    operator = OperatorChild(
        workdir, fake, kubeconfig=kubeconfig, settings={"TRANSPORT": args.transport}, on_command_line=True
    )
    cleanup.callback(operator.stop)
    return operator


def example_documents(directory: Path) -> list[dict[str, Any]]:
    import yaml

    if not directory.is_dir():
        raise StackError(f"no examples directory at {directory}; pass --examples DIR or --no-examples")
    documents: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            documents += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        except yaml.YAMLError as error:
            raise StackError(f"{path} is not valid YAML: {error}") from None
    if not documents:
        raise StackError(f"no manifests in {directory}")
    return documents


def with_real_credentials(document: dict[str, Any], key_json: str) -> dict[str, Any]:
    """An example Secret carries a placeholder: fill each of its entries with the fake's authorized key."""
    if not is_secret(document):
        return document
    entries = [*(document.get("stringData") or {}), *(document.get("data") or {})]
    filled = {k: v for k, v in document.items() if k not in ("data", "stringData")}
    filled["stringData"] = dict.fromkeys(entries, key_json)
    return filled


def is_secret(document: dict[str, Any]) -> bool:
    return document.get("apiVersion") == "v1" and document.get("kind") == "Secret"


def apply_examples(kubectl: Kubectl, directory: Path, key_file: Path) -> None:
    say(f"Applying the examples in {directory}...")
    key_json = key_file.read_text(encoding="utf-8")
    documents = [with_real_credentials(d, key_json) for d in example_documents(directory)]
    secrets = [d for d in documents if is_secret(d)]
    others = [d for d in documents if not is_secret(d)]
    # Keys go through standard input, never the command line. Secrets are applied server-side: a
    # client-side apply would copy the key into the last-applied-configuration annotation.
    output = ""
    if secrets:
        # First: an object whose credentials are missing would wait out a slow retry.
        output += kubectl(
            "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", stdin=as_list(secrets)
        )
    if others:
        output += kubectl("apply", "-f", "-", stdin=as_list(others))
    for line in output.splitlines():
        say(f"  {line}")


def as_list(documents: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})


# -- putting it together ------------------------------------------------------------------------------


def banner(
    args: argparse.Namespace,
    kubeconfig: Path,
    server: str,
    fake: FakeCloudChild,
    operator: OperatorChild | None,
    elapsed: float,
) -> list[str]:
    lines = [
        "",
        f"The local stack is up ({elapsed:.1f} s). To use kubectl in another terminal:",
        f"  export KUBECONFIG={kubeconfig}",
        "  kubectl get deskimg -A -o wide",
        f"kube-apiserver: {server}",
        f"fake cloud admin API: {fake.admin_url}  (e.g. {fake.admin_url}/images, {fake.admin_url}/requests)",
    ]
    if operator is not None:
        lines.append(f"operator metrics: {operator.metrics_url}")
        lines.append(f"operator log: {operator.log}  (removed on exit)")
    else:
        # Ports 0: no metrics or health servers, so a debugger run clashes with nothing.
        settings = {"TRANSPORT": args.transport, **operator_wiring(fake, metrics_port=0, health_port=0)}
        command = ["desktop-image-operator", "run", *as_arguments(settings)]
        lines.append("operator: not started (--no-operator); to run it against this stack:")
        lines.append(f"  KUBECONFIG={kubeconfig} {shlex.join(command)}")
    lines += ["Ctrl-C stops everything.", ""]
    return lines


def start_and_watch(args: argparse.Namespace, cleanup: contextlib.ExitStack, started: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="desktop-image-operator-dev-"))
    cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)  # registered first, so removed last
    control_plane = start_control_plane(cleanup)
    kubeconfig = cleanup.enter_context(control_plane.published_kubeconfig(args.kubeconfig_out))
    say(f"  kube-apiserver {control_plane.server} ({time.monotonic() - started:.1f} s)")
    fake = start_fake_cloud(args, workdir, cleanup)
    say(f"  fake cloud {fake.endpoints['cloudDesktop']}, gRPC {fake.endpoints['grpc']}")
    kubectl = Kubectl(control_plane.kubeconfig)
    apply_crd(kubectl)
    operator = None
    if not args.no_operator:
        operator = start_operator(args, fake, control_plane.kubeconfig, workdir, cleanup)
    if not args.no_examples:
        apply_examples(kubectl, args.examples, fake.key_file)
    for line in banner(args, kubeconfig, control_plane.server, fake, operator, time.monotonic() - started):
        say(line)
    children = [fake] + ([operator] if operator else [])
    watcher = Watcher(
        kubectl, children, Display(sys.stdout, is_interactive(sys.stdout)), started,
        operator.log if operator else None,
    )  # fmt: skip
    elapsed = watcher.until_all_ready()
    say(f"All DesktopImages are Ready, {elapsed:.1f} s after start. Ctrl-C stops everything.")
    watcher.forever()


def main(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.copy_seconds < 0:
        print("error: --copy-seconds must not be negative", file=sys.stderr)
        return 2
    started = time.monotonic()
    interrupts = Interrupts()
    failure: StackError | None = None
    with interrupts.installed(), contextlib.ExitStack() as cleanup:
        try:
            start_and_watch(args, cleanup, started)
        except Interrupted:
            pass  # the way `dev` is meant to end
        except StackError as error:
            failure = error
        finally:
            interrupts.disarm()  # from here on, signals must not cut the cleanup short
            if sys.stdout.isatty():
                say()  # a terminal has just echoed ^C
            say("Stopping the operator, the fake cloud and the control plane...")
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr, flush=True)
        return 1
    say("Stopped; temporary files removed.")
    return 0
