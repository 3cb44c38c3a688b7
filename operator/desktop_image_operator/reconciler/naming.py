"""Deterministic idempotency keys, derived from the object's UID (ownership labels are in `ownership`).

Deriving them from the UID (never from time or chance) is what lets a restarted operator repeat the very
call it made before it died, and the cloud recognise it.
"""

from __future__ import annotations

import uuid

from desktop_image_operator.api import GROUP

_KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, GROUP)


def _key(*parts: str) -> str:
    return str(uuid.uuid5(_KEY_NAMESPACE, "/".join(parts)))


# Keys per attempt. Each key includes the latest operation recorded in status (`after`): a call re-sent
# because its answer never arrived finds status unchanged and sends the same key (the cloud returns the
# operation it already started); once an operation is recorded, whatever comes next (a retry after it
# failed, or a change back to an earlier state) gets a new key. No extra status write is needed for it.


def copy_key(uid: str, after: str | None = None) -> str:
    """The copy's key: the first depends on the UID alone, so a copy repeated after a crash is the same."""
    return _key(uid, "copy-after", after) if after else _key(uid, "copy")


def update_key(uid: str, image_id: str, change: str, after: str | None) -> str:
    """One key per attempt at one change of one image."""
    return _key(uid, "update", image_id, change, after or "")


def delete_key(uid: str, image_id: str, after: str | None) -> str:
    return _key(uid, "delete", image_id, after or "")
