"""Write the Helm chart's README.md from values.schema.json (descriptions, types) and values.yaml (defaults).

    .venv/bin/python -m desktop_image_operator_dev.chart_readme          # write the chart's README.md
    .venv/bin/python -m desktop_image_operator_dev.chart_readme --check  # exit 1 when it is stale

The schema is what Helm checks values against, so a value documented here is a value the chart accepts, and
a value the chart accepts is documented here: the delivery tests fail when the README is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from desktop_image_operator_dev.helm import CHART, REPO

README = CHART / "README.md"
SCHEMA = CHART / "values.schema.json"
VALUES = CHART / "values.yaml"
COMMAND = ".venv/bin/python -m desktop_image_operator_dev.chart_readme"

# The `grants` value of an install that grants what every install did before grants existed.
GRANT_EVERYTHING = 'grants=[{"name":"everyone","namespaceSelector":{},"credentials":{"operator":true}}]'
# Longer defaults are left to values.yaml, which the table points to, so that rows stay readable.
_DEFAULT_WIDTH = 60


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    description: str


def _is_closed(node: Mapping[str, Any]) -> bool:
    """An object whose keys are all known: documented key by key. An open one (a Kubernetes type passed
    through, a map of labels) is one row, whatever properties the schema types for it."""
    return bool(node.get("properties")) and node.get("additionalProperties") is False


def _type(node: Mapping[str, Any]) -> str:
    if "enum" in node:
        return " or ".join(json.dumps(value) for value in node["enum"])
    kinds = node.get("type", "any")
    return " or ".join(kinds) if isinstance(kinds, list) else str(kinds)


def _default(values: Any, path: tuple[str, ...]) -> str:
    for key in path:
        if not isinstance(values, Mapping) or key not in values:
            return ""
        values = values[key]
    text = json.dumps(values, ensure_ascii=False, separators=(", ", ": "))
    if len(text) > _DEFAULT_WIDTH:
        return "see values.yaml"
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rows(schema: Mapping[str, Any], values: Mapping[str, Any]) -> Iterator[Row]:
    """One row per value a user sets, depth first in the schema's order."""

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[Row]:
        if path and not _is_closed(node):
            yield Row(".".join(path), _type(node), _default(values, path), node.get("description", ""))
            return
        for key, child in node.get("properties", {}).items():
            yield from walk(child, (*path, key))

    yield from walk(schema, ())


def render(schema: Mapping[str, Any], values: Mapping[str, Any], chart: Mapping[str, Any]) -> str:
    name, version = chart["name"], chart["version"]
    lines = [
        f"# {name}",
        "",
        "<!-- Generated from values.schema.json and values.yaml by",
        f"     `{COMMAND}`; do not edit. -->",
        "",
        " ".join(str(chart["description"]).split()),
        "",
        "## Installing",
        "",
        "```sh",
        f"helm install {name} <this chart: a directory, or oci://<registry>/<path>/{name}> \\",
        f"  --version {version} --namespace {name} --create-namespace \\",
        f"  --set image.repository=<registry>/{name} --set credentials.existingSecret=<Secret with key.json>",
        "```",
        "",
        "Helm applies the DesktopImage CRD from the chart's `crds/` on the first install only and never",
        "upgrades it. After every upgrade of the chart, apply its CRD with server-side apply:",
        "",
        "```sh",
        f"helm show crds <this chart> --version {version} | kubectl apply --server-side -f -",
        "kubectl apply --server-side -f <the chart's directory>/crds/   # an unpacked chart or a checkout",
        "```",
        "",
        "or install with `--set crds.templated=true --skip-crds`, so that `helm upgrade` applies it.",
        "",
        "## Grants",
        "",
        "With the default values no namespace may use the operator's credentials: a DesktopImage",
        "without `spec.credentialsRef` is refused (Ready=False, reason `NotGranted`) before any cloud",
        "call. The `grants` value says which namespaces (by a label selector) may use which credentials",
        "(the operator's own, or a Secret of the release namespace) in which folders. After an upgrade",
        "from a chart version without grants, objects without a `credentialsRef` are refused until",
        "`grants` is set; to grant every namespace the operator's credentials in any folder, as before:",
        "",
        "```sh",
        f"helm upgrade {name} <this chart> --reuse-values --set-json '{GRANT_EVERYTHING}'",
        "```",
        "",
        "## Values",
        "",
        "`values.schema.json` refuses unknown keys and mistyped values. Defaults longer than a table cell",
        "are in `values.yaml`, with comments and examples.",
        "",
        "| value | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows(schema, values):
        cells = (f"`{row.key}`", row.type, row.default, row.description)
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def expected() -> str:
    """The README the chart's files make."""
    schema = json.loads(SCHEMA.read_text())
    values = yaml.safe_load(VALUES.read_text()) or {}
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return render(schema, values, chart)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether the README is stale")
    args = parser.parse_args(argv)
    text = expected()
    relative = README.relative_to(REPO)
    if args.check:
        if not README.is_file() or README.read_text() != text:
            print(f"{relative} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        print(f"{relative} is up to date")
        return 0
    README.write_text(text)
    print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
