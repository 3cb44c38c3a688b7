"""Vendor the gRPC modules the operator's gRPC transport needs from the Yandex Cloud SDK.

    .venv/bin/python -m desktop_image_operator_dev.stubs          # write them into the operator's package
    .venv/bin/python -m desktop_image_operator_dev.stubs --check  # exit 1 when they differ from the SDK's

The SDK (`yandexcloud`, a development dependency here) weighs 66 MB and pulls grpcio-tools, setuptools and
requests; the operator needs eleven of its generated modules. They are copied as generated, with their own
imports moved under the operator's package and a header naming their origin and licence. The serialized
descriptors are untouched, so a process that imports the SDK too (the fake cloud, the tests) shares one set
of message classes.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
from pathlib import Path

from desktop_image_operator_dev.helm import REPO

SDK = "yandexcloud"
TARGET = REPO / "operator" / "desktop_image_operator" / "cloud" / "generated"
PACKAGE = "desktop_image_operator.cloud.generated"
ROOTS = (  # what the gRPC transport imports; their imports of the SDK follow
    "yandex.cloud.clouddesktop.v1.desktop_image_service_pb2_grpc",
    "yandex.cloud.clouddesktop.v1.desktop_service_pb2_grpc",
    "yandex.cloud.operation.operation_service_pb2_grpc",
)
SDK_IMPORT = re.compile(r"^from (yandex(?:\.\w+)*) import (\w+)", re.MULTILINE)
COMMAND = "python -m desktop_image_operator_dev.stubs"


def sdk_root() -> Path:
    """The directory holding the SDK's `yandex` package."""
    return Path(str(importlib.metadata.distribution(SDK).locate_file("")))


def header(module: str) -> str:
    version = importlib.metadata.version(SDK)
    return (
        f"# {module}: generated from the published Yandex Cloud API protos, as shipped in the {SDK}\n"
        f"# SDK {version} (MIT License, Copyright (c) 2018 YANDEX LLC: see LICENSE beside this package).\n"
        f"# Vendored by `{COMMAND}`; its imports moved under {PACKAGE}. Do not edit.\n"
    )


def module_path(module: str) -> Path:
    return Path(*module.split(".")).with_suffix(".py")


def vendored_text(module: str, source: str) -> str:
    rewritten = SDK_IMPORT.sub(lambda m: f"from {PACKAGE}.{m.group(1)} import {m.group(2)}", source)
    return header(module) + rewritten


def closure(root: Path) -> dict[str, str]:
    """Module name -> its source, for the roots and every SDK module they import."""
    found: dict[str, str] = {}
    pending = list(ROOTS)
    while pending:
        module = pending.pop()
        if module in found:
            continue
        found[module] = (root / module_path(module)).read_text()
        pending += [f"{m[0]}.{m[1]}" for m in SDK_IMPORT.findall(found[module])]
    return found


def expected_files() -> dict[Path, str]:
    """Relative path under TARGET -> content: the modules, empty package markers, the SDK's licence."""
    root = sdk_root()
    files: dict[Path, str] = {}
    for module, source in closure(root).items():
        path = module_path(module)
        files[path] = vendored_text(module, source)
        for parent in path.parents:
            files[parent / "__init__.py"] = ""
    files[Path("__init__.py")] = f'"""The Yandex Cloud gRPC modules the operator uses (`{COMMAND}`)."""\n'
    [licence] = [f for f in importlib.metadata.files(SDK) or [] if f.name == "LICENSE"]
    files[Path("LICENSE")] = licence.read_text()
    return files


def stale(files: dict[Path, str]) -> list[str]:
    present = {p.relative_to(TARGET) for p in TARGET.rglob("*") if p.is_file() and p.suffix != ".pyc"}
    wrong = [str(p) for p, text in files.items() if _differs(TARGET / p, text)]
    return sorted(wrong + [str(p) for p in present - set(files)])


def _differs(path: Path, text: str) -> bool:
    return not path.is_file() or path.read_text() != text


def write(files: dict[Path, str]) -> None:
    for path, text in files.items():
        (TARGET / path).parent.mkdir(parents=True, exist_ok=True)
        (TARGET / path).write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether they are stale")
    args = parser.parse_args(argv)
    files = expected_files()
    differing = stale(files)
    if args.check:
        print(f"stale: {', '.join(differing)}" if differing else "up to date", file=sys.stderr)
        return 1 if differing else 0
    write(files)
    print(f"wrote {len(files)} files under {TARGET.relative_to(REPO)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
