"""Request validation driven by the `yandex.cloud.*` field options in the official descriptors.

The options (`required`, `length`, `pattern`, `size`, `value`, `map_key`) are read once per message
type, so validating a request costs a few comparisons.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Collection, Mapping
from typing import cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from yandex.cloud import validation_pb2

from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode

_BOUNDS = re.compile(r"^\s*(?:(?P<low>\d+)\s*-\s*(?P<high>\d+)|(?P<op><=|>=|<|>|==)?\s*(?P<n>-?\d+))\s*$")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """An inclusive range parsed from a spec such as `<=50`, `1-63`, `>0` or `0-1000`."""

    spec: str
    low: int | None
    high: int | None

    @classmethod
    def parse(cls, spec: str) -> Bounds:
        match = _BOUNDS.match(spec)
        if match is None:
            raise ValueError(f"unsupported bounds spec {spec!r}")
        if match["low"] is not None:
            return cls(spec, int(match["low"]), int(match["high"]))
        n = int(match["n"])
        op = match["op"] or "=="
        low, high = {
            "<=": (None, n),
            "<": (None, n - 1),
            ">=": (n, None),
            ">": (n + 1, None),
            "==": (n, n),
        }[op]
        return cls(spec, low, high)

    def holds(self, n: int) -> bool:
        return (self.low is None or n >= self.low) and (self.high is None or n <= self.high)


@dataclasses.dataclass(frozen=True)
class FieldRules:
    field: FieldDescriptor
    repeated: bool = False
    is_map: bool = False
    is_message: bool = False
    required: bool = False
    length: Bounds | None = None
    pattern: re.Pattern[str] | None = None
    size: Bounds | None = None
    value: Bounds | None = None
    key_length: Bounds | None = None
    key_pattern: re.Pattern[str] | None = None


def _option(options: Message, extension: FieldDescriptor) -> object | None:
    if options.HasExtension(extension):
        value: object = options.Extensions[extension]
        return value
    return None


def _rules_for_field(field: FieldDescriptor) -> FieldRules | None:
    options = field.GetOptions()
    required = bool(_option(options, validation_pb2.required))
    length = _option(options, validation_pb2.length)
    pattern = _option(options, validation_pb2.pattern)
    size = _option(options, validation_pb2.size)
    value = _option(options, validation_pb2.value)
    map_key = cast("validation_pb2.MapKeySpec | None", _option(options, validation_pb2.map_key))
    if not any((required, length, pattern, size, value, map_key)):
        return None
    return FieldRules(
        field=field,
        repeated=_is_repeated(field),
        is_map=_is_map(field),
        is_message=field.type == FieldDescriptor.TYPE_MESSAGE,
        required=required,
        length=Bounds.parse(str(length)) if length else None,
        pattern=re.compile(str(pattern)) if pattern else None,
        size=Bounds.parse(str(size)) if size else None,
        value=Bounds.parse(str(value)) if value else None,
        key_length=Bounds.parse(map_key.length) if map_key is not None and map_key.length else None,
        key_pattern=re.compile(map_key.pattern) if map_key is not None and map_key.pattern else None,
    )


@functools.cache
def rules_for(descriptor: Descriptor) -> tuple[FieldRules, ...]:
    found = (_rules_for_field(field) for field in descriptor.fields)
    return tuple(rule for rule in found if rule is not None)


def _invalid(path: str, problem: str) -> ApiError:
    return ApiError(StatusCode.INVALID_ARGUMENT, f"Request validation error: {path}: {problem}")


def _check_string(path: str, text: str, length: Bounds | None, pattern: re.Pattern[str] | None) -> None:
    if length is not None and not length.holds(len(text)):
        raise _invalid(path, f"length must be {length.spec} (got {len(text)})")
    if pattern is not None and pattern.fullmatch(text) is None:
        raise _invalid(path, f"value must match {pattern.pattern}")


def _is_map(field: FieldDescriptor) -> bool:
    return bool(field.message_type is not None and field.message_type.GetOptions().map_entry)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _check_field(message: Message, rules: FieldRules, prefix: str) -> None:
    field = rules.field
    path = prefix + field.name
    value = getattr(message, field.name)
    if rules.repeated:
        if rules.required and len(value) == 0:
            raise _invalid(path, "field is required")
        if rules.size is not None and not rules.size.holds(len(value)):
            raise _invalid(path, f"number of entries must be {rules.size.spec} (got {len(value)})")
        if rules.is_map:
            for key, item in value.items():
                if isinstance(key, str):
                    _check_string(f"{path} key {key!r}", key, rules.key_length, rules.key_pattern)
                if isinstance(item, str):
                    _check_string(f"{path}[{key!r}]", item, rules.length, rules.pattern)
        else:
            for index, item in enumerate(value):
                if isinstance(item, str):
                    _check_string(f"{path}[{index}]", item, rules.length, rules.pattern)
        return
    if rules.is_message:
        if rules.required and not message.HasField(field.name):
            raise _invalid(path, "field is required")
        return
    if rules.required and not value:
        raise _invalid(path, "field is required")
    if isinstance(value, str):
        if value:
            _check_string(path, value, rules.length, rules.pattern)
    elif isinstance(value, int) and rules.value is not None and not rules.value.holds(value):
        raise _invalid(path, f"value must be in {rules.value.spec} (got {value})")


@functools.cache
def _nested_fields(descriptor: Descriptor) -> tuple[FieldDescriptor, ...]:
    """Singular message fields whose type declares rules of its own."""
    return tuple(
        field
        for field in descriptor.fields
        if field.type == FieldDescriptor.TYPE_MESSAGE
        and not _is_repeated(field)
        and (rules_for(field.message_type) or _nested_fields(field.message_type))
    )


def validate(message: Message, prefix: str = "") -> None:
    """Raise INVALID_ARGUMENT naming the first field that breaks its declared rules."""
    descriptor = message.DESCRIPTOR
    for rules in rules_for(descriptor):
        _check_field(message, rules, prefix)
    for field in _nested_fields(descriptor):
        if message.HasField(field.name):
            validate(getattr(message, field.name), prefix + field.name + ".")


# The fields the published API pages list for each copy request. A cloud that serves only that schema
# (the REST page says `additionalProperties: false`) refuses anything else.
DOCUMENTED_COPY_FIELDS: dict[str, tuple[str, ...]] = {
    "yandex.cloud.clouddesktop.v1.api.CopyDesktopImageRequest": ("folder_id", "name", "image_id"),
    "yandex.cloud.clouddesktop.v1.api.CopyFromDesktopRequest": ("folder_id", "name", "desktop_id"),
}


def json_field_names(body: Mapping[str, object], descriptor: Descriptor) -> list[str]:
    """The proto names of the fields a JSON body carries, present even when empty (a key the message
    does not know stays as it was sent)."""
    by_json_name = {field.json_name: field.name for field in descriptor.fields}
    return [by_json_name.get(key, key) for key in body]


def refuse_undocumented_copy_fields(request: Message, sent: Collection[str] | None = None) -> None:
    """INVALID_ARGUMENT naming every field of a copy request that the published pages do not list.

    `sent` are the fields the request carried as the transport saw them (REST: every key of the body).
    Without it the message's set fields count: proto3 cannot tell an empty field from an absent one.
    """
    documented = DOCUMENTED_COPY_FIELDS[request.DESCRIPTOR.full_name]
    present = sent if sent is not None else [field.name for field, _ in request.ListFields()]
    unknown = sorted(set(present) - set(documented))
    if unknown:
        noun = "field" if len(unknown) == 1 else "fields"
        raise _invalid(
            ", ".join(unknown),
            f"unknown {noun}; {request.DESCRIPTOR.name} takes only {', '.join(documented)}",
        )
