"""Configuration of the cloud client: endpoints, transport, limits, retries, timeouts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CloudSettings(BaseModel):
    """Everything `open_cloud` needs. Every endpoint can be overridden (tests and the local stack use
    loopback)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transport: Literal["rest", "grpc"] = Field("rest", description="Wire protocol for Cloud Desktop calls.")

    desktop_endpoint: str = Field(
        "https://clouddesktops.api.cloud.yandex.net", description="Cloud Desktop REST base URL."
    )
    operation_endpoint: str = Field(
        "https://operation.api.cloud.yandex.net", description="Operation service REST base URL."
    )
    iam_endpoint: str = Field(
        "https://iam.api.cloud.yandex.net", description="IAM REST base URL (token exchange)."
    )
    metadata_endpoint: str = Field(
        "http://169.254.169.254", description="Instance metadata service base URL."
    )
    desktop_grpc_target: str = Field(
        "clouddesktops.api.cloud.yandex.net:443", description="Cloud Desktop gRPC target (host:port)."
    )
    operation_grpc_target: str = Field(
        "operation.api.cloud.yandex.net:443", description="Operation service gRPC target (host:port)."
    )
    grpc_insecure: bool = Field(False, description="Plaintext gRPC (only for a local fake on loopback).")
    copy_fields: Literal["extended", "documented"] = Field(
        "extended",
        description=(
            "What a copy request carries. extended: labels and description too, and the documented fields "
            "only once the cloud refuses them (INVALID_ARGUMENT), remembered for the session; documented: "
            "only the fields the published API pages list (folder, name, source), never labels or "
            "description."
        ),
    )

    max_concurrency: int = Field(
        8, ge=1, le=1000, description="Cloud calls in flight at once, all objects together."
    )
    requests_per_second: float = Field(10.0, gt=0, le=10_000, description="Average cloud request rate.")
    burst: int | None = Field(
        None, ge=1, description="Requests allowed at once above the rate (default: the rate)."
    )
    throttle_cooldown_base_seconds: float = Field(
        1.0, gt=0, description="Pause of all calls after a first 429; doubles with each further 429 in a row."
    )
    throttle_cooldown_cap_seconds: float = Field(
        60.0, gt=0, description="Longest such pause when the server does not say how long to wait."
    )
    retry_after_cap_seconds: float = Field(
        600.0,
        gt=0,
        le=3600,
        description=(
            "Longest wait a server's Retry-After (or RetryInfo) is honoured for, by the retry of the refused "
            "call and by the pause of all calls after a 429; a longer hint is cut to this. Independent of "
            "the backoff and cool-down caps, which only bound the client's own guesses."
        ),
    )

    max_attempts: int = Field(5, ge=1, le=50, description="Tries per call for transient errors.")
    backoff_base_seconds: float = Field(0.5, gt=0, description="First retry delay ceiling (full jitter).")
    backoff_cap_seconds: float = Field(30.0, gt=0, description="Retry delay ceiling.")

    request_timeout_seconds: float = Field(30.0, gt=0, description="Timeout of one request.")
    connect_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of opening a connection.")
    max_connections: int = Field(32, ge=1, description="HTTP connection pool size.")

    operation_poll_initial_seconds: float = Field(
        1.0, gt=0, description="First wait between operation polls."
    )
    operation_poll_cap_seconds: float = Field(15.0, gt=0, description="Longest wait between operation polls.")
    operation_timeout_seconds: float = Field(
        3600.0, gt=0, description="How long follow_operation waits for an operation before giving up."
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> CloudSettings:
        if self.backoff_cap_seconds < self.backoff_base_seconds:
            raise ValueError("backoff_cap_seconds must be >= backoff_base_seconds")
        if self.operation_poll_cap_seconds < self.operation_poll_initial_seconds:
            raise ValueError("operation_poll_cap_seconds must be >= operation_poll_initial_seconds")
        if self.throttle_cooldown_cap_seconds < self.throttle_cooldown_base_seconds:
            raise ValueError("throttle_cooldown_cap_seconds must be >= throttle_cooldown_base_seconds")
        return self
