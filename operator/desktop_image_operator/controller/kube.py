"""The operator's own Kubernetes calls (kopf makes the rest): status patches, Secret reads and finalizers,
and the leader election's Lease.

The official client is synchronous, so calls run in a small thread pool of their own: a stalled API
server then ties up these threads only, never the event loop's default executor that others share.
Every call carries a timeout, both on its socket and on the wait for its result (which also covers
time queued for a thread), so no caller waits longer than the timeout.

The client is configured the way kopf logs in: the in-cluster service account when there is one, else
the current kubeconfig.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import importlib.metadata
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from desktop_image_operator.api import GROUP, PLURAL, VERSION
from desktop_image_operator.cloud.fencing import CallGate

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_WORKERS = 8
# One more try for a lost connection, none after a read timed out: the caller's retry schedule, not
# urllib3's, decides when a slow API server is asked again, and a timed-out call frees its thread.
_RETRIES = urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0)
_STRATEGIC_MERGE = "application/strategic-merge-patch+json"


def _version() -> str:
    try:
        return importlib.metadata.version("desktop-image-operator")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def load_client_configuration() -> client.Configuration:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


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
    """A Secret from its JSON form (as a watch delivers it)."""
    meta = raw.get("metadata") or {}
    return SecretSnapshot(
        meta=SecretMeta(
            uid=meta.get("uid", ""),
            resource_version=meta.get("resourceVersion", ""),
            finalizers=tuple(meta.get("finalizers") or ()),
            deleting=meta.get("deletionTimestamp") is not None,
        ),
        data=_decoded(raw.get("data")),
    )


def _decoded(data: Mapping[str, str | bytes] | None) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (data or {}).items()}


FIELD_MANAGER = "desktop-image-operator"
USER_AGENT = f"desktop-image-operator/{_version()}"


class KubeApi:
    def __init__(
        self,
        configuration: client.Configuration,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        workers: int = DEFAULT_WORKERS,
        gate: CallGate | None = None,
    ) -> None:
        self._timeout = timeout_seconds
        # Writes to objects are fenced like cloud calls: a deposed leader must not overwrite its successor.
        self._gate = gate
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube-api")
        self._api = client.ApiClient(_bounded(configuration))
        # Who wrote what: the API server's audit log and managedFields name the operator, not the library.
        self._api.user_agent = USER_AGENT
        self._custom = client.CustomObjectsApi(self._api)
        self._core = client.CoreV1Api(self._api)
        self._coordination = client.CoordinationV1Api(self._api)
        self._secrets: dict[tuple[str, str], SecretMeta] = {}
        # Watches hold their connection for minutes: a client of their own keeps them apart from the calls.
        self._watch_api = client.ApiClient(_bounded(configuration))
        self._watch_api.user_agent = USER_AGENT
        self._watch_core = client.CoreV1Api(self._watch_api)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()
        self._watch_api.close()

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource of one DesktopImage; returns the object as written."""
        call = functools.partial(
            self._custom.patch_namespaced_custom_object_status, field_manager=FIELD_MANAGER
        )
        what = f"status patch of DesktopImage {namespace}/{name}"
        self._admit(what)
        written = await self._call(what, call, GROUP, VERSION, namespace, PLURAL, name, patch)
        return cast("dict[str, Any]", written)  # the client types custom objects as object

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        data = (await self.read_secret(namespace, name)).data
        if key not in data:
            raise SecretUnavailable(f"Secret {namespace}/{name} has no key {key!r}.")
        return data[key]

    async def read_secret(self, namespace: str, name: str) -> SecretSnapshot:
        """Read a whole Secret; SecretUnavailable when it does not exist or may not be read."""
        try:
            secret = await self._call(
                f"read of Secret {namespace}/{name}", self._core.read_namespaced_secret, name, namespace
            )
        except ApiException as error:
            if error.status == 404:
                self._secrets.pop((namespace, name), None)
                raise SecretUnavailable(f"Secret {namespace}/{name} does not exist.") from None
            if error.status == 403:
                raise SecretUnavailable(f"The operator may not read Secret {namespace}/{name}.") from None
            raise
        return SecretSnapshot(self._remember(namespace, name, secret), _decoded(secret.data))

    def saw_secret(self, namespace: str, name: str, meta: SecretMeta | None) -> None:
        """Record what a watch of the Secret saw (None: deleted), as a read would."""
        if meta is None:
            self._secrets.pop((namespace, name), None)
        else:
            self._secrets[(namespace, name)] = meta

    def open_secret_watch(
        self, namespace: str, name: str, since: str, seconds: int, *, read_slack: float
    ) -> urllib3.BaseHTTPResponse:
        """Start a watch of one Secret from version `since`; the response streams its events as JSON
        lines for `seconds` at most (the server ends it then).

        Blocking, for a thread of its own: a watch would hold one of the call pool's threads for its
        whole life. The socket read timeout is a little longer than the server's, so a connection that
        went silent ends the watch instead of keeping it waiting forever.
        """
        response = self._watch_core.list_namespaced_secret(
            namespace,
            field_selector=f"metadata.name={name}",
            resource_version=since,
            allow_watch_bookmarks=True,
            timeout_seconds=seconds,
            watch=True,
            _preload_content=False,
            _request_timeout=(self._timeout, seconds + read_slack),
        )
        return cast("urllib3.BaseHTTPResponse", response)

    def seen_secret(self, namespace: str, name: str) -> SecretMeta | None:
        """The Secret as the latest read or patch of it returned (no call); None when never seen."""
        return self._secrets.get((namespace, name))

    async def secret_metadata(self, namespace: str, name: str) -> SecretMeta | None:
        """Read a Secret's identity and finalizers; None when it does not exist."""
        what = f"read of Secret {namespace}/{name}"
        return await self._secret_call(
            namespace, name, what, self._core.read_namespaced_secret, name, namespace
        )

    async def add_secret_finalizer(self, namespace: str, name: str, finalizer: str) -> SecretMeta | None:
        """Add a finalizer to a Secret; None when it does not exist.

        A strategic merge of metadata.finalizers (a set on the server) adds to whatever list the Secret
        has by then, so a finalizer someone else adds or removes meanwhile is kept as they left it.
        """
        patch = {"metadata": {"finalizers": [finalizer]}}
        return await self._patch_secret(
            namespace, name, patch, f"finalizer patch of Secret {namespace}/{name}"
        )

    async def remove_secret_finalizer(self, namespace: str, name: str, finalizer: str) -> SecretMeta | None:
        """Remove a finalizer from a Secret, leaving the others as they are by then; None when it is gone."""
        patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": [finalizer]}}
        return await self._patch_secret(
            namespace, name, patch, f"finalizer patch of Secret {namespace}/{name}"
        )

    async def list_desktop_images(self, namespace: str) -> list[dict[str, Any]]:
        """All DesktopImages of one namespace, as the API server returns them."""
        call = self._custom.list_namespaced_custom_object
        what = f"list of DesktopImages in {namespace}"
        listing = cast("dict[str, Any]", await self._call(what, call, GROUP, VERSION, namespace, PLURAL))
        items: list[dict[str, Any]] = listing.get("items") or []
        return items

    async def desktop_image_uid(self, namespace: str, name: str) -> str | None:
        """The UID of one DesktopImage, or None when there is none of that name."""
        call = self._custom.get_namespaced_custom_object
        what = f"read of DesktopImage {namespace}/{name}"
        try:
            found = cast(
                "dict[str, Any]", await self._call(what, call, GROUP, VERSION, namespace, PLURAL, name)
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        uid: str | None = found.get("metadata", {}).get("uid")
        return uid

    async def namespace_uid(self, name: str) -> str:
        """The UID of a namespace (kube-system's identifies the cluster)."""
        found: Any = await self._call(f"read of namespace {name}", self._core.read_namespace, name)
        return str(found.metadata.uid)

    async def read_lease(self, namespace: str, name: str, *, within: float) -> LeaseRecord | None:
        """The Lease, or None when it does not exist."""
        what = f"read of Lease {namespace}/{name}"
        try:
            lease = await self._call(
                what, self._coordination.read_namespaced_lease, name, namespace, within=within
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return _lease_record(lease)

    async def create_lease(
        self, namespace: str, name: str, record: LeaseRecord, *, within: float
    ) -> LeaseRecord:
        """Create the Lease; LeaseConflict when it exists already."""
        call = self._coordination.create_namespaced_lease
        body = _lease_body(namespace, name, record)
        what = f"creation of Lease {namespace}/{name}"
        return await self._lease_write(what, call, namespace, body, within)

    async def replace_lease(
        self, namespace: str, name: str, record: LeaseRecord, *, within: float
    ) -> LeaseRecord:
        """Replace the Lease if it is still at `record.resource_version`; LeaseConflict when it is not."""
        call = functools.partial(self._coordination.replace_namespaced_lease, name)
        body = _lease_body(namespace, name, record)
        what = f"update of Lease {namespace}/{name}"
        return await self._lease_write(what, call, namespace, body, within)

    async def _lease_write(
        self, what: str, function: Callable[..., Any], namespace: str, body: dict[str, Any], within: float
    ) -> LeaseRecord:
        try:
            lease = await self._call(what, function, namespace, body, within=within)
        except ApiException as error:
            if error.status == 409:
                raise LeaseConflict(f"The {what} lost a race: the Lease changed meanwhile.") from None
            raise
        return _lease_record(lease)

    def _admit(self, what: str) -> None:
        if self._gate is not None:
            self._gate.check(what)

    async def _patch_secret(
        self, namespace: str, name: str, patch: dict[str, Any], what: str
    ) -> SecretMeta | None:
        self._admit(what)
        call = functools.partial(self._core.patch_namespaced_secret, _content_type=_STRATEGIC_MERGE)
        return await self._secret_call(namespace, name, what, call, name, namespace, patch)

    async def _secret_call(
        self, namespace: str, name: str, what: str, function: Callable[..., Any], *args: Any
    ) -> SecretMeta | None:
        try:
            secret = await self._call(what, function, *args)
        except ApiException as error:
            if error.status != 404:
                raise
            self._secrets.pop((namespace, name), None)
            return None
        return self._remember(namespace, name, secret)

    def _remember(self, namespace: str, name: str, secret: Any) -> SecretMeta:
        meta = secret.metadata
        seen = SecretMeta(
            uid=meta.uid,
            resource_version=meta.resource_version,
            finalizers=tuple(meta.finalizers or ()),
            deleting=meta.deletion_timestamp is not None,
        )
        self._secrets[(namespace, name)] = seen
        return seen

    async def _call(
        self, what: str, function: Callable[..., T], *args: Any, within: float | None = None
    ) -> T:
        """Run one client call in the pool; KubeTimeout when it has no answer within the timeout (the
        client's, or a shorter one the caller gives)."""
        limit = self._timeout if within is None else min(within, self._timeout)
        bound = functools.partial(function, *args, _request_timeout=limit)
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, bound), limit)
        except TimeoutError:
            raise _timed_out(what, limit) from None
        except urllib3.exceptions.MaxRetryError as error:
            if _is_timeout(error.reason):
                raise _timed_out(what, limit) from None
            raise
        except urllib3.exceptions.TimeoutError as error:
            if _is_timeout(error):
                raise _timed_out(what, limit) from None
            raise


def _timed_out(what: str, seconds: float) -> KubeTimeout:
    return KubeTimeout(f"The {what} timed out after {seconds:g} s.")


def _lease_record(lease: Any) -> LeaseRecord:
    spec = lease.spec
    return LeaseRecord(
        holder=spec.holder_identity or "",
        duration_seconds=spec.lease_duration_seconds or 0,
        acquired_at=spec.acquire_time,
        renewed_at=spec.renew_time,
        transitions=spec.lease_transitions or 0,
        resource_version=lease.metadata.resource_version or "",
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


def _is_timeout(error: Exception | None) -> bool:
    # urllib3 files "connection refused" under its connect timeout class; that one is no timeout.
    return isinstance(error, urllib3.exceptions.TimeoutError) and not isinstance(
        error, urllib3.exceptions.NewConnectionError
    )


def _bounded(configuration: client.Configuration) -> client.Configuration:
    """The caller's configuration with bounded retries, unless it chose its own."""
    if configuration.retries is not None:
        return configuration
    bounded = copy.deepcopy(configuration)
    bounded.retries = _RETRIES
    return bounded
