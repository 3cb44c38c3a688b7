"""The Secret-watch measurement runs against the real API server and reports what it should. Its memory
and timing figures are not asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import watches

pytestmark = pytest.mark.controlplane

SECRETS = 3


async def test_secrets_in_use_are_read_once_each_then_followed_by_a_watch_each(kubeconfig: Path) -> None:
    watches.create_secrets(kubeconfig, SECRETS)

    run = await watches.measure(kubeconfig, SECRETS)

    assert (run["secrets"], run["watched"], run["reads"], run["second_use_reads"]) == (
        SECRETS,
        SECRETS,
        SECRETS,
        0,
    )
    assert run["tasks_added"] == SECRETS
    assert run["sockets_added"] >= SECRETS
    assert run["rss_after_kb"] > 0
    assert run["change_seen_after_seconds"] < watches.CHANGE_TIMEOUT
    report = watches.render({"runs": [run], "machine": {}})
    assert f"| {SECRETS} | {SECRETS} | 0 |" in report
