"""Who owns a cloud image: the ownership labels the operator stamps, and what they say about an object.

The labels identify the owning object by UID and by cluster, namespace and name. The UID says "this very
object"; the rest survives a re-creation (a re-applied manifest after Retain, a restore into the same
cluster), whose new object has a new UID but the same namespace and name. Names are unique, so an image
whose owner has our namespace and name but another UID belongs to an object that no longer exists.
The name label spells a name's dots as underscores, which cloud label values allow (see `name_label`).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from desktop_image_operator.api import (
    OWNER_CLUSTER_LABEL,
    OWNER_NAME_LABEL,
    OWNER_NAMESPACE_LABEL,
    OWNER_UID_LABEL,
)

_LABEL_VALUE_MAX = 63
_DIGEST_LENGTH = 16


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_DIGEST_LENGTH]


def cluster_label(cluster_id: str) -> str:
    """The cluster label's value: a digest, so the cluster's identity is not spelled out in the cloud."""
    return _digest(cluster_id)


def name_label(name: str) -> str:
    """A Kubernetes name as a cloud label value ([-_0-9a-z]*, at most 63 characters).

    Object names are RFC 1123 subdomains (lowercase letters, digits, '-' and '.'); the cloud refuses '.'
    in label values, so each '.' becomes '_', which no Kubernetes name contains: the mapping is one-to-one
    and `name_from_label` undoes it. A name still longer than 63 characters is cut and ends in a digest of
    the whole name, so two long names that share a beginning keep distinct values.
    """
    value = name.replace(".", "_")
    if len(value) <= _LABEL_VALUE_MAX:
        return value
    return value[: _LABEL_VALUE_MAX - _DIGEST_LENGTH - 1] + "-" + _digest(name)


def name_from_label(value: str) -> str:
    """The Kubernetes name a name label holds (meaningful only when the label was not cut short)."""
    return value.replace("_", ".")


@dataclass(frozen=True)
class Owner:
    """An owning object, as the labels spell it (cluster is the cluster label's value)."""

    uid: str
    cluster: str
    namespace: str
    name: str

    @classmethod
    def of(cls, uid: str, cluster_id: str, namespace: str, name: str) -> Owner:
        return cls(uid.lower(), cluster_label(cluster_id), namespace, name_label(name))

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Owner | None:
        uid = labels.get(OWNER_UID_LABEL)
        if not uid:
            return None
        return cls(
            uid,
            labels.get(OWNER_CLUSTER_LABEL, ""),
            labels.get(OWNER_NAMESPACE_LABEL, ""),
            labels.get(OWNER_NAME_LABEL, ""),
        )

    def labels(self) -> dict[str, str]:
        return {
            OWNER_UID_LABEL: self.uid,
            OWNER_CLUSTER_LABEL: self.cluster,
            OWNER_NAMESPACE_LABEL: self.namespace,
            OWNER_NAME_LABEL: self.name,
        }

    @property
    def ref(self) -> str:
        return f"DesktopImage {self.namespace}/{self.object_name} (uid {self.uid})"

    @property
    def object_name(self) -> str:
        """The owning object's name as Kubernetes spells it (dots back in place)."""
        return name_from_label(self.name)

    @property
    def name_is_whole(self) -> bool:
        """False when the name label may be a shortened long name (it cannot be looked up then)."""
        return len(self.name) < _LABEL_VALUE_MAX


class Claim(enum.Enum):
    """What an image's labels say about it, seen from one object."""

    OURS = "ours"  # stamped for this very object
    PREVIOUS = "previous"  # stamped for an earlier object of our namespace and name: gone, so ours now
    OTHER_OBJECT = "other-object"  # another object of this cluster, which may still exist
    OTHER_CLUSTER = "other-cluster"  # an object of another cluster (or of an operator before these labels)
    UNOWNED = "unowned"  # no ownership labels: made by hand, or by another tool


def claim(labels: Mapping[str, str], me: Owner) -> tuple[Claim, Owner | None]:
    owner = Owner.from_labels(labels)
    if owner is None:
        return Claim.UNOWNED, None
    if owner.uid == me.uid:
        return Claim.OURS, owner
    if owner.cluster != me.cluster:
        return Claim.OTHER_CLUSTER, owner
    if (owner.namespace, owner.name) == (me.namespace, me.name):
        return Claim.PREVIOUS, owner
    return Claim.OTHER_OBJECT, owner


def is_ours(labels: Mapping[str, str], me: Owner) -> bool:
    """Stamped for this object, or for an earlier object of our namespace and name (gone by now)."""
    return claim(labels, me)[0] in (Claim.OURS, Claim.PREVIOUS)


class Owners(Protocol):
    """Whether an owning object still exists in this cluster (the controller asks the API server)."""

    async def exists(self, owner: Owner) -> bool: ...


class AssumeOwnersExist:
    """The safe default: never take an image over from another object."""

    async def exists(self, owner: Owner) -> bool:
        return True
