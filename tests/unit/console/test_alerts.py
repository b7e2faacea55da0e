"""deploy/prometheus/console-alerts.yml alerts on series console/metrics.py really exposes, and is loaded."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from console import metrics
from tests.unit.deploy.test_deploy import (
    PROMETHEUS,
    TARGET_LABELS,
    _strip,
    alert_rules,
    metric_catalogue,
    promql_grouping_labels,
    promql_selectors,
    promtool,
)

RULES = PROMETHEUS / "console-alerts.yml"


def label_names() -> dict[str, tuple[str, set[str]]]:
    return metric_catalogue(metrics)


def rules() -> list[dict[str, Any]]:
    return alert_rules(RULES)


def test_metric_names_follow_the_conventions() -> None:
    series = label_names()
    assert {"customs_console_requests_total", "customs_console_sse_clients", "customs_console_results_recorded_total",
            "customs_console_publish_failures_total"} <= set(series)
    for name, (kind, _) in series.items():
        assert name.startswith("customs_console_")
        assert (kind == "counter") == name.endswith("_total"), name


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_alerts_use_real_series_and_labels(rule: dict[str, Any]) -> None:
    series = {name: labels for name, (_, labels) in label_names().items()}
    selectors = promql_selectors(rule["expr"])
    assert selectors, rule["alert"]
    for name, matchers in selectors:
        assert name in series, f"{rule['alert']}: {name} is not a series of console/metrics.py"
        assert matchers <= series[name] | TARGET_LABELS, f"{rule['alert']}: {name} has no label(s) {matchers - series[name]}"
    assert promql_grouping_labels(rule["expr"]) <= set().union(*series.values()) | TARGET_LABELS
    for _func, name in re.findall(r"\b(rate|irate|increase)\(\s*([A-Za-z_:][\w:]*)", _strip(rule["expr"])):
        assert name.endswith(("_total", "_bucket")), f"{rule['alert']}: rate over {name}, not a counter"
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert re.fullmatch(r"\d+[smh]", str(rule["for"]))


def test_prometheus_loads_the_rules() -> None:
    for config in ("prometheus.yml", "prometheus-k8s.yml"):
        assert RULES.name in yaml.safe_load((PROMETHEUS / config).read_text())["rule_files"], config


def test_promtool_checks_the_console_rules_and_their_unit_tests() -> None:
    tool = promtool()
    for args in (("check", "rules", RULES.name), ("test", "rules", "tests/console-alerts.test.yml")):
        result = subprocess.run([tool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
