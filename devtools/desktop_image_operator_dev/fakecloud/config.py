"""Run-time settings of the fake, changeable while it serves (`POST /fake/config`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

TIB = 1 << 40

Kind = Literal["number", "integer", "boolean"]

# JSON name -> (attribute, what kind of value it takes)
_FIELDS: dict[str, tuple[str, Kind]] = {
    "copySeconds": ("copy_seconds", "number"),
    "operationSeconds": ("operation_seconds", "number"),
    "tokenTtlSeconds": ("token_ttl_seconds", "number"),
    "imageQuota": ("image_quota", "integer"),
    "imageSizeQuota": ("image_size_quota", "integer"),
    "requestLogSize": ("request_log_size", "integer"),
    "honorIdempotency": ("honor_idempotency", "boolean"),
    "listLagSeconds": ("list_lag_seconds", "number"),
    "strictCopyFields": ("strict_copy_fields", "boolean"),
}


@dataclasses.dataclass
class FakeCloudConfig:
    """How long things take and how much the fake allows.

    copy_seconds: duration of Copy and CopyFromDesktop operations.
    operation_seconds: duration of Update and Delete operations.
    token_ttl_seconds: lifetime of issued IAM tokens (the real cloud: 12 hours).
    image_quota: desktop images per cloud (`vdi.desktopImages.count`).
    image_size_quota: bytes of desktop images per cloud (`vdi.desktopImages.size`).
    request_log_size: how many calls `/fake/requests` remembers.
    honor_idempotency: whether a repeated `Idempotency-Key` returns the first operation. Off, every call
        does new work (the key is still logged), as a cloud that ignores keys would: tests then prove the
        operator is crash-safe without them.
    list_lag_seconds: how long a new image stays out of List (an index that lags behind accepted copies);
        Get finds it and its name is taken from the start.
    strict_copy_fields: whether Copy and CopyFromDesktop accept only the fields the published API pages
        list (folder, name, source): a copy carrying labels or a description is refused with
        INVALID_ARGUMENT and creates nothing, as a cloud serving only that schema would. Tests then prove
        the operator still ends with one labelled image per object.
    """

    copy_seconds: float = 3.0
    operation_seconds: float = 0.5
    token_ttl_seconds: float = 12 * 3600.0
    image_quota: int = 8
    image_size_quota: int = TIB
    request_log_size: int = 100_000
    honor_idempotency: bool = True
    list_lag_seconds: float = 0.0
    strict_copy_fields: bool = False

    def to_json(self) -> dict[str, float | int | bool]:
        return {name: getattr(self, attr) for name, (attr, _) in _FIELDS.items()}

    def update_from_json(self, data: Mapping[str, object]) -> None:
        """Apply the given JSON fields; ValueError (nothing applied) when one is unknown or invalid."""
        changes: dict[str, float | int | bool] = {}
        for name, value in data.items():
            if name not in _FIELDS:
                raise ValueError(f"unknown config field {name!r}; known: {', '.join(_FIELDS)}")
            attr, kind = _FIELDS[name]
            changes[attr] = _checked(name, kind, value)
        if changes.get("request_log_size", 1) < 1:
            raise ValueError("requestLogSize must be at least 1")
        for attr, value in changes.items():
            setattr(self, attr, value)


def _checked(name: str, kind: Kind, value: object) -> float | int | bool:
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    if kind == "integer":
        if int(value) != value:
            raise ValueError(f"{name} must be an integer")
        return int(value)
    return float(value)
