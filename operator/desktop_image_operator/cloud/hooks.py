"""What the cloud layer tells its owner without knowing who listens: each cloud request's outcome.

The controller hands `open_cloud` an observer that feeds the operator's metrics; the cloud layer itself
imports no metrics library, and a session nobody observes (the `import` command, tests) reports nowhere.
"""

from __future__ import annotations

from collections.abc import Callable

# (method, code name, seconds): "DesktopImageService.Get", "OK" or a CloudError code's name, wall time.
RequestObserver = Callable[[str, str, float], None]


def unobserved(method: str, code: str, seconds: float) -> None:
    """The observer of a session nobody watches."""
