"""Which credentials an object's cloud calls use: its credentialsRef Secret, else the operator's default.

Token sources come from the session's registry, so every object naming the same key shares one IAM token.
A Secret's key is read once and kept for a while (`credentials_cache_seconds`), not on every reconcile: a
changed Secret takes effect within that time, and at once when the cloud refuses the cached key.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from desktop_image_operator.cloud.credentials.sources import TokenSource
from desktop_image_operator.cloud.errors import CloudError
from desktop_image_operator.cloud.session import CloudSession
from desktop_image_operator.cloud.types import DesktopImageClient
from desktop_image_operator.controller.kube import KubeApi, SecretUnavailable
from desktop_image_operator.controller.settings import RunSettings
from desktop_image_operator.reconciler import conditions as c
from desktop_image_operator.reconciler.failures import Failure
from desktop_image_operator.reconciler.resource import Resource

_Ref = tuple[str, str, str]  # namespace, Secret name, key


class Credentials:
    def __init__(
        self,
        session: CloudSession,
        kube: KubeApi,
        settings: RunSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._kube = kube
        self._default = default_token_source(session, settings)
        self._default_client = session.client(self._default) if self._default else None
        self._max_age = settings.credentials_cache_seconds
        self._clock = clock
        self._cached: dict[_Ref, tuple[float, DesktopImageClient]] = {}

    def forget(self, resource: Resource) -> None:
        """The cloud refused this object's credentials: read its Secret again next time."""
        ref = resource.spec.credentials_ref
        if ref is not None:
            self._cached.pop((resource.namespace, ref.name, ref.key), None)

    async def client_for(self, resource: Resource) -> DesktopImageClient:
        """The client for this object's calls; raises Failure(CredentialsInvalid) when there is none.

        KubeTimeout passes through: a slow API server says nothing about the credentials.
        """
        ref = resource.spec.credentials_ref
        if ref is None:
            if self._default_client is None:
                raise Failure(
                    c.CREDENTIALS_INVALID,
                    "No credentials: set spec.credentialsRef or give the operator default credentials.",
                )
            return self._default_client
        cached = self._cached.get((resource.namespace, ref.name, ref.key))
        if cached is not None and self._clock() - cached[0] < self._max_age:
            return cached[1]
        client = await self._read(resource)
        self._cached[(resource.namespace, ref.name, ref.key)] = (self._clock(), client)
        return client

    async def _read(self, resource: Resource) -> DesktopImageClient:
        ref = resource.spec.credentials_ref
        assert ref is not None
        try:
            key = await self._kube.read_secret_key(resource.namespace, ref.name, ref.key)
            source = self._session.token_sources.from_key(key)
        except SecretUnavailable as error:
            raise Failure(c.CREDENTIALS_INVALID, str(error)) from None
        except (CloudError, ValueError) as error:
            # The parser's messages name the problem, never the key material.
            message = (
                f"Secret {resource.namespace}/{ref.name} key {ref.key!r} is not an authorized key: {error}"
            )
            raise Failure(c.CREDENTIALS_INVALID, message) from None
        return self._session.client(source)


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
