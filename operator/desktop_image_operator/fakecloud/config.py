"""Run-time settings of the fake, changeable while it serves (`POST /fake/config`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

TIB = 1 << 40

# JSON name -> (attribute, whether it must be an integer)
_FIELDS: dict[str, tuple[str, bool]] = {
    "copySeconds": ("copy_seconds", False),
    "operationSeconds": ("operation_seconds", False),
    "tokenTtlSeconds": ("token_ttl_seconds", False),
    "imageQuota": ("image_quota", True),
    "imageSizeQuota": ("image_size_quota", True),
    "requestLogSize": ("request_log_size", True),
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
    """

    copy_seconds: float = 3.0
    operation_seconds: float = 0.5
    token_ttl_seconds: float = 12 * 3600.0
    image_quota: int = 8
    image_size_quota: int = TIB
    request_log_size: int = 100_000

    def to_json(self) -> dict[str, float | int]:
        return {name: getattr(self, attr) for name, (attr, _) in _FIELDS.items()}

    def update_from_json(self, data: Mapping[str, object]) -> None:
        """Apply the given JSON fields; ValueError (nothing applied) when one is unknown or invalid."""
        changes: dict[str, float | int] = {}
        for name, value in data.items():
            if name not in _FIELDS:
                raise ValueError(f"unknown config field {name!r}; known: {', '.join(_FIELDS)}")
            attr, integer = _FIELDS[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            if integer:
                if int(value) != value:
                    raise ValueError(f"{name} must be an integer")
                changes[attr] = int(value)
            else:
                changes[attr] = float(value)
        if changes.get("request_log_size", 1) < 1:
            raise ValueError("requestLogSize must be at least 1")
        for attr, value in changes.items():
            setattr(self, attr, value)
