"""Keep a credentials Secret until the last DesktopImage that names it is done with it.

A DesktopImage's delete handler calls the cloud with the key in its spec.credentialsRef Secret. When the
Secret goes first (a namespace deleted, a prune, `kubectl delete -k`), that call cannot be made and the
image, and its namespace, never finish deleting. So a Secret in use carries the operator's finalizer:
the API server marks it for deletion but keeps it readable until the finalizer is released.

The release rule. An object *needs* a Secret when it names it in spec.credentialsRef, its own cleanup is
not known to be done, and it is either live or still being deleted by us (it carries the operator's own
finalizer). The finalizer leaves the Secret once no object needs it. An object whose cleanup is done (its
delete handler deleted or retained its image) is recorded as finished first, then asks for the check: so
objects deleted together (a namespace deletion) never keep each other's Secret, whichever finishes last
finds all the others finished, and a finished object whose check failed and is tried again does not count
either. A live object always needs its Secret, even one being deleted: that is what the finalizer is for.

Checks of one Secret run one at a time and are shared: a check asked for while another runs is answered
by the next one to start, which begins after the ask and so sees everything finished by then. Hundreds of
objects deleted at once cost a few checks, not hundreds, and each check stops listing at the first object
that still needs the Secret. The check is asked for by a deletion's handler, by a reconcile of an object
whose credentialsRef no longer names a Secret it held, and for every Secret carrying the finalizer once at
the start of each term of service (`sweep`): what an object held is known only within a term, so the
sweep covers changes made while no term ran, and Secrets an older operator failed to release.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from desktop_image_operator.kube import KubeApi, KubeApiError, KubeTimeout, KubeUnreachable, SecretMeta
from desktop_image_operator.reconciler import CREDENTIALS_FINALIZER, FINALIZER

log = logging.getLogger(__name__)

_Key = tuple[str, str]
# How long an object's finished mark outlives the object. A listing's pages all show one moment, which
# the API server keeps for about five minutes (until it compacts its history): a check reading such a
# listing must still know the objects in it that finished and went since.
_GONE_KEPT_SECONDS = 900.0
# A mark whose object was never seen to go (a watch event missed) is dropped after a day. That errs on
# the safe side: an object still there would count as needing its Secret again until its delete handler
# runs again and marks it.
_MARK_KEPT_SECONDS = 86_400.0
_PRUNE_SECONDS = 60.0
# Namespace names with these characters are kopf patterns: the sweep then looks at every namespace.
_PATTERN = frozenset("*?[]!")


class SecretGuardError(Exception):
    """The finalizer could not be added or released; the message names the Secret (never its data).

    transient: worth trying again soon (a timeout, an overloaded or unreachable API server), as
    opposed to a refusal a person must fix (permissions, a Secret already being deleted).
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(eq=False)
class _Slot:
    """Per Secret: the lock that keeps a hold and a check apart, and the shared checks' tickets."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    asked: int = 0  # checks asked for so far
    answered: int = 0  # every ask up to this one was answered by a check that began after it


class SecretGuard:
    """Adds and releases the credentials finalizer; one per operator, shared by all objects."""

    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube
        # The (uid, resourceVersion) at which each Secret was known to carry the finalizer.
        self._held: dict[_Key, tuple[str, str]] = {}
        self._slots: dict[_Key, _Slot] = {}
        # Objects whose own cleanup is done: they need no Secret any more. uid -> when the entry may go.
        self._finished: dict[str, float] = {}
        self._next_prune = 0.0

    async def hold(self, namespace: str, secret_name: str) -> None:
        """Make sure the Secret carries the finalizer. A Secret that does not exist is left to the
        credentials read to report.

        While the latest read of the Secret (any, e.g. the credentials read) shows the version at which
        it was known to hold the finalizer, this makes no call at all.
        """
        key = (namespace, secret_name)
        async with self._slot(key).lock, _reported(key, "add the finalizer to"):
            seen = self._kube.seen_secret(namespace, secret_name)
            if seen is not None and self._held.get(key) == seen.version:
                return
            if seen is None:
                seen = await self._kube.secret_metadata(namespace, secret_name)
            await self._ensure_held(key, seen)

    async def release_if_unused(
        self, namespace: str, secret_name: str, *, leaving_uid: str | None = None
    ) -> None:
        """Release the Secret unless some object still needs it (see the module's rule).

        `leaving_uid` is an object whose cleanup is done: it is recorded as finished before the check.
        """
        if leaving_uid is not None:
            self._mark_finished(leaving_uid)
        key = (namespace, secret_name)
        slot = self._slot(key)
        slot.asked += 1
        ticket = slot.asked
        async with slot.lock, _reported(key, "release the finalizer of"):
            if slot.answered >= ticket:
                return  # a check that began after this ask has been made meanwhile
            began = slot.asked
            await self._release_unless_needed(key)
            slot.answered = began

    def forget(self, uid: str) -> None:
        """The object is gone. Its finished mark stays a while: a check may still be reading a listing
        made before it went."""
        if uid in self._finished:
            self._finished[uid] = min(self._finished[uid], time.monotonic() + _GONE_KEPT_SECONDS)

    def _mark_finished(self, uid: str) -> None:
        now = time.monotonic()
        self._finished[uid] = now + _MARK_KEPT_SECONDS
        if now >= self._next_prune:
            self._finished = {other: until for other, until in self._finished.items() if until > now}
            self._next_prune = now + _PRUNE_SECONDS

    async def sweep(self, namespaces: Sequence[str]) -> None:
        """Check every Secret carrying the finalizer in these namespaces (none, or patterns: all).

        Bounded by the listing's pages and each call's timeout. It never raises: a failure is logged,
        the next term sweeps again, and the next deletion or change of an object checks its own Secret.
        """
        scopes: Sequence[str | None] = (
            [None] if not namespaces or any(_PATTERN & set(n) for n in namespaces) else namespaces
        )
        for scope in scopes:
            try:
                secrets = await self._finalized_secrets(scope)
            except Exception as error:  # an API server away, a permission missing: the next term tries
                log.warning("could not list the credentials Secrets to check: %s", error)
                continue
            for namespace, name in secrets:
                try:
                    await self.release_if_unused(namespace, name)
                except Exception as error:  # one Secret's failure does not stop the others' checks
                    log.warning("could not check Secret %s/%s for release: %s", namespace, name, error)

    async def _finalized_secrets(self, namespace: str | None) -> list[_Key]:
        found: list[_Key] = []
        async for page in self._kube.secret_metadata_pages(namespace):
            for secret in page:
                meta = secret.get("metadata") or {}
                if CREDENTIALS_FINALIZER in (meta.get("finalizers") or ()):
                    found.append((meta.get("namespace", ""), meta.get("name", "")))
        return found

    async def _release_unless_needed(self, key: _Key) -> None:
        if await self._needed(*key):
            return
        self._held.pop(key, None)
        seen = await self._kube.secret_metadata(*key)
        if seen is not None and CREDENTIALS_FINALIZER in seen.finalizers:
            await self._kube.remove_secret_finalizer(*key, CREDENTIALS_FINALIZER)

    async def _needed(self, namespace: str, secret_name: str) -> bool:
        """Whether an object of the namespace needs the Secret."""
        pages = self._kube.desktop_image_pages(namespace)
        async with contextlib.aclosing(pages):  # stopping early closes the listing at once
            async for page in pages:
                if any(self._needs(image, secret_name) for image in page):
                    return True
        return False

    def _needs(self, image: dict[str, Any], secret_name: str) -> bool:
        if not _uses(image, secret_name) or _uid(image) in self._finished:
            return False
        metadata = image.get("metadata") or {}
        # Being deleted without our finalizer: nothing of ours runs for it any more (or never did).
        return not metadata.get("deletionTimestamp") or FINALIZER in (metadata.get("finalizers") or ())

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

    def _slot(self, key: _Key) -> _Slot:
        # hold and release of one Secret must not interleave, or a release could undo a fresh hold.
        return self._slots.setdefault(key, _Slot())


@asynccontextmanager
async def _reported(key: _Key, action: str) -> AsyncIterator[None]:
    """Turn what the client raises into SecretGuardError, keeping only what says what went wrong."""
    secret = f"Secret {key[0]}/{key[1]}"
    try:
        yield
    except KubeTimeout as error:
        raise SecretGuardError(f"Could not {action} {secret}: {error}", transient=True) from None
    except KubeApiError as error:
        # 410: a list's continue token expired under a long listing; the next check starts over.
        transient = error.status in (410, 429) or error.status >= 500
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
