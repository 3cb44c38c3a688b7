"""The `desktop-image-operator` command line.

Each subcommand lives in its own module, imported only when that subcommand is chosen, so `crd` stays
fast and `run` never loads the development tooling. Modules import their heavy dependencies in `main`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help). Each module has `add_arguments(parser)` and `main(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("desktop_image_operator.commands.run", "run the operator against the current cluster"),
    "crd": ("desktop_image_operator.commands.crd", "print the DesktopImage CRD manifest"),
    "import": (
        "desktop_image_operator.commands.import_images",
        "print DesktopImage manifests that adopt a folder's existing images",
    ),
    "fake-cloud": ("desktop_image_operator.fakecloud.command", "serve the fake Yandex Cloud on loopback"),
    "controlplane": (
        "desktop_image_operator.devenv.command",
        "start a local Kubernetes control plane (etcd + kube-apiserver)",
    ),
    "dev": ("desktop_image_operator.devenv.dev", "control plane + fake cloud + operator + examples"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported, to declare that subcommand's options."""
    parser = argparse.ArgumentParser(prog="desktop-image-operator", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(chosen if chosen in COMMANDS else None).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.main(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
