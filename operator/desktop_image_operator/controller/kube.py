"""The operator's own Kubernetes calls (kopf makes the rest): status patches, Secret reads and finalizers,
and the leader election's Lease.

The HTTP client is synchronous, so calls run in a small thread pool of their own: a stalled API server
then ties up these threads only, never the event loop's default executor that others share. Every call
carries a timeout, both on its socket and on the wait for its result (which also covers time queued for
a thread), so no caller waits longer than the timeout.

The client logs in as kopf does (one `kubeconfig.Login` serves both): the pod's ServiceAccount when there
is one, else the current kubeconfig. Errors are three: KubeApiError (an error status), KubeTimeout and
KubeUnreachable; each message names the call.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import importlib.metadata
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from desktop_image_operator.api import GROUP, PLURAL, VERSION
from desktop_image_operator.cloud.fencing import CallGate
from desktop_image_operator.controller.kube_http import KubeApiError, KubeHttp, WatchStream
from desktop_image_operator.controller.kubeconfig import Login

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_WORKERS = 8
_MERGE = "application/merge-patch+json"
_STRATEGIC_MERGE = "application/strategic-merge-patch+json"
_CUSTOM = f"/apis/{GROUP}/{VERSION}/namespaces"
_LEASES = "/apis/coordination.k8s.io/v1/namespaces"


def _version() -> str:
    try:
        return importlib.metadata.version("desktop-image-operator")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class LeaseConflict(Exception):
    """The Lease changed since it was read (or exists already): someone else wrote it first."""


@dataclass(frozen=True)
class LeaseRecord:
    """A coordination.k8s.io/v1 Lease as leader election reads and writes it; `holder` "" when free."""

    holder: str
    duration_seconds: int
    acquired_at: datetime | None = None
    renewed_at: datetime | None = None
    transitions: int = 0
    resource_version: str = ""


class SecretUnavailable(Exception):
    """The credentials Secret or its key cannot be read; the message says which and why (never the data)."""


class KubeTimeout(Exception):
    """A Kubernetes call got no answer in time; the message names the call and the timeout."""


class KubeUnreachable(Exception):
    """A Kubernetes call found no API server to talk to (refused, reset, no route); the message names it."""


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
        workers: int = DEFAULT_WORKERS,
        gate: CallGate | None = None,
    ) -> None:
        self._timeout = timeout_seconds
        # Writes to objects are fenced like cloud calls: a deposed leader must not overwrite its successor.
        self._gate = gate
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube-api")
        # Who wrote what: the API server's audit log and managedFields name the operator.
        self._http = KubeHttp(login, connections=workers, user_agent=USER_AGENT)
        # Watches hold their connection for minutes: a client of their own keeps them apart from the calls.
        self._watch_http = KubeHttp(login, connections=workers, user_agent=USER_AGENT)
        self._secrets: dict[tuple[str, str], SecretMeta] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()
        self._watch_http.close()

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource of one DesktopImage; returns the object as written."""
        what = f"status patch of DesktopImage {namespace}/{name}"
        self._admit(what)
        path = f"{_CUSTOM}/{namespace}/{PLURAL}/{name}/status"
        params = {"fieldManager": FIELD_MANAGER}
        return await self._call(what, "PATCH", path, params=params, body=patch, content_type=_MERGE)

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

    def open_secret_watch(
        self, namespace: str, name: str, since: str, seconds: int, *, read_slack: float
    ) -> WatchStream:
        """Start a watch of one Secret from version `since`; the response streams its events as JSON
        lines for `seconds` at most (the server ends it then).

        Blocking, for a thread of its own: a watch would hold one of the call pool's threads for its
        whole life. The socket read timeout is a little longer than the server's, so a connection that
        went silent ends the watch instead of keeping it waiting forever.
        """
        params = {
            "fieldSelector": f"metadata.name={name}",
            "resourceVersion": since,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        what = f"watch of Secret {namespace}/{name}"
        path = f"/api/v1/namespaces/{namespace}/secrets"
        return self._watch_http.watch(
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
        """All DesktopImages of one namespace, as the API server returns them."""
        what = f"list of DesktopImages in {namespace}"
        listing = await self._call(what, "GET", f"{_CUSTOM}/{namespace}/{PLURAL}")
        items: list[dict[str, Any]] = listing.get("items") or []
        return items

    async def desktop_image_uid(self, namespace: str, name: str) -> str | None:
        """The UID of one DesktopImage, or None when there is none of that name."""
        what = f"read of DesktopImage {namespace}/{name}"
        try:
            found = await self._call(what, "GET", f"{_CUSTOM}/{namespace}/{PLURAL}/{name}")
        except KubeApiError as error:
            if error.status == 404:
                return None
            raise
        uid: str | None = found.get("metadata", {}).get("uid")
        return uid

    async def namespace_uid(self, name: str) -> str:
        """The UID of a namespace (kube-system's identifies the cluster)."""
        found = await self._call(f"read of namespace {name}", "GET", f"/api/v1/namespaces/{name}")
        return str(found["metadata"]["uid"])

    async def read_lease(self, namespace: str, name: str, *, within: float) -> LeaseRecord | None:
        """The Lease, or None when it does not exist."""
        what = f"read of Lease {namespace}/{name}"
        try:
            lease = await self._call(what, "GET", f"{_LEASES}/{namespace}/leases/{name}", within=within)
        except KubeApiError as error:
            if error.status == 404:
                return None
            raise
        return _lease_record(lease)

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
            lease = await self._call(what, method, path, body=body, within=within)
        except KubeApiError as error:
            if error.status == 409:
                raise LeaseConflict(f"The {what} lost a race: the Lease changed meanwhile.") from None
            raise
        return _lease_record(lease)

    def _admit(self, what: str) -> None:
        if self._gate is not None:
            self._gate.check(what)

    async def _patch_secret(self, namespace: str, name: str, patch: dict[str, Any]) -> SecretMeta | None:
        what = f"finalizer patch of Secret {namespace}/{name}"
        self._admit(what)
        return await self._secret_call(
            namespace, name, what, "PATCH", body=patch, content_type=_STRATEGIC_MERGE
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
        self, what: str, method: str, path: str, *, within: float | None = None, **request: Any
    ) -> dict[str, Any]:
        """Make one request in the pool; KubeTimeout when it has no answer within the timeout (the
        client's, or a shorter one the caller gives)."""
        limit = self._timeout if within is None else min(within, self._timeout)
        bound = functools.partial(self._http.request, what, method, path, timeout=limit, **request)
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, bound), limit)
        except (TimeoutError, httpx.TimeoutException):
            raise KubeTimeout(f"The {what} timed out after {limit:g} s.") from None
        except httpx.TransportError as error:
            problem = f"could not reach the API server ({type(error).__name__})"
            raise KubeUnreachable(f"The {what} {problem}.") from None


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
