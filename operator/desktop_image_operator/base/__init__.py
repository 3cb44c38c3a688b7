"""What the cloud side and the Kubernetes side share: the leader's fence, the clock, one backoff policy.

The base imports nothing of the operator's: both sides stand on it, so a fenced Kubernetes write and a
fenced cloud call are one error (`Fenced`), and a retry waits by the same rule wherever it happens.
`base.backoff` is a second face for that rule alone: plain arithmetic, which the pure decision uses
without importing the fence's asyncio.
"""

from desktop_image_operator.base._clock import SYSTEM_CLOCK, Clock, SystemClock
from desktop_image_operator.base._fencing import CallGate, Fence, Fenced
from desktop_image_operator.base.backoff import Backoff

__all__ = ["SYSTEM_CLOCK", "Backoff", "CallGate", "Clock", "Fence", "Fenced", "SystemClock"]
