"""Start the operator: logging, the cloud session, the metrics and health endpoints, then kopf."""

from __future__ import annotations

import asyncio
import logging
import random

import kopf
import prometheus_client

from desktop_image_operator.cloud.session import open_cloud
from desktop_image_operator.controller.controller import Controller
from desktop_image_operator.controller.credentials import Credentials
from desktop_image_operator.controller.handlers import build_registry
from desktop_image_operator.controller.kube import KubeApi, load_client_configuration
from desktop_image_operator.controller.secret_guard import SecretGuard
from desktop_image_operator.controller.settings import OperatorSettings
from desktop_image_operator.observability.logs import configure_logging
from desktop_image_operator.reconciler.reconciler import Reconciler
from desktop_image_operator.reconciler.timing import Timing

log = logging.getLogger(__name__)


async def run_operator(settings: OperatorSettings, *, stop_flag: asyncio.Event | None = None) -> None:
    configure_logging(settings.log_format, settings.log_level)
    kube = KubeApi(
        load_client_configuration(),
        timeout_seconds=settings.kube_timeout_seconds,
        workers=settings.kube_workers,
    )
    try:
        async with open_cloud(settings.cloud) as session:
            controller = Controller(
                settings=settings,
                reconciler=Reconciler(timing=timing_of(settings)),
                credentials=Credentials(session, kube, settings),
                kube=kube,
                guard=SecretGuard(kube),
                rng=random.Random(),
            )
            if settings.metrics_port:
                prometheus_client.start_http_server(settings.metrics_port, addr=settings.bind_address)
            liveness = (
                f"http://{settings.bind_address}:{settings.health_port}/healthz"
                if settings.health_port
                else None
            )
            log.info(
                "starting: transport=%s namespaces=%s resync=%ss",
                settings.cloud.transport,
                ",".join(settings.namespaces) or "(all)",
                settings.resync_seconds,
            )
            await kopf.operator(
                registry=build_registry(controller),
                standalone=True,  # one replica (Recreate): no peering objects needed
                clusterwide=not settings.namespaces,
                namespaces=list(settings.namespaces),
                liveness_endpoint=liveness,
                stop_flag=stop_flag,
            )
    finally:
        kube.close()


def timing_of(settings: OperatorSettings) -> Timing:
    """The reconciler's delays, from the operator's settings."""
    return Timing(
        poll_base_seconds=settings.cloud.operation_poll_initial_seconds,
        poll_cap_seconds=settings.cloud.operation_poll_cap_seconds,
        retry_base_seconds=settings.retry_base_seconds,
        retry_cap_seconds=settings.retry_cap_seconds,
        terminal_retry_base_seconds=settings.terminal_retry_base_seconds,
        resync_seconds=settings.resync_seconds,
    )
