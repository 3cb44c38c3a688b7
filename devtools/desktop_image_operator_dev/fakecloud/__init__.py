"""A faithful fake of the Yandex Cloud APIs the operator uses: Cloud Desktop images and desktops,
operations, IAM.

`FakeCloud` serves REST (aiohttp) and gRPC (the official servicers) on loopback from one in-memory
state, with an admin API under `/fake/` to look at it and inject faults.

The package imports its heavy parts lazily, so the command line can load `command` cheaply.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from desktop_image_operator_dev.fakecloud.config import FakeCloudConfig
    from desktop_image_operator_dev.fakecloud.server import FakeCloud

__all__ = ["FakeCloud", "FakeCloudConfig"]

_LAZY = {
    "FakeCloud": "desktop_image_operator_dev.fakecloud.server",
    "FakeCloudConfig": "desktop_image_operator_dev.fakecloud.config",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
