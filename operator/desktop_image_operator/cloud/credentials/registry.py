"""One token source per distinct credential, shared by every object that uses it.

Sharing is what keeps IAM traffic at one exchange per key per refresh period however many DesktopImages
name the same Secret. Keys are identified by key id + service account + a hash of the key material (a
rotated key with a reused id is a different source); the registry never holds more than `max_entries`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping

from desktop_image_operator.cloud.credentials.keys import AuthorizedKey, parse_authorized_key
from desktop_image_operator.cloud.credentials.sources import (
    AuthorizedKeyTokenSource,
    MetadataTokenSource,
    StaticTokenSource,
    TokenSource,
)
from desktop_image_operator.cloud.credentials.token_service import TokenService

DEFAULT_MAX_ENTRIES = 256


class TokenSourceRegistry:
    def __init__(self, service: TokenService, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._service = service
        self._max_entries = max_entries
        self._sources: OrderedDict[tuple[str, ...], TokenSource] = OrderedDict()

    def __repr__(self) -> str:
        return f"TokenSourceRegistry(entries={len(self._sources)})"

    def __len__(self) -> int:
        return len(self._sources)

    def from_key(self, key: str | bytes | Mapping[str, object] | AuthorizedKey) -> TokenSource:
        """The shared source for an authorized key (its JSON text, decoded object, or parsed form).

        Raises `CredentialsError` for a malformed key.
        """
        parsed = key if isinstance(key, AuthorizedKey) else parse_authorized_key(key)
        identity = ("key", parsed.key_id, parsed.service_account_id, parsed.fingerprint)
        return self._get_or_add(identity, lambda: AuthorizedKeyTokenSource(parsed, self._service))

    def metadata(self) -> TokenSource:
        """The shared source backed by the instance metadata service."""
        return self._get_or_add(("metadata",), lambda: MetadataTokenSource(self._service))

    def static(self, token: str) -> TokenSource:
        """A source that always gives this IAM token."""
        identity = ("static", hashlib.sha256(token.strip().encode()).hexdigest())
        return self._get_or_add(identity, lambda: StaticTokenSource(token))

    def _get_or_add(self, identity: tuple[str, ...], make: Callable[[], TokenSource]) -> TokenSource:
        source = self._sources.get(identity)
        if source is not None:
            self._sources.move_to_end(identity)
            return source
        source = make()
        self._sources[identity] = source
        while len(self._sources) > self._max_entries:
            self._sources.popitem(last=False)
        return source
