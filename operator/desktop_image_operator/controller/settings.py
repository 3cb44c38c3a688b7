"""Settings of `desktop-image-operator run`: every option is also an environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from desktop_image_operator.cloud.settings import CloudSettings


class OperatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespaces: tuple[str, ...] = Field((), description="Namespaces to watch; empty means the whole cluster.")
    resync_seconds: float = Field(
        600.0, gt=0, description="How often a Ready object is checked against the cloud."
    )
    resync_jitter: float = Field(
        0.1, ge=0, lt=1, description="Random spread of the resync period (a fraction)."
    )
    retry_base_seconds: float = Field(5.0, gt=0, description="First delay after a transient failure.")
    retry_cap_seconds: float = Field(300.0, gt=0, description="Longest delay after transient failures.")
    terminal_retry_base_seconds: float = Field(
        60.0, gt=0, description="First delay before retrying a terminal failure (the spec did not change)."
    )
    credentials_file: Path | None = Field(
        None, description="Default credentials: an authorized key JSON file."
    )
    use_metadata_credentials: bool = Field(
        False, description="Default credentials: the metadata service (VMs, Workload Identity Federation)."
    )
    iam_token: SecretStr | None = Field(None, description="Default credentials: a plain IAM token.")
    kube_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Timeout of each Kubernetes call the operator makes itself."
    )
    kube_workers: int = Field(
        8,
        ge=1,
        le=64,
        description="Threads for the operator's own Kubernetes calls (calls in flight at once).",
    )
    metrics_port: int = Field(8080, ge=0, le=65535, description="Port of /metrics (0: disabled).")
    health_port: int = Field(
        8081, ge=0, le=65535, description="Port of the liveness endpoint /healthz (0: off)."
    )
    bind_address: str = Field("0.0.0.0", description="Address the metrics and health servers listen on.")
    log_format: Literal["plain", "json"] = "plain"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    cloud: CloudSettings = Field(default_factory=CloudSettings)

    @model_validator(mode="after")
    def _one_default_credential(self) -> OperatorSettings:
        chosen = [
            self.credentials_file is not None,
            self.use_metadata_credentials,
            self.iam_token is not None,
        ]
        if sum(chosen) > 1:
            raise ValueError("choose at most one of credentials file, metadata service and IAM token")
        return self
