"""Log set-up: plain lines for people, or one JSON object per line for log pipelines."""

from __future__ import annotations

import logging

import kopf


def configure_logging(log_format: str, level: str) -> None:
    kopf.configure(
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.PLAIN,
        verbose=level == "DEBUG",
        quiet=level in ("WARNING", "ERROR"),
    )
    logging.getLogger().setLevel(level)
    # Request logs of the HTTP clients would print URLs with IDs at every poll; keep them for DEBUG.
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    logging.captureWarnings(True)
