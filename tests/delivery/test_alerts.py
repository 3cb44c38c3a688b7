"""The chart's alerts and dashboard against a real operator.

The operator runs as its own process against the local control plane and the fake cloud, and is scraped in
each state an alert is about: healthy; with a failed copy and failing cloud calls; as a standby while no
instance leads; and not at all (down). Each pair of scrapes, with the labels Prometheus gives a target of the
chart's ServiceMonitor, becomes promtool's input series, and Prometheus' own rule engine (`promtool test
rules`) decides which of the rendered PrometheusRule's alerts fire. Every dashboard query is evaluated on the
same series and must return data.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from desktop_image_operator_dev.helm import CHART, Helm
from tests.delivery.support import only
from tests.support.kube import Kubectl, apply, unique_name, wait_ready, wait_reason
from tests.support.manifests import desktop_image, from_compute_image
from tests.support.processes import FakeCloudProcess, OperatorProcess, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.slow, pytest.mark.timeout(900)]

RELEASE, RELEASE_NAMESPACE = "dio", "operators"
# What Prometheus adds to every series of a target that the chart's ServiceMonitor finds.
TARGET = {
    "job": f"{RELEASE}-desktop-image-operator-metrics",
    "namespace": RELEASE_NAMESPACE,
    "instance": "10.1.2.3:8080",
}
# promtool's clock: a sample a minute for three hours. Alerts are judged at two hours, later than the longest
# `for` plus window of the chart's defaults (1h), so each alert has had the time to fire.
STEP, SAMPLES, JUDGED_AT = "1m", 180, "2h"
FIRING = 'group by (alertname, reason, severity) (ALERTS{alertstate="firing"})'
LEASE = "desktop-image-operator"


@dataclass(frozen=True)
class Scrapes:
    """Two scrapes of one operator, taken a few seconds apart."""

    first: str
    second: str


Sample = tuple[str, tuple[tuple[str, str], ...]]


def _samples(text: str) -> dict[Sample, tuple[float, bool]]:
    """Each sample of a scrape: its value, and whether it only grows (a counter or a histogram's parts)."""
    found: dict[Sample, tuple[float, bool]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            cumulative = family.type in ("counter", "histogram") and not sample.name.endswith("_created")
            found[(sample.name, tuple(sorted(sample.labels.items())))] = (sample.value, cumulative)
    return found


def _series(name: str, labels: dict[str, str]) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    return name + "{" + ", ".join(f"{key}={quoted(value)}" for key, value in sorted(labels.items())) + "}"


def input_series(scrapes: Scrapes | None) -> list[dict[str, str]]:
    """promtool input series as Prometheus would have stored them: `up` for the target, and every sample of
    the scrapes. Gauges keep the second scrape's value; counters grow every step by as much as they grew
    between the two scrapes. `None`: the target is down, so only `up` (0) exists."""
    series = [{"series": _series("up", TARGET), "values": f"{0 if scrapes is None else 1}x{SAMPLES}"}]
    if scrapes is None:
        return series
    before = _samples(scrapes.first)
    for (name, labels), (value, cumulative) in sorted(_samples(scrapes.second).items()):
        assert math.isfinite(value), f"{name}{dict(labels)} = {value}"
        if cumulative:
            start = before.get((name, labels), (value, True))[0]
            values = f"{start!r}+{value - start!r}x{SAMPLES}"
        else:
            values = f"{value!r}x{SAMPLES}"
        series.append({"series": _series(name, {**dict(labels), **TARGET}), "values": values})
    return series


# -- the operator in each state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    healthy: Scrapes
    failing: Scrapes
    standby: Scrapes


def _cloud_errors(text: str) -> float:
    return sum(
        value
        for (name, labels), (value, _) in _samples(text).items()
        if name == "desktop_image_operator_cloud_requests_total" and dict(labels)["code"] != "OK"
    )


def _lease_held_elsewhere(namespace: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": namespace},
        "spec": {
            "holderIdentity": "elsewhere",
            "leaseDurationSeconds": 3600,
            "acquireTime": now,
            "renewTime": now,
        },
    }


@pytest.fixture(scope="module")
def observed(
    kubectl: Kubectl,
    kubeconfig: Path,
    crd: None,
    fake_cloud_process: FakeCloudProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Observed:
    cloud = fake_cloud_process
    cloud.reset()
    namespace = unique_name("alerts")
    kubectl("create", "namespace", namespace)
    operator = OperatorProcess(tmp_path_factory.mktemp("acting"), kubeconfig, cloud, namespace=namespace)
    try:
        apply(kubectl, namespace, desktop_image("steady"))
        wait_ready(kubectl, namespace, "steady")
        healthy = Scrapes(operator.metrics(), operator.metrics())

        # A copy whose operation ends in an error (retried only after a minute), and copies the cloud
        # refuses outright on every try.
        cloud.fault(method="DesktopImageService.Copy", failOperation=True, code="INTERNAL")
        cloud.fault(method="DesktopImageService.CopyFromDesktop", code="UNAVAILABLE")
        apply(kubectl, namespace, from_compute_image("broken"), desktop_image("refused"))
        wait_reason(kubectl, namespace, "broken", "CopyFailed")
        wait_reason(kubectl, namespace, "refused", "CloudUnavailable")
        first = operator.metrics()

        def more_errors() -> str | None:
            # The second scrape must show the failures going on, or the error rate would read as zero.
            text = operator.metrics()
            return text if _cloud_errors(text) > _cloud_errors(first) else None

        failing = Scrapes(first, wait_until(more_errors, timeout=30, what="more failed cloud calls"))

        cloud.reset()  # no faults: the objects' deletion goes through
        kubectl("delete", "desktopimages", "--all", "-n", namespace, "--timeout=60s", timeout=70)
    finally:
        operator.stop()

    # An instance that waits for a Lease another holder keeps renewing: a standby, while nothing leads.
    apply(kubectl, namespace, _lease_held_elsewhere(namespace))
    standby = OperatorProcess(
        tmp_path_factory.mktemp("standby"),
        kubeconfig,
        cloud,
        namespace=namespace,
        extra_env={
            "DESKTOP_IMAGE_OPERATOR_LEADER_ELECT": "true",
            "DESKTOP_IMAGE_OPERATOR_LEASE_NAMESPACE": namespace,
        },
    )
    try:
        standing_by = Scrapes(standby.metrics(), standby.metrics())
    finally:
        standby.stop()
    kubectl("delete", "namespace", namespace, "--wait=false")
    return Observed(healthy, failing, standing_by)


# -- promtool ------------------------------------------------------------------------------------------------


def _rule_file(helm: Helm, directory: Path) -> Path:
    """The PrometheusRule the chart renders, as the rule file Prometheus loads from it."""
    rule = only(
        helm.render({"prometheusRule": {"enabled": True}}, release=RELEASE, namespace=RELEASE_NAMESPACE),
        "PrometheusRule",
    )
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def _run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _test_rules(promtool: Path, directory: Path, rules: Path | None, tests: list[dict[str, Any]]) -> None:
    unit = {"evaluation_interval": STEP, "tests": tests}
    if rules is not None:
        unit["rule_files"] = [rules.name]
    (directory / "tests.yaml").write_text(yaml.safe_dump(unit, sort_keys=False))
    result = _run(promtool, "test", "rules", "tests.yaml", cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_rules_pass_promtool_check(helm: Helm, promtool: Path, tmp_path: Path) -> None:
    rules = _rule_file(helm, tmp_path)
    result = _run(promtool, "check", "rules", rules.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout, result.stdout


def _alert(name: str, severity: str, reason: str = "") -> dict[str, Any]:
    labels = {"alertname": name, "severity": severity, **({"reason": reason} if reason else {})}
    return {"labels": _series("", labels), "value": 1}


EXPECTED = {
    "healthy": [],
    "failing": [
        _alert("DesktopImageNotReady", "warning", "CopyFailed"),
        _alert("DesktopImageNotReady", "warning", "CloudUnavailable"),
        _alert("DesktopImageCopyFailed", "warning"),
        _alert("DesktopImageOperatorCloudErrors", "warning"),
    ],
    "standby": [_alert("DesktopImageOperatorNoLeader", "critical")],
    "down": [_alert("DesktopImageOperatorDown", "critical")],
}


@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_each_alert_fires_in_its_scenario_and_no_other(
    scenario: str, observed: Observed, helm: Helm, promtool: Path, tmp_path: Path
) -> None:
    scrapes: Scrapes | None = getattr(observed, scenario, None)
    test = {
        "name": scenario,
        "interval": STEP,
        "input_series": input_series(scrapes),
        "promql_expr_test": [{"expr": FIRING, "eval_time": JUDGED_AT, "exp_samples": EXPECTED[scenario]}],
    }
    _test_rules(promtool, tmp_path, _rule_file(helm, tmp_path), [test])


def _dashboard_queries() -> list[str]:
    """Every query of the dashboard, with Grafana's variables as a dashboard showing everything sets them."""
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    variables = {"$namespace": ".*", "$job": ".*", "$__rate_interval": "5m"}
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            query = target["expr"]
            for variable, value in variables.items():
                query = query.replace(variable, value)
            assert "$" not in query, f"{panel['title']}: a variable left in {query}"
            queries.append(query)
    return queries


def test_every_dashboard_query_returns_data_from_a_real_operator(
    observed: Observed, promtool: Path, tmp_path: Path
) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 17
    test = {
        "name": "dashboard",
        "interval": STEP,
        "input_series": input_series(observed.failing),
        # absent() of a query is empty exactly when the query returns something.
        "promql_expr_test": [
            {"expr": f"absent({q})", "eval_time": JUDGED_AT, "exp_samples": []} for q in queries
        ],
    }
    _test_rules(promtool, tmp_path, None, [test])


def test_the_dashboard_reads_only_metrics_the_operator_serves(observed: Observed) -> None:
    served = {name for name, _ in _samples(observed.failing.second)}
    used = {name for query in _dashboard_queries() for name in re.findall(r"[a-z_]+(?=\{)", query)}
    assert used, "no metric found in the dashboard's queries"
    assert used <= served, sorted(used - served)


def test_objects_are_reported_by_their_synced_condition(observed: Observed) -> None:
    synced = {
        dict(labels)["status"]: value
        for (name, labels), (value, _) in _samples(observed.failing.second).items()
        if name == "desktop_image_operator_objects_synced"
    }
    # steady: Synced; broken (its copy failed in the cloud) and refused (the cloud refuses): not Synced.
    assert synced == {"True": 1, "False": 2, "Unknown": 0}
    build = [
        labels
        for (name, labels), _ in _samples(observed.failing.second).items()
        if name.endswith("build_info")
    ]
    assert len(build) == 1
    assert dict(build[0])["version"]
