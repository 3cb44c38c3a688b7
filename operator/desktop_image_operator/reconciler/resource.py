"""The DesktopImage as the reconciler reads it: parsed spec and status plus the metadata that matters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from desktop_image_operator.api import DeletionPolicy, DesktopImageSpec, DesktopImageStatus, ManagementPolicy
from desktop_image_operator.reconciler.access import Access
from desktop_image_operator.reconciler.annotations import ADOPT_FROM_OTHER_CLUSTER, PAUSED


class InvalidObject(Exception):
    """The object cannot be parsed; the API server's schema should have refused it."""


@dataclass(frozen=True)
class Policies:
    """Operator-wide defaults for what an object's spec leaves unset."""

    deletion: DeletionPolicy | None = None  # None: Delete for a copied image, Retain for an adopted one
    management: ManagementPolicy = "Manage"


@dataclass(frozen=True)
class Resource:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: DesktopImageSpec
    status: DesktopImageStatus
    paused: bool
    created_at: datetime | None = None
    adopts_from_other_cluster: bool = False
    policies: Policies = Policies()
    # What the grants allow the object's namespace (the controller sets it; alone, the reconciler allows all).
    access: Access = field(default_factory=Access)

    @property
    def image_name(self) -> str:
        return self.spec.name or self.name

    @property
    def source_id(self) -> str:
        source = self.spec.source
        return source.desktop_id or source.compute_image_id or source.image_id or ""

    @property
    def observe_only(self) -> bool:
        return self.spec.effective_management_policy(self.policies.management) == "Observe"

    @property
    def retains_image(self) -> bool:
        """Deleting the object leaves the cloud image (Retain, or an image the operator only observes)."""
        return self.observe_only or self.spec.effective_deletion_policy(self.policies.deletion) == "Retain"

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_body(cls, body: Mapping[str, Any], policies: Policies | None = None) -> Resource:
        metadata = body.get("metadata", {})
        try:
            spec = DesktopImageSpec.model_validate(body.get("spec") or {})
        except ValidationError as error:
            raise InvalidObject(_validation_message(error)) from error
        try:
            status = DesktopImageStatus.model_validate(_own_status(body.get("status")))
        except ValidationError:
            status = DesktopImageStatus()  # unreadable status: start over from the cloud's truth
        created = metadata.get("creationTimestamp")
        return cls(
            namespace=metadata.get("namespace", ""),
            name=metadata["name"],
            uid=metadata["uid"],
            generation=int(metadata.get("generation", 1)),
            spec=spec,
            status=status,
            paused=_is_true(metadata, PAUSED),
            adopts_from_other_cluster=_is_true(metadata, ADOPT_FROM_OTHER_CLUSTER),
            policies=policies or Policies(),
            created_at=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
        )


def _is_true(metadata: Mapping[str, Any], annotation: str) -> bool:
    return str((metadata.get("annotations") or {}).get(annotation, "")).lower() == "true"


def _own_status(status: Mapping[str, Any] | None) -> dict[str, Any]:
    # Only our fields: the schema prunes anything else, but an old object may still carry it.
    fields = {f.alias or name for name, f in DesktopImageStatus.model_fields.items()}
    return {k: v for k, v in (status or {}).items() if k in fields}


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"])
        parts.append(f"spec.{location}: {item['msg']}" if location else item["msg"])
    return "; ".join(parts)
