"""`desktop-image-operator controlplane`: a local Kubernetes control plane until interrupted."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig-out",
        type=Path,
        metavar="PATH",
        help="also write the admin kubeconfig here (removed again on exit)",
    )
    parser.add_argument(
        "--no-controller-manager",
        action="store_true",
        help="start etcd and kube-apiserver only (no garbage collection or namespace deletion)",
    )


def main(args: argparse.Namespace) -> int:
    import logging

    from desktop_image_operator_dev.devenv.controlplane import ControlPlane
    from desktop_image_operator_dev.devenv.signals import wait_for_interrupt

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with (
        ControlPlane(with_controller_manager=not args.no_controller_manager) as control_plane,
        control_plane.published_kubeconfig(args.kubeconfig_out) as kubeconfig,
    ):
        print(f"kube-apiserver: {control_plane.server}", flush=True)
        print(f"kubeconfig: {kubeconfig}", flush=True)
        print(f"export KUBECONFIG={kubeconfig}", flush=True)
        wait_for_interrupt()
    return 0
