"""Settings of `desktop-image-operator run`: every option is also an environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from desktop_image_operator.api import DeletionPolicy, ManagementPolicy
from desktop_image_operator.cloud import CloudSettings


class RunSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespaces: tuple[str, ...] = Field((), description="Namespaces to watch; empty means the whole cluster.")
    cluster_id: str | None = Field(
        None,
        min_length=1,
        description=(
            "This cluster's identity in the images' ownership labels; default: the UID of its kube-system "
            "namespace. Set it when the operator may not read that namespace."
        ),
    )
    resync_seconds: float = Field(
        600.0, gt=0, description="How often a Ready object is checked against the cloud."
    )
    min_resync_seconds: float = Field(
        30.0,
        gt=0,
        description=(
            "The shortest resync period an object may ask for with its resync-seconds annotation: "
            "a floor, so no object can make the operator poll the cloud in a loop."
        ),
    )
    default_deletion_policy: DeletionPolicy | None = Field(
        None,
        description=(
            "Applied to objects whose spec.deletionPolicy is unset; default: Delete for a copied image, "
            "Retain for an adopted one."
        ),
    )
    default_management_policy: ManagementPolicy = Field(
        "Manage", description="Applied to objects whose spec.managementPolicy is unset."
    )
    resync_jitter: float = Field(
        0.1,
        ge=0,
        lt=1,
        description=(
            "Random lengthening of each resync period (a fraction): a Ready object is checked again "
            "after the period and at most this much more, never sooner."
        ),
    )
    retry_base_seconds: float = Field(5.0, gt=0, description="First delay after a transient failure.")
    retry_cap_seconds: float = Field(300.0, gt=0, description="Longest delay after transient failures.")
    terminal_retry_base_seconds: float = Field(
        60.0, gt=0, description="First delay before retrying a terminal failure (the spec did not change)."
    )
    credentials_cache_seconds: float | None = Field(
        None,
        gt=0,
        description=(
            "How long a credentials Secret stays watched (and kept) after the last object used it; "
            "default: twice the resync period."
        ),
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
        description="The operator's own Kubernetes calls in flight at once (Lease calls have their own).",
    )
    metrics_port: int = Field(8080, ge=0, le=65535, description="Port of /metrics (0: disabled).")
    health_port: int = Field(
        8081, ge=0, le=65535, description="Port of the liveness endpoint /healthz (0: off)."
    )
    bind_address: str = Field("0.0.0.0", description="Address the metrics and health servers listen on.")
    leader_elect: bool = Field(
        True, description="Serve only while holding the Lease; false: a single instance, no election."
    )
    lease_name: str = Field(
        "desktop-image-operator", min_length=1, max_length=253, description="Name of the leader Lease."
    )
    lease_namespace: str | None = Field(
        None,
        min_length=1,
        max_length=63,
        description=(
            "Namespace of the Lease; default: the pod's own, else the one watched namespace, else default."
        ),
    )
    leader_identity: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="This instance in the Lease, events and logs; default: host name and a random suffix.",
    )
    lease_duration_seconds: float = Field(
        15.0, gt=0, le=3600, description="How long standbys wait after the last renewal before taking over."
    )
    renew_deadline_seconds: float = Field(
        10.0, gt=0, description="How long a leader keeps acting without a successful renewal."
    )
    retry_period_seconds: float = Field(
        2.0, gt=0, description="Pause between the attempts to acquire or renew the Lease."
    )
    grants_config_map: str = Field(
        "desktop-image-operator-grants",
        min_length=1,
        max_length=253,
        description=(
            "The ConfigMap, in the operator's namespace, whose key grants.yaml says which namespaces may use "
            "which credentials for which folders. Missing: no namespace borrows the operator's credentials."
        ),
    )
    grants_file: Path | None = Field(
        None, description="The grants document as a file instead of the ConfigMap (outside a cluster)."
    )
    grants_refresh_seconds: float = Field(
        10.0, gt=0, le=600, description="How often the grants (and namespace labels) are read again."
    )
    log_format: Literal["plain", "json"] = "plain"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    cloud: CloudSettings = Field(default_factory=CloudSettings)

    @model_validator(mode="after")
    def _election_timing(self) -> RunSettings:
        # The leader must fence itself before a standby may take over, and try to renew more than once.
        if self.renew_deadline_seconds >= self.lease_duration_seconds:
            raise ValueError("renew deadline must be shorter than the lease duration")
        if self.retry_period_seconds * 1.2 >= self.renew_deadline_seconds:
            raise ValueError("retry period must be well under the renew deadline (1.2 x retry < deadline)")
        return self

    @model_validator(mode="after")
    def _one_default_credential(self) -> RunSettings:
        chosen = [
            self.credentials_file is not None,
            self.use_metadata_credentials,
            self.iam_token is not None,
        ]
        if sum(chosen) > 1:
            raise ValueError("choose at most one of credentials file, metadata service and IAM token")
        return self
