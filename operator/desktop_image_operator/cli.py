"""The `desktop-image-operator` command line.

Each subcommand lives in its own module, imported only when that subcommand is chosen, so `crd` stays
fast. Modules import their heavy dependencies in `main`. The development subcommands (`dev`, `fake-cloud`,
`controlplane`) belong to the development package, which offers them through an entry-point group; the
operator's own package never imports it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

# subcommand -> (module, one-line help). Each module has `add_arguments(parser)` and `main(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("desktop_image_operator.commands.run", "run the operator against the current cluster"),
    "crd": ("desktop_image_operator.commands.crd", "print the DesktopImage CRD manifest"),
    "import": (
        "desktop_image_operator.commands.import_images",
        "print DesktopImage manifests that adopt a folder's existing images",
    ),
    "uninstall": (
        "desktop_image_operator.commands.uninstall",
        "remove the operator's finalizers from Secrets (and, if asked, DesktopImages) before removing it",
    ),
}

# Where the development package registers its subcommands (name -> module).
DEVELOPMENT_GROUP = "desktop_image_operator.commands"
# Their help, known here so that `--help` imports nothing and a missing package is named plainly.
DEVELOPMENT_HELP: dict[str, str] = {
    "fake-cloud": "serve the fake Yandex Cloud on loopback",
    "controlplane": "start a local Kubernetes control plane (etcd + kube-apiserver)",
    "dev": "control plane + fake cloud + operator + examples",
}
MISSING_DEVELOPMENT_PACKAGE = (
    "`{name}` is a development command: install the development package from a checkout of the "
    "repository (`pip install -e ./devtools`, which `make venv` does)"
)


def available_commands() -> dict[str, tuple[str, str]]:
    """The operator's subcommands and those the development package registers, if it is installed."""
    found = dict(COMMANDS)
    for entry in entry_points(group=DEVELOPMENT_GROUP):
        found.setdefault(entry.name, (entry.value, DEVELOPMENT_HELP.get(entry.name, "development command")))
    return found


def build_parser(commands: dict[str, tuple[str, str]], command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported, to declare that subcommand's options."""
    parser = argparse.ArgumentParser(prog="desktop-image-operator", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in commands.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = available_commands()
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen in DEVELOPMENT_HELP and chosen not in commands:
        print(MISSING_DEVELOPMENT_PACKAGE.format(name=chosen), file=sys.stderr)
        return 2
    args = build_parser(commands, chosen if chosen in commands else None).parse_args(argv)
    module = importlib.import_module(commands[args.command][0])
    try:
        return int(module.main(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
