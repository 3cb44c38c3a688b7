"""`desktop-image-operator fake-cloud`: serve the fake Yandex Cloud on loopback until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from desktop_image_operator_dev.fakecloud.server import FakeCloud


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="HTTP port for REST and /fake/ (default: 0, a free one)"
    )
    parser.add_argument("--grpc-port", type=int, default=0, help="gRPC port (default: 0, a free one)")
    parser.add_argument(
        "--key-out", type=Path, help="write the service account's authorized key JSON here (mode 0600)"
    )
    parser.add_argument(
        "--copy-seconds", type=float, help="how long Copy and CopyFromDesktop operations take"
    )
    parser.add_argument("--operation-seconds", type=float, help="how long Update and Delete operations take")
    parser.add_argument(
        "--strict-copy-fields",
        action="store_true",
        help="refuse copies carrying fields the published API pages do not list (labels, description)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the endpoints as one JSON line instead of text"
    )


def write_key(path: Path, key: dict[str, str]) -> None:
    """Write the key readable by its owner only, also when the file already existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        os.fchmod(stream.fileno(), 0o600)
        json.dump(key, stream, indent=2)
        stream.write("\n")


def _summary(cloud: FakeCloud, key_path: Path | None) -> dict[str, object]:
    return {
        "endpoints": cloud.endpoints(),
        "serviceAccountId": cloud.service_account_id,
        "keyId": cloud.key_id,
        "keyFile": None if key_path is None else str(key_path),
        "cloudId": cloud.cloud_id,
        "folderId": cloud.folder_id,
        "stoppedDesktopId": cloud.stopped_desktop_id,
        "runningDesktopId": cloud.running_desktop_id,
        "computeImageId": cloud.compute_image_id,
    }


def _print_text(cloud: FakeCloud, key_path: Path | None) -> None:
    lines = [
        "Fake Yandex Cloud is serving on loopback.",
        f"  Cloud Desktop API (REST): {cloud.cloud_desktop_url}",
        f"  Operation API (REST):     {cloud.operation_url}",
        f"  IAM token exchange:       {cloud.iam_token_url}",
        f"  Metadata service:         {cloud.metadata_url}  (token: {cloud.metadata_token_url})",
        f"  gRPC target (all APIs):   {cloud.grpc_target}",
        f"  Admin API:                {cloud.admin_url}/",
        f"  Folder {cloud.folder_id} (cloud {cloud.cloud_id})",
        f"  Stopped desktop {cloud.stopped_desktop_id}, running desktop {cloud.running_desktop_id}",
        f"  Compute image {cloud.compute_image_id}",
        f"  Service account {cloud.service_account_id}, key {cloud.key_id}",
    ]
    if cloud.config.strict_copy_fields:
        lines.append("  Copies carrying labels or a description are refused (--strict-copy-fields)")
    if key_path is not None:
        lines.append(f"  Authorized key written to {key_path}")
    else:
        lines.append(f"  Authorized key: GET {cloud.admin_url}/key (or pass --key-out PATH)")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


async def _serve(args: argparse.Namespace) -> int:
    from desktop_image_operator_dev.fakecloud.config import FakeCloudConfig
    from desktop_image_operator_dev.fakecloud.server import FakeCloud

    config = FakeCloudConfig()
    if args.copy_seconds is not None:
        config.copy_seconds = args.copy_seconds
    if args.operation_seconds is not None:
        config.operation_seconds = args.operation_seconds
    config.strict_copy_fields = args.strict_copy_fields
    cloud = FakeCloud(host=args.host, port=args.port, grpc_port=args.grpc_port, config=config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await cloud.start()
    try:
        key_path: Path | None = args.key_out
        if key_path is not None:
            write_key(key_path, cloud.authorized_key())
        if args.json:
            print(json.dumps(_summary(cloud, key_path)), flush=True)
        else:
            _print_text(cloud, key_path)
        await stop.wait()
    finally:
        await cloud.stop()
    print("Fake Yandex Cloud stopped.", file=sys.stderr, flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    from desktop_image_operator_dev.fakecloud.net import is_loopback

    if not is_loopback(args.host):
        print(
            f"error: --host {args.host} is not a loopback address; the fake cloud serves on loopback only",
            file=sys.stderr,
        )
        return 2
    for name in ("copy_seconds", "operation_seconds"):
        value = getattr(args, name)
        if value is not None and value < 0:
            print(f"error: --{name.replace('_', '-')} must not be negative", file=sys.stderr)
            return 2
    try:
        return asyncio.run(_serve(args))
    except OSError as exc:
        print(f"error: cannot serve: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # Also runnable on its own: python -m desktop_image_operator_dev.fakecloud.command
    _parser = argparse.ArgumentParser(prog="fake-cloud", description=__doc__)
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
