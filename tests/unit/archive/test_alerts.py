"""deploy/prometheus/archive-alerts.yml alerts on series archive/metrics.py really exposes, and is loaded.

tests/unit/deploy/test_deploy.py checks alerts.yml against the worker's metrics (streams/metrics.py);
the archive's rules live in their own file, checked here against the sink's registry with the same
PromQL parsing helpers. promtool runs the rules' unit tests when it is available.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from archive import metrics
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

RULES = PROMETHEUS / "archive-alerts.yml"


def label_names() -> dict[str, tuple[str, set[str]]]:
    return metric_catalogue(metrics)


def rules() -> list[dict[str, Any]]:
    return alert_rules(RULES)


def test_metric_names_follow_the_conventions() -> None:
    series = label_names()
    assert {"customs_archive_lag_records", "customs_archive_rows_total", "customs_archive_commits_total",
            "customs_archive_failures_total", "customs_archive_records_total"} <= set(series)
    for name, (kind, _) in series.items():
        assert name.startswith("customs_archive_")
        assert (kind == "counter") == name.endswith("_total"), name


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_alerts_use_real_series_and_labels(rule: dict[str, Any]) -> None:
    series = {name: labels for name, (_, labels) in label_names().items()}
    selectors = promql_selectors(rule["expr"])
    assert selectors, rule["alert"]
    for name, matchers in selectors:
        assert name in series, f"{rule['alert']}: {name} is not a series of archive/metrics.py"
        assert matchers <= series[name] | TARGET_LABELS, f"{rule['alert']}: {name} has no label(s) {matchers - series[name]}"
    assert promql_grouping_labels(rule["expr"]) <= set().union(*series.values()) | TARGET_LABELS
    for _func, name in re.findall(r"\b(rate|irate|increase)\(\s*([A-Za-z_:][\w:]*)", _strip(rule["expr"])):
        assert name.endswith("_total"), f"{rule['alert']}: rate over {name}, not a counter"
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert re.fullmatch(r"\d+[smh]", str(rule["for"]))


def test_there_is_a_falling_behind_alert_and_prometheus_loads_the_rules() -> None:
    exprs = " ".join(r["expr"] for r in rules())
    assert "customs_archive_lag_records" in exprs and "customs_archive_last_commit_timestamp_seconds" in exprs
    for config in ("prometheus.yml", "prometheus-k8s.yml"):
        assert RULES.name in yaml.safe_load((PROMETHEUS / config).read_text())["rule_files"], config


def test_promtool_checks_the_archive_rules_and_their_unit_tests() -> None:
    tool = promtool()

    def run(*args: str, cwd: Path = PROMETHEUS) -> None:
        result = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"

    run("check", "rules", RULES.name)
    run("test", "rules", "tests/archive-alerts.test.yml")


def test_the_failure_series_the_alerts_take_increase_of_exist_before_any_failure() -> None:
    # increase() sees nothing of the samples that create a series: its first failures would never alert.
    exposed = {(s.name, tuple(sorted(s.labels.items()))) for family in metrics.REGISTRY.collect() for s in family.samples}
    for name, label, value in (("customs_archive_failures_total", "stage", "write"),
                               ("customs_archive_maintenance_runs_total", "outcome", "failed")):
        assert (name, ((label, value),)) in exposed, f"{name}{{{label}={value!r}}} is not exposed before its first failure"
