"""The kube client's one exception hierarchy: everything it raises is a `KubeError`.

Messages name the call ("read of Secret team-a/key", say) and never carry a response body: an answer
can echo the object it was about, a Secret's data included.

    KubeError
    ├── KubeConfigError     no usable way to reach the API server (a kubeconfig field, a file, a plugin)
    ├── KubeApiError        the API server answered with an error status
    │   ├── StatusConflict  a conditional status write met a newer version of the object
    │   └── LeaseConflict   the Lease changed since it was read, or exists already
    ├── KubeTimeout         no answer in time
    ├── KubeUnreachable     no API server to talk to (refused, reset, no route)
    └── SecretUnavailable   a credentials Secret, or its key, cannot be read

A write the leader's fence refuses or cancels raises the base's `Fenced`, as a cloud call does.
"""

from __future__ import annotations


class KubeError(Exception):
    """Anything the operator's own Kubernetes calls raise (besides `Fenced`)."""


class KubeConfigError(KubeError):
    """No usable way to reach the API server; the message says what is missing or unsupported."""


class KubeApiError(KubeError):
    """The API server answered with an error status; the message has the status line only."""

    def __init__(self, what: str, status: int, reason: str) -> None:
        super().__init__(f"The {what} was answered HTTP {status} {reason}.")
        self.status = status
        self.reason = reason


class StatusConflict(KubeApiError):
    """A conditional status write was refused: the object changed since the version it named."""

    def __init__(self, what: str) -> None:
        super().__init__(what, 409, "Conflict")
        self.args = (f"The {what} found the object changed since it was read.",)


class LeaseConflict(KubeApiError):
    """The Lease changed since it was read (or exists already): someone else wrote it first."""

    def __init__(self, what: str) -> None:
        super().__init__(what, 409, "Conflict")
        self.args = (f"The {what} lost a race: the Lease changed meanwhile.",)


class KubeTimeout(KubeError):
    """A call got no answer in time; the message names the call and the timeout."""


class KubeUnreachable(KubeError):
    """A call found no API server to talk to; the message names it."""


class SecretUnavailable(KubeError):
    """The credentials Secret or its key cannot be read; the message says which and why (never the data)."""
