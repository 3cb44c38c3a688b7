"""Start the operator: logging, the cloud session, the metrics and health endpoints, then kopf.

With leader election (the default) the process comes up warm as a standby (settings read, cloud session
open, endpoints serving) and runs kopf only while it holds the Lease. Losing the Lease shuts the fence at
once (no cloud call or status write goes out, and the cloud calls in flight are cancelled), stops kopf and
goes back to standby. SIGTERM shuts the
fence, hands the Lease back at once, then lets kopf stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import signal
from collections.abc import AsyncIterator, Sequence
from typing import Any

import kopf
import prometheus_client
from aiohttp import web

from desktop_image_operator.base import Fence
from desktop_image_operator.cloud import open_cloud
from desktop_image_operator.controller.controller import Controller
from desktop_image_operator.controller.credentials import Credentials
from desktop_image_operator.controller.grant_book import ConfigMapGrants, FileGrants, GrantBook, GrantSource
from desktop_image_operator.controller.handlers import build_registry
from desktop_image_operator.controller.leadership import (
    ElectionConfig,
    LeaderElection,
    instance_identity,
    lease_namespace,
    wait_for_event,
)
from desktop_image_operator.controller.owners import ClusterOwners, cluster_identity
from desktop_image_operator.controller.run_settings import RunSettings
from desktop_image_operator.controller.schedule import timing_of
from desktop_image_operator.controller.secret_guard import SecretGuard
from desktop_image_operator.kube import KubeApi, Login, load_login
from desktop_image_operator.observability import memory, metrics
from desktop_image_operator.observability.logs import configure_logging
from desktop_image_operator.reconciler import Reconciler

log = logging.getLogger(__name__)

REPORTING_COMPONENT = "desktop-image-operator"
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long a shutdown waits for kopf to stop after the Lease was handed back (kopf bounds its own steps).
_KOPF_STOP_SECONDS = 30.0
_READY_POLL_SECONDS = 0.1


async def run_operator(settings: RunSettings, *, stop_flag: asyncio.Event | None = None) -> None:
    configure_logging(settings.log_format, settings.log_level)
    fence = Fence() if settings.leader_elect else None
    login = load_login()
    kube = KubeApi(
        login,
        timeout_seconds=settings.kube_timeout_seconds,
        concurrency=settings.kube_workers,
        gate=fence,
    )
    try:
        cloud = open_cloud(settings.cloud, gate=fence, observe_request=metrics.observe_cloud_request)
        async with cloud as session:
            # The credentials stop their Secret watches before the Kubernetes calls' client closes.
            home = lease_namespace(settings)  # the operator's own namespace: its grants and lent Secrets
            credentials = Credentials(session, kube, settings, home=home)
            with contextlib.closing(credentials):
                controller = Controller(
                    settings=settings,
                    reconciler=Reconciler(
                        timing=timing_of(settings),
                        cluster_id=await cluster_identity(kube, settings.cluster_id),
                        owners=ClusterOwners(kube),
                    ),
                    credentials=credentials,
                    kube=kube,
                    guard=SecretGuard(kube),
                    grants=GrantBook(grant_source(settings, kube, home), kube),
                    rng=random.Random(),
                )
                if settings.metrics_port:
                    prometheus_client.start_http_server(settings.metrics_port, addr=settings.bind_address)
                async with _releasing_memory():
                    if fence is None:
                        await _run_alone(settings, controller, login, stop_flag)
                    else:
                        election = LeaderElection(kube, ElectionConfig.from_settings(settings), fence=fence)
                        await Replica(settings, controller, election, login, shutdown=stop_flag).run()
    finally:
        await kube.aclose()


@contextlib.asynccontextmanager
async def _releasing_memory() -> AsyncIterator[None]:
    """Memory freed after bursts goes back to the system, for the whole life of the process."""
    gc.freeze()  # what exists by now (modules, settings, clients) lives on: later collections skip it
    task = asyncio.create_task(memory.keep_releasing(), name="memory release")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _run_alone(
    settings: RunSettings, controller: Controller, login: Login, stop_flag: asyncio.Event | None
) -> None:
    """Without election: kopf at once, its own /healthz; nothing stops a second instance."""
    identity = instance_identity(settings)
    liveness = (
        f"http://{settings.bind_address}:{settings.health_port}/healthz" if settings.health_port else None
    )
    _log_start(settings, identity)
    metrics.lead()
    async with controller.serving():
        await kopf.operator(
            registry=registry_for(controller, identity, login, settings.namespaces),
            standalone=True,  # no kopf peering: the Lease (or running alone) decides who acts
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            liveness_endpoint=liveness,
            stop_flag=stop_flag,
        )


class Replica:
    """One instance under leader election: standby until it wins the Lease, then kopf until it loses it."""

    def __init__(
        self,
        settings: RunSettings,
        controller: Controller,
        election: LeaderElection,
        login: Login,
        *,
        shutdown: asyncio.Event | None = None,
    ) -> None:
        self._settings = settings
        self._controller = controller
        self._election = election
        self._login = login
        self._shutdown = shutdown or asyncio.Event()
        self.identity = election.config.identity

    async def run(self) -> None:
        self._install_signals()
        _log_start(self._settings, self.identity)
        log.info("%s is a standby for Lease %s", self.identity, self._election.config.lease)
        metrics.stand_by()
        try:
            async with self._health_server():
                while await self._election.acquire(self._shutdown):
                    await self._lead()
                    if not self._shutdown.is_set():
                        log.info("%s is a standby again", self.identity)
        finally:
            await self._election.release()
            self._remove_signals()

    async def _lead(self) -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        # Both tasks exist before kopf starts: kopf, when it stops, cancels every task born while it ran.
        renewal = asyncio.create_task(self._election.hold(), name="lease renewal")
        renewal.add_done_callback(lambda _: stop.set())
        guard = asyncio.create_task(self._guard(stop, ready), name="shutdown guard")
        try:
            async with self._controller.serving():
                await kopf.operator(
                    registry=registry_for(
                        self._controller, self.identity, self._login, self._settings.namespaces
                    ),
                    standalone=True,
                    clusterwide=not self._settings.namespaces,
                    namespaces=list(self._settings.namespaces),
                    stop_flag=stop,
                    ready_flag=ready,
                )
        finally:
            if not stop.is_set():  # kopf ended on its own: a signal it caught first, or a fatal error
                self._on_signal()
            renewal.cancel()
            await _finish(guard, cancel=not self._shutdown.is_set())
            await _finish(renewal, cancel=True)
            self._install_signals()  # kopf's handlers point at its finished run

    async def _guard(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        """Take the signals back from kopf once it has started; on shutdown hand the Lease back, then
        stop kopf (which shuts down in its own time, fenced)."""
        # kopf installs its handlers before it reports ready (its startup handlers run in between).
        while not (stop.is_set() or self._shutdown.is_set()):
            if await wait_for_event(ready, _READY_POLL_SECONDS):
                break
        self._install_signals()
        await self._shutdown.wait()
        await self._election.release()
        stop.set()

    def _on_signal(self) -> None:
        self._election.step_down()  # first of all: no cloud call from now on
        self._shutdown.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for number in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(number, self._on_signal)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for number in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(number)

    @contextlib.asynccontextmanager
    async def _health_server(self) -> AsyncIterator[None]:
        """/healthz (alive, leader or standby) and /readyz (warm and not shutting down)."""
        if not self._settings.health_port:
            yield
            return
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._settings.bind_address, self._settings.health_port).start()
            yield
        finally:
            await runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response(self._state())

    async def _readyz(self, request: web.Request) -> web.Response:
        return web.json_response(self._state(), status=503 if self._shutdown.is_set() else 200)

    def _state(self) -> dict[str, Any]:
        return {"instance": self.identity, "leader": self._election.leading}


def registry_for(
    controller: Controller, identity: str, login: Login, namespaces: Sequence[str]
) -> kopf.OperatorRegistry:
    """The handlers, plus a startup handler that signs every event with this instance's identity."""
    registry = build_registry(controller, login, namespaces)

    @kopf.on.startup(id="instance", registry=registry)
    def name_instance(settings: kopf.OperatorSettings, **_: Any) -> None:
        # `kubectl describe` shows the component; the event's reportingInstance names the pod that acted.
        settings.posting.reporting_component = REPORTING_COMPONENT
        settings.posting.reporting_instance = identity

    return registry


async def _finish(task: asyncio.Task[None], *, cancel: bool) -> None:
    """Wait for a helper task (cancelled first if asked), bounded, swallowing its end."""
    if cancel:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        async with asyncio.timeout(_KOPF_STOP_SECONDS):
            await task


def _log_start(settings: RunSettings, identity: str) -> None:
    log.info(
        "starting %s: transport=%s namespaces=%s resync=%ss",
        identity,
        settings.cloud.transport,
        ",".join(settings.namespaces) or "(all)",
        settings.resync_seconds,
    )


def grant_source(settings: RunSettings, kube: KubeApi, home: str) -> GrantSource:
    """Where the grants are read: the file named in the settings, else the ConfigMap in `home`."""
    if settings.grants_file is not None:
        return FileGrants(settings.grants_file)
    return ConfigMapGrants(kube, home, settings.grants_config_map)
