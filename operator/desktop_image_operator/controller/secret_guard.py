"""Keep a credentials Secret until the last DesktopImage that names it is done with it.

A DesktopImage's delete handler calls the cloud with the key in its spec.credentialsRef Secret. When the
Secret goes first (a namespace deleted, a prune, `kubectl delete -k`), that call cannot be made and the
image, and its namespace, never finish deleting. So a Secret in use carries the operator's finalizer:
the API server marks it for deletion but keeps it readable until the finalizer is released.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from desktop_image_operator.controller.kube import KubeApi, KubeTimeout, KubeUnreachable, SecretMeta
from desktop_image_operator.controller.kube_http import KubeApiError
from desktop_image_operator.reconciler.annotations import CREDENTIALS_FINALIZER

_Key = tuple[str, str]


class SecretGuardError(Exception):
    """The finalizer could not be added or released; the message names the Secret (never its data).

    transient: worth trying again soon (a timeout, an overloaded or unreachable API server), as
    opposed to a refusal a person must fix (permissions, a Secret already being deleted).
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class SecretGuard:
    """Adds and releases the credentials finalizer; one per operator, shared by all objects."""

    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube
        # The (uid, resourceVersion) at which each Secret was known to carry the finalizer.
        self._held: dict[_Key, tuple[str, str]] = {}
        self._locks: dict[_Key, asyncio.Lock] = {}

    async def hold(self, namespace: str, secret_name: str) -> None:
        """Make sure the Secret carries the finalizer. A Secret that does not exist is left to the
        credentials read to report.

        While the latest read of the Secret (any, e.g. the credentials read) shows the version at which
        it was known to hold the finalizer, this makes no call at all.
        """
        key = (namespace, secret_name)
        async with self._lock(key), _reported(key, "add the finalizer to"):
            seen = self._kube.seen_secret(namespace, secret_name)
            if seen is not None and self._held.get(key) == seen.version:
                return
            if seen is None:
                seen = await self._kube.secret_metadata(namespace, secret_name)
            await self._ensure_held(key, seen)

    async def release_if_unused(self, namespace: str, secret_name: str, *, leaving_uid: str) -> None:
        """Release the Secret unless a DesktopImage other than `leaving_uid` still names it."""
        key = (namespace, secret_name)
        async with self._lock(key), _reported(key, "release the finalizer of"):
            images = await self._kube.list_desktop_images(namespace)
            if any(_uses(image, secret_name) for image in images if _uid(image) != leaving_uid):
                return
            self._held.pop(key, None)
            seen = await self._kube.secret_metadata(namespace, secret_name)
            if seen is not None and CREDENTIALS_FINALIZER in seen.finalizers:
                await self._kube.remove_secret_finalizer(namespace, secret_name, CREDENTIALS_FINALIZER)

    async def _ensure_held(self, key: _Key, seen: SecretMeta | None) -> None:
        if seen is not None and CREDENTIALS_FINALIZER not in seen.finalizers:
            if seen.deleting:
                # The API server accepts no new finalizer on an object being deleted.
                raise SecretGuardError(
                    f"Secret {key[0]}/{key[1]} is being deleted; its credentials will soon be gone.",
                    transient=False,
                )
            seen = await self._kube.add_secret_finalizer(*key, CREDENTIALS_FINALIZER)
        if seen is None:
            self._held.pop(key, None)
        else:
            self._held[key] = seen.version

    def _lock(self, key: _Key) -> asyncio.Lock:
        # hold and release of one Secret must not interleave, or a release could undo a fresh hold.
        return self._locks.setdefault(key, asyncio.Lock())


@asynccontextmanager
async def _reported(key: _Key, action: str) -> AsyncIterator[None]:
    """Turn what the client raises into SecretGuardError, keeping only what says what went wrong."""
    secret = f"Secret {key[0]}/{key[1]}"
    try:
        yield
    except KubeTimeout as error:
        raise SecretGuardError(f"Could not {action} {secret}: {error}", transient=True) from None
    except KubeApiError as error:
        transient = error.status == 429 or error.status >= 500
        raise SecretGuardError(
            f"Could not {action} {secret}: {_api_problem(error)}", transient=transient
        ) from None
    except KubeUnreachable as error:
        raise SecretGuardError(f"Could not {action} {secret}: {error}", transient=True) from None


def _api_problem(error: KubeApiError) -> str:
    # The status line only: a response body can echo the object it was about.
    if error.status == 403:
        return "the operator's RBAC does not allow it (HTTP 403)."
    return f"the API server answered HTTP {error.status} {error.reason}."


def _uses(image: dict[str, Any], secret_name: str) -> bool:
    ref = (image.get("spec") or {}).get("credentialsRef") or {}
    return bool(ref.get("name") == secret_name)


def _uid(image: dict[str, Any]) -> str | None:
    uid = (image.get("metadata") or {}).get("uid")
    return str(uid) if uid is not None else None
