"""Which credentials an object's cloud calls use: its credentialsRef Secret, else the operator's default.

Token sources come from the session's registry, so every object naming the same key shares one IAM token.
A Secret is read once, then kept current by a watch (see secret_watch): a reconcile with an unchanged
Secret makes no Kubernetes call, a changed Secret takes effect when its change arrives, and a key the
cloud refuses is read again at once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from desktop_image_operator.api import GrantedCredentials
from desktop_image_operator.cloud import CloudSession, TokenSource
from desktop_image_operator.cloud.types import CloudError, DesktopImageClient
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.kube import KubeApi, SecretCache, SecretUnavailable, SecretWatches, WatchSource
from desktop_image_operator.observability import metrics
from desktop_image_operator.reconciler import Failure, Resource
from desktop_image_operator.reconciler import reasons as r

_Ref = tuple[str, str, str]  # namespace, Secret name, key


class Credentials:
    def __init__(
        self,
        session: CloudSession,
        kube: KubeApi,
        settings: RunSettings,
        *,
        watches: WatchSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        home: str = "",
    ) -> None:
        """`home` is the operator's own namespace, where the Secrets that grants lend live."""
        self._session = session
        self._home = home
        self._default = default_token_source(session, settings)
        self._default_client = session.client(self._default) if self._default else None
        idle = settings.credentials_cache_seconds or 2 * settings.resync_seconds
        watches = watches if watches is not None else SecretWatches(kube)
        self._secrets = SecretCache(
            kube, watches, idle_seconds=idle, clock=clock, on_read=metrics.SECRET_READS.inc
        )
        # The client last made for each reference, with a digest of the key it was made from.
        self._clients: dict[_Ref, tuple[bytes, DesktopImageClient]] = {}

    def forget(self, resource: Resource) -> None:
        """The cloud refused this object's credentials: read its Secret again next time."""
        ref = resource.spec.credentials_ref
        if ref is not None:
            self._secrets.forget(resource.namespace, ref.name)

    def clear(self) -> None:
        """Read every Secret again at its next use (for instance after a pause in which a watch may
        have gone deaf without noticing)."""
        self._secrets.clear()

    def close(self) -> None:
        """Stop watching Secrets."""
        self._secrets.close()

    async def client_for(
        self, resource: Resource, borrowed: GrantedCredentials | None = None
    ) -> DesktopImageClient:
        """The client for this object's calls: its own Secret's, else what a grant lends its namespace
        (the operator's own credentials, or a Secret in the operator's namespace), else the operator's.
        Raises Failure(CredentialsInvalid) when there is none.

        KubeTimeout passes through: a slow API server says nothing about the credentials.
        """
        ref = resource.spec.credentials_ref
        if ref is not None:
            where = (resource.namespace, ref.name, ref.key)
            return self._client(where, await self._key(where))
        if borrowed is not None and borrowed.secret_name is not None:
            where = (self._home, borrowed.secret_name, borrowed.key)
            return self._client(where, await self._key(where))
        if self._default_client is None:
            raise Failure(
                r.CREDENTIALS_INVALID,
                "No credentials: set spec.credentialsRef or give the operator default credentials.",
            )
        return self._default_client

    async def _key(self, where: _Ref) -> bytes:
        namespace, name, key_name = where
        try:
            secret = await self._secrets.get(namespace, name)
        except SecretUnavailable as error:
            raise Failure(r.CREDENTIALS_INVALID, str(error)) from None
        key = secret.data.get(key_name)
        if key is None:
            raise Failure(r.CREDENTIALS_INVALID, f"Secret {namespace}/{name} has no key {key_name!r}.")
        return key

    def _client(self, ref: _Ref, key: bytes) -> DesktopImageClient:
        digest = hashlib.sha256(key).digest()
        made = self._clients.get(ref)
        if made is not None and made[0] == digest:
            return made[1]
        try:
            source = self._session.token_sources.from_key(key)
        except (CloudError, ValueError) as error:
            # The parser's messages name the problem, never the key material.
            message = f"Secret {ref[0]}/{ref[1]} key {ref[2]!r} is not an authorized key: {error}"
            raise Failure(r.CREDENTIALS_INVALID, message) from None
        client = self._session.client(source)
        self._clients[ref] = (digest, client)
        return client


def default_token_source(session: CloudSession, settings: RunSettings) -> TokenSource | None:
    """The operator's own credentials, from its settings; None when it has none."""
    registry = session.token_sources
    if settings.credentials_file is not None:
        return registry.from_key(settings.credentials_file.read_bytes())
    if settings.use_metadata_credentials:
        return registry.metadata()
    if settings.iam_token is not None:
        return registry.static(settings.iam_token.get_secret_value())
    return None
