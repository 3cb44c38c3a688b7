"""`desktop-image-operator uninstall`: remove the operator's finalizers, so nothing waits for it once gone.

Run it once the DesktopImages were deleted while the operator still ran (each image deleted or kept as
its deletionPolicy says). It removes the credentials finalizer from every Secret that carries it. A
DesktopImage still there keeps the operator's finalizer unless `--release-desktop-images` is given: then
it is let go without any cloud call, and its cloud image stays in the cloud (each one is named). It logs
in as `run` and `import` do: in a pod its ServiceAccount, else the current kubeconfig. Every step is
printed; a step that fails is reported and the others still run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from desktop_image_operator.kube import KubeApi

PROGRAM = "desktop-image-operator uninstall"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="only this namespace (repeat for more); default: all namespaces",
    )
    parser.add_argument(
        "--release-desktop-images",
        action="store_true",
        help="also remove the operator's finalizer from DesktopImages left behind; "
        "their cloud images are then left in the cloud",
    )


@dataclass
class Tally:
    secrets: int = 0  # Secrets let go
    images: int = 0  # DesktopImages let go
    kept_images: int = 0  # DesktopImages still carrying the finalizer (not asked to let them go)
    errors: int = 0


def carrying(items: Sequence[dict[str, Any]], finalizer: str) -> Iterator[dict[str, Any]]:
    """The objects of a listed page whose metadata lists `finalizer`."""
    return (item for item in items if finalizer in ((item.get("metadata") or {}).get("finalizers") or ()))


def _where(item: dict[str, Any]) -> tuple[str, str]:
    metadata = item.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


def _left_in_cloud(image: dict[str, Any]) -> str:
    image_id = (image.get("status") or {}).get("imageId")
    return f"its cloud image {image_id} is left in the cloud" if image_id else "no cloud image is recorded"


async def release_desktop_images(kube: KubeApi, scope: str | None, tally: Tally, *, release: bool) -> None:
    from desktop_image_operator.kube import KubeApiError
    from desktop_image_operator.reconciler import FINALIZER

    try:
        async for page in kube.desktop_image_pages(scope):
            for image in carrying(page, FINALIZER):
                await _release_image(kube, image, tally, release=release)
    except KubeApiError as error:
        if error.status != 404:
            raise
        print("No DesktopImage resource is served (the CRD is gone): no DesktopImage to let go.")


async def _release_image(kube: KubeApi, image: dict[str, Any], tally: Tally, *, release: bool) -> None:
    from desktop_image_operator.reconciler import FINALIZER

    namespace, name = _where(image)
    if not release:
        tally.kept_images += 1
        print(f"DesktopImage {namespace}/{name} keeps the operator's finalizer ({FINALIZER}).")
        return
    try:
        released = await kube.remove_desktop_image_finalizer(namespace, name, FINALIZER)
    except Exception as error:  # reported; the other objects are still let go
        tally.errors += 1
        print(f"{PROGRAM}: DesktopImage {namespace}/{name}: {error}", file=sys.stderr)
        return
    if released:
        tally.images += 1
        print(f"DesktopImage {namespace}/{name}: finalizer {FINALIZER} removed; {_left_in_cloud(image)}.")


async def release_secrets(kube: KubeApi, scope: str | None, tally: Tally) -> None:
    from desktop_image_operator.reconciler import CREDENTIALS_FINALIZER

    async for page in kube.secret_metadata_pages(scope):
        for secret in carrying(page, CREDENTIALS_FINALIZER):
            namespace, name = _where(secret)
            try:
                await kube.remove_secret_finalizer(namespace, name, CREDENTIALS_FINALIZER)
            except Exception as error:  # reported; the other Secrets are still let go
                tally.errors += 1
                print(f"{PROGRAM}: Secret {namespace}/{name}: {error}", file=sys.stderr)
                continue
            tally.secrets += 1
            print(f"Secret {namespace}/{name}: finalizer {CREDENTIALS_FINALIZER} removed.")


async def uninstall(kube: KubeApi, namespaces: Sequence[str], *, release_images: bool) -> Tally:
    """DesktopImages first, then Secrets: a DesktopImage let go no longer needs its Secret."""
    tally = Tally()
    scopes: Sequence[str | None] = list(namespaces) or [None]
    for scope in scopes:
        await release_desktop_images(kube, scope, tally, release=release_images)
        await release_secrets(kube, scope, tally)
    return tally


def summary(tally: Tally) -> str:
    text = (
        f"Removed the operator's finalizers from {tally.secrets} Secret(s) "
        f"and {tally.images} DesktopImage(s)."
    )
    if tally.kept_images:
        text += (
            f" {tally.kept_images} DesktopImage(s) still carry theirs: delete them while the operator "
            "runs, or give --release-desktop-images to let them go (their cloud images stay)."
        )
    return text


async def _run(args: argparse.Namespace) -> Tally:
    from desktop_image_operator.kube import KubeApi, load_login

    kube = KubeApi(load_login())
    try:
        return await uninstall(kube, args.namespace, release_images=args.release_desktop_images)
    finally:
        await kube.aclose()


def main(args: argparse.Namespace) -> int:
    import asyncio

    try:
        tally = asyncio.run(_run(args))
    except Exception as error:  # no kubeconfig, no permission, no API server: say which, stop
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 1
    print(summary(tally))
    return 1 if tally.errors else 0
