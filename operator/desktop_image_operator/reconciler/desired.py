"""What the cloud image should look like, and how an observed image differs from it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from desktop_image_operator.cloud.types import CloudImage
from desktop_image_operator.reconciler.ownership import Owner
from desktop_image_operator.reconciler.resource import Resource


@dataclass(frozen=True)
class DesiredImage:
    name: str
    description: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, resource: Resource, owner: Owner) -> DesiredImage:
        labels = dict(resource.spec.labels or {})
        labels.update(owner.labels())
        return cls(name=resource.image_name, description=resource.spec.description or "", labels=labels)

    def mask(self, image: CloudImage) -> list[str]:
        """The Update field mask: the fields whose cloud value differs, in a stable order."""
        changed = []
        if image.name != self.name:
            changed.append("name")
        if image.description != self.description:
            changed.append("description")
        if dict(image.labels) != dict(self.labels):
            changed.append("labels")
        return changed

    def change_digest(self, image: CloudImage, mask: list[str]) -> str:
        """Identifies one change of one observed state, for a deterministic idempotency key."""
        wanted = {"name": self.name, "description": self.description, "labels": dict(self.labels)}
        seen = {"name": image.name, "description": image.description, "labels": dict(image.labels)}
        payload = json.dumps({"mask": mask, "to": wanted, "from": seen}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


def observed_differences(resource: Resource, image: CloudImage) -> list[str]:
    """Under Observe, what the spec says that the image does not: only the fields the spec sets count
    (the image's own name when spec.name is unset, and labels beyond the spec's, are the owner's business)."""
    spec, differences = resource.spec, []
    if spec.name and image.name != spec.name:
        differences.append("name")
    if spec.description is not None and image.description != spec.description:
        differences.append("description")
    if any(image.labels.get(key) != value for key, value in (spec.labels or {}).items()):
        differences.append("labels")
    return differences
