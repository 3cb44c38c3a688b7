"""Deterministic names: ownership labels on cloud images and idempotency keys derived from the object's UID.

Deriving them from the UID (never from time or chance) is what lets a restarted operator recognise the
image and the operation it started before it died.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from desktop_image_operator.api import GROUP
from desktop_image_operator.api.constants import OWNER_UID_LABEL

_KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, GROUP)


def ownership_labels(uid: str) -> dict[str, str]:
    # Kubernetes UIDs are lowercase UUIDs: 36 characters of [0-9a-f-], a valid cloud label value.
    return {OWNER_UID_LABEL: uid.lower()}


def is_owned_by(labels: Mapping[str, str], uid: str) -> bool:
    return labels.get(OWNER_UID_LABEL) == uid.lower()


def _key(*parts: str) -> str:
    return str(uuid.uuid5(_KEY_NAMESPACE, "/".join(parts)))


def copy_key(uid: str, failed_operation_id: str | None = None) -> str:
    """The copy's idempotency key: fixed per object, so a copy repeated after a crash is the same copy.

    A new attempt after a copy that failed needs a new key (the old one would return the failed operation);
    deriving it from the failed operation's ID keeps it deterministic too.
    """
    if failed_operation_id:
        return _key(uid, "copy-after", failed_operation_id)
    return _key(uid, "copy")


def update_key(uid: str, image_id: str, change: str) -> str:
    """One key per intended change of one image: repeating the same change is the same call."""
    return _key(uid, "update", image_id, change)


def delete_key(uid: str, image_id: str) -> str:
    return _key(uid, "delete", image_id)
