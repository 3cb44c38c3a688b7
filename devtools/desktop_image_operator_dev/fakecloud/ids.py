"""Resource ids shaped like Yandex Cloud ones: a three-character prefix and 17 lowercase characters."""

from __future__ import annotations

import secrets
import uuid

_ALPHABET = "abcdefghijklmnopqrstuv0123456789"


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(20 - len(prefix)))


def new_request_id() -> str:
    return str(uuid.uuid4())
