"""The operator's own Kubernetes calls (kopf makes the rest): status patches, Secret reads and finalizers,
owner look-ups, grants, and the leader election's Lease.

Calls run on the event loop, at most `concurrency` at once over as many connections: a burst of them
(a mass deletion's lists, say) queues here, never at the API server. Every call has one timeout that
covers its wait in that queue too, so no caller waits longer. Lease calls have a pool of their own,
outside that queue, so nothing else can make a renewal late. Watches have a third pool, without a bound,
since each holds its connection for good.

Writes to objects are fenced like cloud calls: checked by the leader's fence right before they go out
(after the queue), given no longer than the fence has left, and cancelled when it is revoked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.metadata
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import httpx

from desktop_image_operator.api import GROUP, PLURAL, VERSION
from desktop_image_operator.base import CallGate
from desktop_image_operator.kube._errors import (
    KubeApiError,
    KubeTimeout,
    KubeUnreachable,
    LeaseConflict,
    SecretUnavailable,
    StatusConflict,
)
from desktop_image_operator.kube._login import Login
from desktop_image_operator.kube._transport import Transport, WatchStream

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_CONCURRENCY = 8
_MERGE = "application/merge-patch+json"
_STRATEGIC_MERGE = "application/strategic-merge-patch+json"
_CUSTOM = f"/apis/{GROUP}/{VERSION}/namespaces"
_LEASES = "/apis/coordination.k8s.io/v1/namespaces"
# Lists come in pages of this many objects (limit/continue): a namespace of thousands is never one
# response, decoded whole on the event loop while everything else waits for it.
LIST_PAGE_SIZE = 200
# A bound on a listing whose continue tokens never end (two million objects: more than any real one).
_MAX_PAGES = 10_000
# Lists of Secrets ask for metadata only: their data (key material) never comes over the wire.
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
# Lease calls have connections of their own (one renewal runs at a time; a hand-back may overlap it).
# Queued behind a burst of other calls, a renewal would miss its deadline and the leader step down, and
# its successor would meet the same burst.
_LEASE_CONNECTIONS = 2
# Tries of a write conditional on the version just read, when the object keeps changing in between.
_PATCH_ATTEMPTS = 5


def _version() -> str:
    try:
        return importlib.metadata.version("desktop-image-operator")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class LeaseRecord:
    """A coordination.k8s.io/v1 Lease as leader election reads and writes it; `holder` "" when free."""

    holder: str
    duration_seconds: int
    acquired_at: datetime | None = None
    renewed_at: datetime | None = None
    transitions: int = 0
    resource_version: str = ""


@dataclass(frozen=True)
class SecretMeta:
    """What the operator keeps of a Secret it read: identity and finalizers, never data."""

    uid: str
    resource_version: str
    finalizers: tuple[str, ...]
    deleting: bool

    @property
    def version(self) -> tuple[str, str]:
        return self.uid, self.resource_version


@dataclass(frozen=True)
class SecretSnapshot:
    """A Secret as read or watched: its identity and finalizers, and its data decoded."""

    meta: SecretMeta
    data: Mapping[str, bytes] = field(repr=False)  # key material: never in a log line


def secret_snapshot(raw: Mapping[str, Any]) -> SecretSnapshot:
    """A Secret from its JSON form (as a read or a watch delivers it)."""
    return SecretSnapshot(meta=secret_meta(raw), data=_decoded(raw.get("data")))


def secret_meta(raw: Mapping[str, Any]) -> SecretMeta:
    """What the operator keeps of a Secret's metadata, from its JSON form."""
    meta = raw.get("metadata") or {}
    return SecretMeta(
        uid=meta.get("uid", ""),
        resource_version=meta.get("resourceVersion", ""),
        finalizers=tuple(meta.get("finalizers") or ()),
        deleting=meta.get("deletionTimestamp") is not None,
    )


def _decoded(data: Mapping[str, str | bytes] | None) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (data or {}).items()}


FIELD_MANAGER = "desktop-image-operator"
USER_AGENT = f"desktop-image-operator/{_version()}"


class KubeApi:
    def __init__(
        self,
        login: Login,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        concurrency: int = DEFAULT_CONCURRENCY,
        gate: CallGate | None = None,
    ) -> None:
        self._timeout = timeout_seconds
        # Writes to objects are fenced like cloud calls: a deposed leader must not overwrite its successor.
        self._gate = gate
        # Who wrote what: the API server's audit log and managedFields name the operator.
        self._calls = Transport(login, connections=concurrency, user_agent=USER_AGENT)
        # Created on first use, in the loop that uses it.
        self._queue: asyncio.Semaphore | None = None
        self._concurrency = concurrency
        # Watches hold their connection for good: a pool of their own keeps them apart from the calls,
        # with no bound, since every Secret in use has a watch and one kept waiting would never start.
        self._watches = Transport(login, connections=None, user_agent=USER_AGENT)
        self._leases = Transport(login, connections=_LEASE_CONNECTIONS, user_agent=USER_AGENT)
        self._secrets: dict[tuple[str, str], SecretMeta] = {}

    async def aclose(self) -> None:
        for transport in (self._calls, self._watches, self._leases):
            await transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def patch_status(
        self, namespace: str, name: str, patch: dict[str, Any], *, resource_version: str = ""
    ) -> dict[str, Any]:
        """Merge-patch the status subresource of one DesktopImage; returns the object as written.

        Fenced when it is sent. With `resource_version` it is conditional on the object being at that
        version still: StatusConflict when someone wrote it since (a successor leader, say), so a deposed
        leader never overwrites what its successor recorded.
        """
        what = f"status patch of DesktopImage {namespace}/{name}"
        path = f"{_CUSTOM}/{namespace}/{PLURAL}/{name}/status"
        params = {"fieldManager": FIELD_MANAGER}
        if resource_version:
            # A merge patch naming a resourceVersion is a precondition: the API server answers 409 on another.
            patch = {**patch, "metadata": {"resourceVersion": resource_version}}
        try:
            return await self._call(
                what, "PATCH", path, params=params, body=patch, content_type=_MERGE, fenced=True
            )
        except KubeApiError as error:
            if error.status == 409:
                raise StatusConflict(what) from None
            raise

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        data = (await self.read_secret(namespace, name)).data
        if key not in data:
            raise SecretUnavailable(f"Secret {namespace}/{name} has no key {key!r}.")
        return data[key]

    async def read_secret(self, namespace: str, name: str) -> SecretSnapshot:
        """Read a whole Secret; SecretUnavailable when it does not exist or may not be read."""
        try:
            secret = await self._call(f"read of Secret {namespace}/{name}", "GET", _secret(namespace, name))
        except KubeApiError as error:
            if error.status == 404:
                self._secrets.pop((namespace, name), None)
                raise SecretUnavailable(f"Secret {namespace}/{name} does not exist.") from None
            if error.status == 403:
                raise SecretUnavailable(f"The operator may not read Secret {namespace}/{name}.") from None
            raise
        snapshot = secret_snapshot(secret)
        self._secrets[(namespace, name)] = snapshot.meta
        return snapshot

    def saw_secret(self, namespace: str, name: str, meta: SecretMeta | None) -> None:
        """Record what a watch of the Secret saw (None: deleted), as a read would."""
        if meta is None:
            self._secrets.pop((namespace, name), None)
        else:
            self._secrets[(namespace, name)] = meta

    async def open_secret_watch(
        self, namespace: str, name: str, since: str, seconds: int, *, read_slack: float
    ) -> WatchStream:
        """Start a watch of one Secret from version `since`; the response streams its events as JSON
        lines for `seconds` at most (the server ends it then).

        Outside the calls' queue, which a watch would hold for its whole life. The read timeout is a
        little longer than the server's, so a connection that went silent ends the watch instead of
        keeping it waiting forever.
        """
        params = {
            "fieldSelector": f"metadata.name={name}",
            "resourceVersion": since,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        what = f"watch of Secret {namespace}/{name}"
        path = f"/api/v1/namespaces/{namespace}/secrets"
        return await self._watches.watch(
            what, path, params, connect_timeout=self._timeout, read_timeout=seconds + read_slack
        )

    def seen_secret(self, namespace: str, name: str) -> SecretMeta | None:
        """The Secret as the latest read or patch of it returned (no call); None when never seen."""
        return self._secrets.get((namespace, name))

    async def secret_metadata(self, namespace: str, name: str) -> SecretMeta | None:
        """Read a Secret's identity and finalizers; None when it does not exist."""
        what = f"read of Secret {namespace}/{name}"
        return await self._secret_call(namespace, name, what, "GET")

    async def add_secret_finalizer(self, namespace: str, name: str, finalizer: str) -> SecretMeta | None:
        """Add a finalizer to a Secret; None when it does not exist.

        A strategic merge of metadata.finalizers (a set on the server) adds to whatever list the Secret
        has by then, so a finalizer someone else adds or removes meanwhile is kept as they left it.
        """
        patch = {"metadata": {"finalizers": [finalizer]}}
        return await self._patch_secret(namespace, name, patch)

    async def remove_secret_finalizer(self, namespace: str, name: str, finalizer: str) -> SecretMeta | None:
        """Remove a finalizer from a Secret, leaving the others as they are by then; None when it is gone."""
        patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [finalizer]}}
        return await self._patch_secret(namespace, name, patch)

    async def list_desktop_images(self, namespace: str) -> list[dict[str, Any]]:
        """All DesktopImages of one namespace, as the API server returns them (fetched in pages)."""
        return [image async for page in self.desktop_image_pages(namespace) for image in page]

    def desktop_image_pages(self, namespace: str | None) -> AsyncGenerator[list[dict[str, Any]]]:
        """The DesktopImages of one namespace (None: of all), a page at a time."""
        if namespace is None:
            return self._pages("list of DesktopImages in all namespaces", f"/apis/{GROUP}/{VERSION}/{PLURAL}")
        return self._pages(f"list of DesktopImages in {namespace}", f"{_CUSTOM}/{namespace}/{PLURAL}")

    def secret_metadata_pages(self, namespace: str | None) -> AsyncGenerator[list[dict[str, Any]]]:
        """The Secrets of one namespace (None: of all), a page at a time, with their metadata only."""
        where, path = (
            ("all namespaces", "/api/v1/secrets")
            if namespace is None
            else (namespace, f"/api/v1/namespaces/{namespace}/secrets")
        )
        return self._pages(f"list of Secrets in {where}", path, accept=_METADATA_LIST)

    async def remove_desktop_image_finalizer(self, namespace: str, name: str, finalizer: str) -> bool:
        """Remove a finalizer from a DesktopImage, leaving its others; False when it had none or is gone.

        Custom objects take no strategic merge, so the new list is written conditional on the version it
        was worked out from, and worked out again when the object changed meanwhile (a few times at most).
        """
        what = f"finalizer patch of DesktopImage {namespace}/{name}"
        for _ in range(_PATCH_ATTEMPTS):
            try:
                return await self._drop_finalizer(namespace, name, finalizer, what)
            except KubeApiError as error:
                if error.status == 404:
                    return False
                if error.status != 409:
                    raise
        raise KubeApiError(what, 409, "Conflict")

    async def _drop_finalizer(self, namespace: str, name: str, finalizer: str, what: str) -> bool:
        path = f"{_CUSTOM}/{namespace}/{PLURAL}/{name}"
        metadata = (await self._call(f"read of DesktopImage {namespace}/{name}", "GET", path))["metadata"]
        finalizers = list(metadata.get("finalizers") or ())
        if finalizer not in finalizers:
            return False
        kept = [other for other in finalizers if other != finalizer]
        # A merge patch carrying resourceVersion is refused (409) when the object changed since the read.
        patch = {"metadata": {"finalizers": kept, "resourceVersion": metadata["resourceVersion"]}}
        await self._call(what, "PATCH", path, body=patch, content_type=_MERGE, fenced=True)
        return True

    async def _pages(self, what: str, path: str, **request: Any) -> AsyncGenerator[list[dict[str, Any]]]:
        """A list, a page at a time. KubeTimeout when it has not ended after _MAX_PAGES pages (so a
        caller never takes part of a list for the whole); KubeApiError 410 when the continue token
        expired (the list must start over)."""
        token = ""
        for _ in range(_MAX_PAGES):
            params = {"limit": str(LIST_PAGE_SIZE), **({"continue": token} if token else {})}
            listing = await self._call(what, "GET", path, params=params, **request)
            yield listing.get("items") or []
            token = (listing.get("metadata") or {}).get("continue") or ""
            if not token:
                return
        raise KubeTimeout(f"The {what} did not end within {_MAX_PAGES} pages.")

    async def desktop_image_uid(self, namespace: str, name: str) -> str | None:
        """The UID of one DesktopImage, or None when there is none of that name."""
        path = f"{_CUSTOM}/{namespace}/{PLURAL}/{name}"
        found = await self._get_or_none(f"read of DesktopImage {namespace}/{name}", path)
        return None if found is None else found.get("metadata", {}).get("uid")

    async def namespace_labels(self, name: str) -> dict[str, str] | None:
        """A namespace's labels (its grants select it by them); None when there is no such namespace."""
        found = await self._get_or_none(f"read of namespace {name}", f"/api/v1/namespaces/{name}")
        return None if found is None else dict(found.get("metadata", {}).get("labels") or {})

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data (the operator's grants); None when there is no such ConfigMap."""
        path = f"/api/v1/namespaces/{namespace}/configmaps/{name}"
        found = await self._get_or_none(f"read of ConfigMap {namespace}/{name}", path)
        return None if found is None else dict(found.get("data") or {})

    async def _get_or_none(self, what: str, path: str, **request: Any) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._call(what, "GET", path, **request)
        except KubeApiError as error:
            if error.status == 404:
                return None
            raise
        return found

    async def namespace_uid(self, name: str) -> str:
        """The UID of a namespace (kube-system's identifies the cluster)."""
        found = await self._call(f"read of namespace {name}", "GET", f"/api/v1/namespaces/{name}")
        return str(found["metadata"]["uid"])

    async def read_lease(self, namespace: str, name: str, *, within: float) -> LeaseRecord | None:
        """The Lease, or None when it does not exist."""
        path = f"{_LEASES}/{namespace}/leases/{name}"
        lease = await self._get_or_none(f"read of Lease {namespace}/{name}", path, within=within, lease=True)
        return None if lease is None else _lease_record(lease)

    async def create_lease(
        self, namespace: str, name: str, record: LeaseRecord, *, within: float
    ) -> LeaseRecord:
        """Create the Lease; LeaseConflict when it exists already."""
        what = f"creation of Lease {namespace}/{name}"
        path = f"{_LEASES}/{namespace}/leases"
        return await self._lease_write(what, "POST", path, _lease_body(namespace, name, record), within)

    async def replace_lease(
        self, namespace: str, name: str, record: LeaseRecord, *, within: float
    ) -> LeaseRecord:
        """Replace the Lease if it is still at `record.resource_version`; LeaseConflict when it is not."""
        what = f"update of Lease {namespace}/{name}"
        path = f"{_LEASES}/{namespace}/leases/{name}"
        return await self._lease_write(what, "PUT", path, _lease_body(namespace, name, record), within)

    async def _lease_write(
        self, what: str, method: str, path: str, body: dict[str, Any], within: float
    ) -> LeaseRecord:
        try:
            lease = await self._call(what, method, path, body=body, within=within, lease=True)
        except KubeApiError as error:
            if error.status == 409:
                raise LeaseConflict(what) from None
            raise
        return _lease_record(lease)

    async def _patch_secret(self, namespace: str, name: str, patch: dict[str, Any]) -> SecretMeta | None:
        what = f"finalizer patch of Secret {namespace}/{name}"
        return await self._secret_call(
            namespace, name, what, "PATCH", body=patch, content_type=_STRATEGIC_MERGE, fenced=True
        )

    async def _secret_call(
        self, namespace: str, name: str, what: str, method: str, **request: Any
    ) -> SecretMeta | None:
        try:
            secret = await self._call(what, method, _secret(namespace, name), **request)
        except KubeApiError as error:
            if error.status != 404:
                raise
            self._secrets.pop((namespace, name), None)
            return None
        meta = secret_meta(secret)
        self._secrets[(namespace, name)] = meta
        return meta

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        within: float | None = None,
        lease: bool = False,
        fenced: bool = False,
        **request: Any,
    ) -> dict[str, Any]:
        """Make one request (in the Lease's own pool with `lease`); KubeTimeout when it has no answer
        within the timeout (the client's, or a shorter one the caller gives), its wait for a turn
        included. A `fenced` one goes out only through the gate, see `_fenced`."""
        limit = self._timeout if within is None else min(within, self._timeout)
        try:
            async with asyncio.timeout(limit):
                if lease:
                    return await self._leases.request(what, method, path, within=limit, **request)
                async with self._turn(), self._fenced(what, fenced) as fence_left:
                    within = min(limit, fence_left)
                    return await self._calls.request(what, method, path, within=within, **request)
        except (TimeoutError, httpx.TimeoutException):
            raise KubeTimeout(f"The {what} timed out after {limit:g} s.") from None
        except httpx.TransportError as error:
            problem = f"could not reach the API server ({type(error).__name__})"
            raise KubeUnreachable(f"The {what} {problem}.") from None

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """A place among the calls in flight (as many as the pool has connections, so none waits there)."""
        if self._queue is None:
            self._queue = asyncio.Semaphore(self._concurrency)
        async with self._queue:
            yield

    @contextlib.asynccontextmanager
    async def _fenced(self, what: str, fenced: bool) -> AsyncIterator[float]:
        """For a fenced write: checked now, right before it goes out rather than before its turn came;
        yields how long it may take (what the fence has left), and is cancelled (`Fenced`) when the
        fence is revoked meanwhile."""
        if not fenced or self._gate is None:
            yield float("inf")
            return
        async with self._gate.guard(what):
            yield self._gate.remaining()


def _secret(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets/{name}"


def _lease_record(lease: Mapping[str, Any]) -> LeaseRecord:
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        duration_seconds=spec.get("leaseDurationSeconds") or 0,
        acquired_at=_parse_time(spec.get("acquireTime")),
        renewed_at=_parse_time(spec.get("renewTime")),
        transitions=spec.get("leaseTransitions") or 0,
        resource_version=(lease.get("metadata") or {}).get("resourceVersion") or "",
    )


def _lease_body(namespace: str, name: str, record: LeaseRecord) -> dict[str, Any]:
    """The Lease as JSON; resourceVersion makes a replace conditional on what was read."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if record.resource_version:
        metadata["resourceVersion"] = record.resource_version
    spec: dict[str, Any] = {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration_seconds,
        "leaseTransitions": record.transitions,
        "acquireTime": _micro_time(record.acquired_at),
        "renewTime": _micro_time(record.renewed_at),
    }
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata}
    return {**body, "spec": {key: value for key, value in spec.items() if value is not None}}


def _micro_time(moment: datetime | None) -> str | None:
    """Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
