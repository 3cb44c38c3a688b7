"""The kopf handlers: thin, they only hand events to the Controller.

Handlers live on a registry of their own (not kopf's global one), so the operator registers exactly
these and tests can build a fresh operator per run.
"""

from __future__ import annotations

from typing import Any

import kopf

from desktop_image_operator.api import GROUP, PLURAL, VERSION
from desktop_image_operator.controller.controller import Controller
from desktop_image_operator.reconciler.annotations import FINALIZER, PREFIX
from desktop_image_operator.reconciler.reconciler import Result

RESOURCE = (GROUP, VERSION, PLURAL)


def build_registry(controller: Controller) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(id="configure", registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings)

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.resume(*RESOURCE, id="resume", registry=registry)
    async def resumed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await controller.reconcile(body, memo, trigger="resume")

    @kopf.on.create(*RESOURCE, id="create", registry=registry)
    async def created(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await controller.reconcile(body, memo, trigger="create")

    @kopf.on.update(*RESOURCE, id="update", registry=registry)
    async def updated(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await controller.reconcile(body, memo, trigger="update")

    @kopf.on.delete(*RESOURCE, id="delete", registry=registry)
    async def deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        outcome = await controller.finalize(body, memo)
        if outcome.result not in (Result.DELETED, Result.RETAINED):
            # kopf keeps the finalizer and calls again after the delay.
            delay = controller.deletion_retry_delay(memo, outcome)
            raise kopf.TemporaryError(f"deletion not finished: {outcome.reason}", delay=delay)

    @kopf.on.event(*RESOURCE, id="gone", registry=registry)
    def gone(type: str, body: kopf.Body, **_: Any) -> None:
        # Also when a finalizer was removed by hand: the objects gauge must not keep a ghost.
        if type == "DELETED":
            controller.forget(body)

    @kopf.daemon(*RESOURCE, id="resync", registry=registry, cancellation_timeout=5.0)
    async def resync(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
        await controller.resync_loop(body, memo, stopped)

    return registry


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf's bookkeeping under our own names; no framework defaults on the objects."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # Our own events say what a person cares about; kopf's per-handler log lines would be noise and writes.
    settings.posting.loggers = False
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
