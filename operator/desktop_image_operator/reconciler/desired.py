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
    """The image as the spec wants it. Of the labels, the operator owns only its ownership labels and the
    spec's: labels someone else set (in the console, by another tool) are left as they are, and a label
    the operator set earlier is removed only when the spec no longer has it (`released`)."""

    name: str
    description: str
    # The labels the operator sets: the spec's and its ownership labels.
    labels: Mapping[str, str] = field(default_factory=dict)
    # Keys the operator set before (status.appliedLabels) that the spec no longer has.
    released: frozenset[str] = frozenset()

    @classmethod
    def of(cls, resource: Resource, owner: Owner) -> DesiredImage:
        labels = dict(resource.spec.labels or {})
        labels.update(owner.labels())
        released = frozenset(resource.status.applied_labels or ()) - labels.keys()
        return cls(
            name=resource.image_name,
            description=resource.spec.description or "",
            labels=labels,
            released=released,
        )

    def labels_for(self, image: CloudImage) -> dict[str, str]:
        """The image's labels as they should be: others' kept, ours set, ours no longer wanted gone."""
        kept = {k: v for k, v in image.labels.items() if k not in self.released and k not in self.labels}
        return {**kept, **self.labels}

    def mask(self, image: CloudImage) -> list[str]:
        """The Update field mask: the fields whose cloud value differs, in a stable order."""
        changed = []
        if image.name != self.name:
            changed.append("name")
        if image.description != self.description:
            changed.append("description")
        if self.labels_for(image) != dict(image.labels):
            changed.append("labels")
        return changed

    def change_digest(self, image: CloudImage, mask: list[str]) -> str:
        """Identifies one change of one observed state, for a deterministic idempotency key."""
        wanted = {"name": self.name, "description": self.description, "labels": self.labels_for(image)}
        seen = {"name": image.name, "description": image.description, "labels": dict(image.labels)}
        payload = json.dumps({"mask": mask, "to": wanted, "from": seen}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def applied_keys(self, before: list[str] | None) -> list[str]:
        """status.appliedLabels once these labels are sent: what was applied before stays recorded until
        an image is seen to match (a crash in between must still let a removed key be removed)."""
        return sorted(set(before or ()) | self.labels.keys())


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
