"""Time as the fake sees it: a replaceable clock and the RFC 3339 rendering the APIs use."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import timestamp_pb2

# Seconds since the epoch; tests may pass their own to move time by hand.
Clock = Callable[[], float]


def to_timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    # Microseconds, like the cloud's own timestamps (and free of float noise in the last digits).
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMicroseconds(round(seconds * 1_000_000))
    return stamp


def rfc3339(seconds: float) -> str:
    text: str = to_timestamp(seconds).ToJsonString()
    return text
