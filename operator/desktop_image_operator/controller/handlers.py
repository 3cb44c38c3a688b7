"""The kopf handlers: thin, they only hand events to the Controller.

Reconciles are run by the controller's scheduler (one timer for all objects, not a kopf daemon each: a
daemon costs tasks, events and a copy of the body per object); watch events only tell the controller what
changed. No create, update or resume handler is registered, so kopf keeps no bookkeeping on the objects:
the only writes before Ready are the finalizer, the operation record and the Ready status. Deletion is
kopf's on.delete handler, which holds the finalizer until the cloud image is gone.

Handlers live on a registry of their own (not kopf's global one), so the operator registers exactly
these and tests can build a fresh operator per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
import kopf

from desktop_image_operator.api import GROUP, PLURAL, VERSION
from desktop_image_operator.controller.controller import Controller
from desktop_image_operator.kube import Login
from desktop_image_operator.reconciler import FINALIZER, PREFIX, Result

RESOURCE = (GROUP, VERSION, PLURAL)
LIST_PAGE_SIZE = 200
# kopf's connections to the API server beyond its watches (which hold one each): for finalizer patches
# and events, of which a burst of new objects brings hundreds at once. kopf's own session has no bound;
# a burst of 4,000 new objects held about 85 more connections than when quiet, each with its TLS buffers
# (some 200 KB), and they only queued at the API server anyway.
SPARE_CONNECTIONS = 16
# kopf's watches besides those of DesktopImages: the CRD scan, and the namespace scan for patterns.
_KOPF_SCANS = 2


def build_registry(controller: Controller, login: Login, namespaces: Sequence[str]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(id="configure", registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings)

    @kopf.on.login(id="login", registry=registry)
    async def log_in(**_: Any) -> kopf.AiohttpSession:
        return await kopf_session(login, namespaces)

    @kopf.on.delete(*RESOURCE, id="delete", registry=registry)
    async def deleted(body: kopf.Body, **_: Any) -> None:
        outcome = await controller.finalize(body)
        if outcome.result not in (Result.DELETED, Result.RETAINED):
            # kopf keeps the finalizer and calls again after the delay.
            delay = controller.deletion_retry_delay(body, outcome)
            raise kopf.TemporaryError(f"deletion not finished: {outcome.reason}", delay=delay)

    @kopf.on.event(*RESOURCE, id="watch", registry=registry)
    async def watched(type: str, body: kopf.Body, **_: Any) -> None:
        # Every watch event, our own status writes included: the controller keeps the newest body and asks
        # for a reconcile only for a change that matters (spec, annotations, a new object).
        controller.start_scheduling()  # from here: its reconciles need this handler's context
        if type == "DELETED":
            controller.forget(body)  # also when a finalizer was removed by hand: no ghost in the gauge
        else:
            controller.notice(body)

    return registry


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps no "last handled" copy of the object: nothing here reacts to diffs, the reconciler compares the
    object with the cloud itself. Without it kopf would patch an annotation onto every new object."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf's bookkeeping under our own names (only deletion retries use it); no framework defaults."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    # Our own events say what a person cares about; kopf's per-handler log lines would be noise and writes.
    settings.posting.loggers = False
    settings.watching.server_timeout = 300
    # The first listing (every start and leadership term) comes in pages: decoded whole, 5,000 objects
    # took some 100 MB at once, and the heap kept about 40 MB of it for good.
    settings.watching.chunk_size = LIST_PAGE_SIZE
    # kopf keeps a worker (with the object's last event) per recently changed object until it idles this
    # long; our handlers only note the event, so a short wait bounds what a burst of new objects holds.
    settings.queueing.idle_timeout = 0.5
    settings.networking.request_timeout = 60


async def kopf_session(login: Login, namespaces: Sequence[str]) -> kopf.AiohttpSession:
    """kopf's HTTP session, logged in as the operator's own calls are (TLS, proxy and impersonation
    included), with a bounded number of connections.

    kopf closes it and asks again when the API server refuses its token, so the token is read afresh here
    (a rotated ServiceAccount token, a new one from an exec plugin, which runs beside the event loop).
    The SSL context is the login's one, shared with the operator's own calls: an exec plugin's client
    certificate reaches both.
    """
    if login.token is not None:
        login.token.expire()
    authorization = await login.authorization()
    headers = [*login.headers(), *([("Authorization", authorization)] if authorization else [])]
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connection_limit(namespaces), ssl=login.ssl_context()),
        headers=headers or None,
        proxy=login.proxy_url,
    )
    return kopf.AiohttpSession(
        aiohttp_session=session, server=login.server, default_namespace=login.namespace
    )


def connection_limit(namespaces: Sequence[str]) -> int:
    """Room for every watch kopf keeps plus the spare ones; 0 (no bound) when namespace patterns make
    the number of watches unknown, since a watch waiting for a connection would never start."""
    if any(set(namespace) & set("*?[]!") for namespace in namespaces):
        return 0
    return max(1, len(namespaces)) + _KOPF_SCANS + SPARE_CONNECTIONS
