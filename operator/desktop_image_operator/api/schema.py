"""Turn a pydantic model's JSON schema into a Kubernetes structural schema.

A structural schema (apiextensions.k8s.io/v1) has a `type` on every node, no `$ref`, and none of the
JSON Schema combinators pydantic uses for optional fields. This module inlines references, folds
`X | None` into plain `X` (an absent field is how the manifest says "none"; the models dump with
exclude_none), drops titles and null defaults, and refuses any keyword it does not know to be valid in a
CRD, so a new kind of model field fails loudly here instead of at `kubectl apply`.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

Schema = dict[str, Any]

# Keywords a CRD's openAPIV3Schema accepts that the models use (plus the Kubernetes extensions).
ALLOWED_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "enum",
        "default",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
    }
)
KUBERNETES_EXTENSION_PREFIX = "x-kubernetes-"
_DEFS_PREFIX = "#/$defs/"


class UnsupportedSchemaError(ValueError):
    """The model uses a JSON Schema construct a structural schema cannot express."""


def structural_schema(model: type[BaseModel]) -> Schema:
    """The structural schema of `model` as it appears in a manifest (camelCase names, input shape)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions: dict[str, Schema] = raw.pop("$defs", {})
    return _convert(raw, definitions, path=model.__name__, resolving=())


def _convert(
    node: Schema, definitions: dict[str, Schema], *, path: str, resolving: tuple[str, ...]
) -> Schema:
    node, resolving = _flatten(node, definitions, path=path, resolving=resolving)
    result: Schema = {}
    for key, value in node.items():
        if key in ("title", "$schema"):
            continue
        if key == "default" and value is None:
            continue
        if key == "description":
            # Docstrings wrap at the source's line length; kubectl explain reflows text itself.
            result[key] = " ".join(value.split())
        elif key == "properties":
            result[key] = {
                name: _convert(child, definitions, path=f"{path}.{name}", resolving=resolving)
                for name, child in value.items()
            }
        elif key == "items":
            result[key] = _convert(value, definitions, path=f"{path}[]", resolving=resolving)
        elif key == "additionalProperties":
            if isinstance(value, bool):
                # `additionalProperties: false|true` is pydantic's extra=forbid|allow; a structural schema
                # prunes unknown fields instead, so the flag has no place there.
                continue
            result[key] = _convert(value, definitions, path=f"{path}{{}}", resolving=resolving)
        elif key in ALLOWED_KEYWORDS or key.startswith(KUBERNETES_EXTENSION_PREFIX):
            # A copy: pydantic hands out the models' own json_schema_extra objects.
            result[key] = copy.deepcopy(value)
        else:
            raise UnsupportedSchemaError(f"{path}: {key!r} is not allowed in a structural schema")
    if "type" not in result:
        raise UnsupportedSchemaError(f"{path}: every node of a structural schema needs a type")
    return result


def _flatten(
    node: Schema, definitions: dict[str, Schema], *, path: str, resolving: tuple[str, ...]
) -> tuple[Schema, tuple[str, ...]]:
    """Resolve `$ref` and `anyOf [X, null]` at the top of `node`; keys written beside them win."""
    while True:
        if "$ref" in node:
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            name = str(node["$ref"]).removeprefix(_DEFS_PREFIX)
            if name in resolving:
                raise UnsupportedSchemaError(f"{path}: recursive model {name} cannot be inlined")
            if name not in definitions:
                raise UnsupportedSchemaError(f"{path}: unknown reference {node['$ref']!r}")
            node, resolving = {**definitions[name], **siblings}, (*resolving, name)
        elif "anyOf" in node:
            siblings = {key: value for key, value in node.items() if key != "anyOf"}
            branches = [branch for branch in node["anyOf"] if branch != {"type": "null"}]
            if len(branches) != 1:
                raise UnsupportedSchemaError(f"{path}: only optional fields (X | None) may use anyOf")
            node = {**branches[0], **siblings}
        else:
            return node, resolving
