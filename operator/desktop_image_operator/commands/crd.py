"""`desktop-image-operator crd`: print the DesktopImage CustomResourceDefinition.

The output is what `crds/clouddesktop.yc.io_desktopimages.yaml` holds; regenerate that file with
`desktop-image-operator crd --output crds/clouddesktop.yc.io_desktopimages.yaml`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        metavar="PATH",
        type=Path,
        help="write the manifest to PATH instead of standard output",
    )


def main(args: argparse.Namespace) -> int:
    # pydantic and PyYAML load only when this command runs, not when the CLI builds its parser.
    from desktop_image_operator.api import render_crd

    manifest = render_crd()
    output: Path | None = args.output
    if output is None:
        sys.stdout.write(manifest)
    else:
        output.write_text(manifest, encoding="utf-8")
    return 0
