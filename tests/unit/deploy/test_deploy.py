"""The operations kit in deploy/ is consistent with the code it operates.

Every YAML/JSON file parses; every metric the alerts, recording rules and the dashboard query is
defined in streams/metrics.py (with the right suffix for its type and real label names); the
compose services, ports and environment match Settings and the riskctl commands; the Kubernetes
objects are complete and agree with each other. When promtool is available (PATH or env PROMTOOL)
the Prometheus files and the alert unit tests in deploy/prometheus/tests/ are checked by it too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from cli.main import build_parser
from common.settings import Settings
from policy.config import load_policy
from streams import metrics

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DASHBOARD_FILE = GRAFANA / "dashboards" / "customs-office.json"
WORKER_JOB = "customs-worker"
IMAGE = "customs-riskcontrol"

# Series that Prometheus or prometheus-client make on their own (name -> kind), and labels
# Prometheus attaches to every scraped series.
BUILTIN_SERIES = {"up": "gauge", "process_cpu_seconds_total": "counter"}
TARGET_LABELS = {"job", "instance", "pod", "namespace", "deployment", "office"}
# Environment variables a riskctl container may set that are not Settings fields.
EXTRA_ENV = {"RISKCTL_SETTINGS", "PYTHONUNBUFFERED"}
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}
# riskctl containers that are clients without an endpoint to probe.
NO_HEALTHCHECK = {"topics", "models", "simulator", "station"}

SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                   "offset", "inf", "nan", "Inf", "NaN"}


# ---------------------------------------------------------------------------- helpers


def deploy_files(*suffixes: str) -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in suffixes and "target" not in p.relative_to(DEPLOY).parts)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def metric_catalogue(module: ModuleType = metrics) -> dict[str, tuple[str, set[str]]]:
    """Exposed series name -> (metric type, label names) for every metric object in ``module``
    (the worker's ``streams.metrics`` by default; the archive's and the console's have their own)."""
    series: dict[str, tuple[str, set[str]]] = {}
    for obj in vars(module).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        for family in obj.describe():
            labels = set(obj._labelnames)
            if family.type == "histogram":
                labels.add("le")
            for suffix in SUFFIXES[family.type]:
                series[family.name + suffix] = (family.type, labels)
    return series


CATALOGUE = metric_catalogue()


def recording_rules() -> dict[str, str]:
    return {r["record"]: r["expr"] for g in load_yaml(PROMETHEUS / "rules.yml")["groups"] for r in g["rules"]}


def alert_rules(path: Path = PROMETHEUS / "alerts.yml") -> list[dict[str, Any]]:
    return [r for g in load_yaml(path)["groups"] for r in g["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


def dashboard_panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(f"dashboard panel {p['title']!r}", t["expr"]) for p in dashboard_panels() for t in p.get("targets", [])]


def promql_exprs() -> list[tuple[str, str]]:
    out = [(f"recording rule {name}", expr) for name, expr in recording_rules().items()]
    out += [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    return out + dashboard_exprs()


def _strip(expr: str) -> str:
    """Drop string literals (matcher values, $variables), range/subquery brackets and comments."""
    text = re.sub(r"#[^\n]*", "", expr)
    text = re.sub(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'", '""', text)
    return re.sub(r"\[[^\]]*\]", "", text)


GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*(\()?")


def promql_grouping_labels(expr: str) -> set[str]:
    return {label.strip() for group in GROUPING.findall(_strip(expr)) for label in group.split(",") if label.strip()}


def promql_selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(series name, label names in its matchers) for every series selector of a PromQL expression."""
    text = GROUPING.sub(" ", _strip(expr))
    found = []
    for name, matchers, call in SELECTOR.findall(text):
        if call or name in PROMQL_KEYWORDS:
            continue  # a function call or an operator keyword
        found.append((name, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))))
    return found


def known_labels() -> set[str]:
    return set().union(*(labels for _, labels in CATALOGUE.values())) | TARGET_LABELS


def recording_rule_labels() -> dict[str, set[str]]:
    return {name: promql_grouping_labels(expr) for name, expr in recording_rules().items()}


def raw_metrics(expr: str, depth: int = 0) -> set[str]:
    """streams.metrics series an expression uses, directly or through recording rules."""
    rules = recording_rules()
    out = set()
    for name, _ in promql_selectors(expr):
        if name in rules and depth < 5:
            out |= raw_metrics(rules[name], depth + 1)
        elif name in CATALOGUE:
            out.add(name)
    return out


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def riskctl_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if str(s.get("image", "")).startswith(IMAGE)}


def parse_riskctl(argv: list[str], where: str) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `riskctl {' '.join(argv)}` is not a valid riskctl command line")


def settings_from_env(env: dict[str, str], where: str) -> Settings:
    unknown = set(env) - SETTINGS_ENV - EXTRA_ENV
    assert not unknown, f"{where}: environment variables that are not Settings fields: {sorted(unknown)}"
    return Settings(**{k.lower(): v for k, v in env.items() if k in SETTINGS_ENV})


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def k8s_object(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in k8s_documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


def k8s_settings_env() -> dict[str, str]:
    return {k: str(v) for k, v in k8s_object("ConfigMap", "customs-settings")["data"].items()}


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """Settings env of a container: its envFrom ConfigMaps, then its own env (secret refs as placeholders)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update({k: str(v) for k, v in k8s_object("ConfigMap", source["configMapRef"]["name"])["data"].items()})
    for item in container.get("env", []):
        env[item["name"]] = str(item["value"]) if "value" in item else "from-secret"
    return env


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def promtool() -> str:
    tool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not tool:
        pytest.skip("promtool not available (set PROMTOOL or put it on PATH)")
    return tool


# ---------------------------------------------------------------------------- files parse


@pytest.mark.parametrize("path", deploy_files(".yml", ".yaml"), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_file_parses(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents and all(isinstance(d, dict) for d in documents), f"{path}: expected YAML mappings"


@pytest.mark.parametrize("path", deploy_files(".json"), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_json_file_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


def test_the_kit_is_complete() -> None:
    for path in (COMPOSE_FILE, DOCKERFILE, DASHBOARD_FILE, PROMETHEUS / "prometheus.yml", PROMETHEUS / "prometheus-k8s.yml",
                 PROMETHEUS / "alerts.yml", PROMETHEUS / "rules.yml", DEPLOY / "README.md"):
        assert path.is_file(), f"{path} is missing"
    assert len(deploy_files(".yml", ".yaml")) >= 15


# ---------------------------------------------------------------------------- metric names


def test_every_issue_metric_is_defined() -> None:
    """The metrics named in the issue exist, with the labels the dashboard and alerts rely on."""
    expected = {
        "customs_events_in_total": {"type", "port"},
        "customs_instructions_total": {"action", "stage", "port", "credit_class"},
        "customs_dead_letters_total": {"reason"},
        "customs_decision_latency_seconds_bucket": {"stage", "le"},
        "customs_risk_score_bucket": {"scenario", "le"},
        "customs_active_model_info": {"scenario", "version"},
        "customs_active_policy_info": {"version"},
        "customs_pending_machine_checks": set(),
        "customs_scan_timeouts_total": {"port"},
        "customs_selection_rate": {"port", "lane"},
        "customs_selection_rate_target": {"port", "lane"},
        "customs_inspection_results_total": {"port", "found"},
        "customs_consumer_lag": {"topic", "partition"},
        "customs_worker_ready": set(),
    }
    for name, labels in expected.items():
        assert name in CATALOGUE, f"{name} is not defined in streams/metrics.py"
        assert labels <= CATALOGUE[name][1], f"{name} lacks labels {labels - CATALOGUE[name][1]}"
    # Prometheus naming: counters end in _total once exposed, and nothing else does.
    for name, (kind, _) in CATALOGUE.items():
        assert name.startswith("customs_")
        assert (kind == "counter") == name.endswith("_total"), name


def test_selector_parser_sees_misspelt_and_suffixless_names() -> None:
    """The checks below must be able to fail: they parse names and labels out of PromQL."""
    selectors = promql_selectors(
        'sum by (port) (rate(customs_scan_timeout_total{port=~"$port"}[$__rate_interval])) / customs_decision_latency_seconds')
    assert [name for name, _ in selectors] == ["customs_scan_timeout_total", "customs_decision_latency_seconds"]
    assert all(name not in CATALOGUE for name, _ in selectors)
    assert promql_selectors('customs_dead_letters_total{reasn="x", job="customs-worker"}') == [
        ("customs_dead_letters_total", {"reasn", "job"})]
    assert promql_grouping_labels("sum by (prot, lane) (x) / on(port) y") == {"prot", "lane", "port"}


@pytest.mark.parametrize("where,expr", promql_exprs(), ids=[where for where, _ in promql_exprs()])
def test_promql_uses_real_metrics_and_labels(where: str, expr: str) -> None:
    rules = recording_rule_labels()
    selectors = promql_selectors(expr)
    assert selectors, f"{where}: no series selector found in {expr!r}"
    for name, matcher_labels in selectors:
        if name in CATALOGUE:
            allowed = CATALOGUE[name][1] | TARGET_LABELS
        elif name in rules:
            allowed = rules[name] | TARGET_LABELS
        elif name in BUILTIN_SERIES:
            allowed = TARGET_LABELS
        else:
            pytest.fail(f"{where}: {name!r} is neither a series of streams/metrics.py (counters end in _total, "
                        f"histograms expose _bucket/_sum/_count) nor a recording rule in rules.yml")
        assert matcher_labels <= allowed, f"{where}: {name} has no label(s) {sorted(matcher_labels - allowed)}"
    unknown = promql_grouping_labels(expr) - known_labels()
    assert not unknown, f"{where}: grouping by unknown label(s) {sorted(unknown)}"
    for func, name in re.findall(r"\b(rate|irate|increase)\(\s*([A-Za-z_:][\w:]*)", _strip(expr)):
        kind = CATALOGUE.get(name, (BUILTIN_SERIES.get(name, "recording rule"), set()))[0]
        counter_like = kind == "counter" or (kind == "histogram" and name.endswith(("_bucket", "_sum", "_count")))
        assert counter_like, f"{where}: {func}() over {name}, which is a {kind}, not a counter"


def test_recording_rules_follow_naming_and_are_unique() -> None:
    names = [r["record"] for g in load_yaml(PROMETHEUS / "rules.yml")["groups"] for r in g["rules"]]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"customs:[a-z0-9_]+:[a-z0-9_]+", name), f"{name}: use level:metric:operation"


# ---------------------------------------------------------------------------- alerts


def test_alert_rules_cover_the_office() -> None:
    alerts = {r["alert"]: r for r in alert_rules()}
    assert len(alerts) == len(alert_rules()), "alert names must be unique"
    for rule in alerts.values():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{rule['alert']}: needs a `for` duration"
    uses = {name: raw_metrics(rule["expr"]) | {n for n, _ in promql_selectors(rule["expr"])} for name, rule in alerts.items()}

    def alerting_on(series: str) -> list[str]:
        return [name for name, used in uses.items() if series in used]

    assert alerting_on("customs_decision_latency_seconds_bucket"), "no latency SLO alert"
    assert alerting_on("customs_dead_letters_total"), "no dead-letter alert"
    assert alerting_on("customs_scan_timeouts_total"), "no scan-timeout alert"
    assert alerting_on("customs_consumer_lag"), "no consumer-lag alert"
    assert {"customs_selection_rate", "customs_selection_rate_target"} <= set().union(*uses.values()), "no selection alert"
    assert alerting_on("customs_worker_ready"), "no worker-readiness alert"
    assert alerting_on("up"), "no worker-down alert"
    slo = alerts["CustomsDecisionLatencySLO"]
    assert 'stage="declaration"' in slo["expr"] and "0.035" in slo["expr"] and slo["for"] == "5m"
    # The SLO threshold sits on a bucket boundary, so the p99 estimate is exact there.
    assert 0.035 in metrics.LATENCY_BUCKETS


def test_alert_rules_cover_zero_tariff_and_duty_free() -> None:
    """Each operator concern of the zero-tariff and duty-free streams has an alert on a real series."""
    uses = {r["alert"]: {n for n, _ in promql_selectors(r["expr"])} | raw_metrics(r["expr"]) for r in alert_rules()}
    expected = {
        "CustomsZeroTariffIdentifierConflicts": "customs_zero_tariff_register_events_total",
        "CustomsPositionsSilent": "customs_positions_total",
        "CustomsZeroTariffOverstaySurge": "customs_early_warnings_total",
        "CustomsDutyFreePurchasesRefused": "customs_dead_letters_total",
        "CustomsDutyFreeFlaggedShoppersSpike": "customs_duty_free_flagged_shoppers",
    }
    for alert, series in expected.items():
        assert alert in uses and series in uses[alert], f"{alert} should alert on {series}"
        assert series in CATALOGUE, series
    rules = {r["alert"]: r["expr"] for r in alert_rules()}
    assert 'outcome="identifier-conflict"' in rules["CustomsZeroTariffIdentifierConflicts"]
    assert 'rule="zero-tariff-away-too-long"' in rules["CustomsZeroTariffOverstaySurge"]
    assert "duty-free-purchases" in rules["CustomsDutyFreePurchasesRefused"]
    # Global tables: every worker reports the same register and standing sizes, so they are not summed.
    assert "max(customs_zero_tariff_registered_goods)" in rules["CustomsPositionsSilent"]
    assert "sum" not in rules["CustomsDutyFreeFlaggedShoppersSpike"]


def test_alerts_and_thresholds_are_documented() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for rule in alert_rules():
        assert rule["alert"] in readme, f"{rule['alert']} is not explained in deploy/README.md"


def test_dashboard_and_alerts_use_defined_recording_rules() -> None:
    rules = recording_rules()
    used = {name for _, expr in promql_exprs() for name, _ in promql_selectors(expr) if ":" in name}
    assert used <= set(rules), f"undefined recording rules: {sorted(used - set(rules))}"


# ---------------------------------------------------------------------------- Prometheus scrape configs


def test_prometheus_scrapes_every_compose_worker_on_its_metrics_port() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS / rule_file).is_file(), rule_file
    job = next(j for j in config["scrape_configs"] if j["job_name"] == WORKER_JOB)
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    services = compose()["services"]
    workers = {name for name, s in riskctl_services().items() if s["command"][0] == "worker"}
    assert len(workers) >= 2, "the compose stack runs two workers"
    scraped = set()
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in services, f"Prometheus target {target}: no compose service {host!r}"
        env = compose_env(services[host])
        settings = settings_from_env(env, host)
        assert int(port) == settings.metrics_port, f"{target}: the service's METRICS_PORT is {settings.metrics_port}"
        assert settings.metrics_host == "0.0.0.0", f"{host}: METRICS_HOST must be 0.0.0.0 in a container"
        scraped.add(host)
    assert scraped == workers, f"workers not scraped: {sorted(workers - scraped)}; not workers: {sorted(scraped - workers)}"


def test_prometheus_k8s_variant_matches_the_manifests() -> None:
    config = load_yaml(PROMETHEUS / "prometheus-k8s.yml")
    assert config["rule_files"] == load_yaml(PROMETHEUS / "prometheus.yml")["rule_files"]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == WORKER_JOB)
    sd = job["kubernetes_sd_configs"][0]
    namespace = k8s_object("Namespace")["metadata"]["name"]
    assert sd["role"] == "endpoints" and sd["namespaces"]["names"] == [namespace]
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    service_name, port_name = keep["regex"].split(";")
    service = k8s_object("Service", service_name)
    port = next(p for p in service["spec"]["ports"] if p["name"] == port_name)
    assert port["port"] == int(k8s_settings_env()["METRICS_PORT"])


# ---------------------------------------------------------------------------- Grafana


def test_grafana_provisioning_matches_compose_and_dashboard() -> None:
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["type"] == "prometheus"
    host, port = re.fullmatch(r"http://([\w.-]+):(\d+)/?", datasource["url"]).groups()
    services = compose()["services"]
    assert host in services and services[host]["image"].startswith("prom/prometheus:"), f"no Prometheus service {host}"
    assert port == "9090" and "localhost:9090" in " ".join(services[host]["healthcheck"]["test"])
    uids = {p["datasource"]["uid"] for p in dashboard_panels() if "datasource" in p}
    uids |= {t["datasource"]["uid"] for p in dashboard_panels() for t in p.get("targets", [])}
    uids |= {v["datasource"]["uid"] for v in dashboard()["templating"]["list"] if "datasource" in v}
    assert uids == {datasource["uid"]}, f"the dashboard uses datasources {uids}, provisioned is {datasource['uid']}"

    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "customs.yml")["providers"][0]
    mounts = dict(v.split(":")[:2][::-1] for v in services["grafana"]["volumes"] if v.startswith("./"))
    assert provider["options"]["path"] in mounts, "the dashboards provider path is not mounted in the grafana service"
    assert (DEPLOY / mounts[provider["options"]["path"]]).resolve() == DASHBOARD_FILE.parent
    assert (DEPLOY / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA / "provisioning"


def test_dashboard_structure_and_coverage() -> None:
    board = dashboard()
    panels = list(dashboard_panels())
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    for p in panels:
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p.get("targets"), f"panel {p['title']!r} has no query"
    for variable in board["templating"]["list"]:
        metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"]).groups()
        assert metric in CATALOGUE and label in CATALOGUE[metric][1], variable["name"]
        used = [expr for _, expr in dashboard_exprs() if f"${variable['name']}" in expr]
        assert used, f"dashboard variable ${variable['name']} is not used by any query"
    shown = set().union(*(raw_metrics(expr) for _, expr in dashboard_exprs()))
    for series in ("customs_events_in_total", "customs_instructions_total", "customs_decision_latency_seconds_bucket",
                   "customs_selection_rate", "customs_selection_rate_target", "customs_inspection_results_total",
                   "customs_dead_letters_total", "customs_scan_timeouts_total", "customs_pending_machine_checks",
                   "customs_consumer_lag", "customs_active_model_info", "customs_active_policy_info",
                   "customs_risk_score_bucket",
                   # the second-line scenarios, the early warnings and the findings for the other agencies
                   "customs_early_warnings_total", "customs_warning_reviews_total", "customs_joint_findings_total",
                   "customs_zero_tariff_registered_goods", "customs_zero_tariff_register_events_total", "customs_positions_total",
                   "customs_zero_tariff_absences_pending", "customs_duty_free_purchases_total", "customs_duty_free_links_total",
                   "customs_duty_free_flagged_shoppers"):
        assert series in shown, f"the dashboard does not show {series}"
    by = " ".join(expr for _, expr in dashboard_exprs())
    for grouping in ("by (action)", "by (stage, action)", "by (port, action)", "by (scenario, le)", "by (topic, reason)",
                     "by (severity, rule)", "by (kind, enterprise_known)"):
        assert grouping in by, f"the dashboard has no breakdown {grouping}"


# ---------------------------------------------------------------------------- compose and the image


def test_compose_services_are_wired() -> None:
    services = compose()["services"]
    assert {"kafka", "topics", "simulator", "station", "prometheus", "grafana"} <= set(services)
    assert str(services["kafka"]["image"]).startswith("apache/kafka:4.")
    kafka_env = compose_env(services["kafka"])
    assert "broker" in kafka_env["KAFKA_PROCESS_ROLES"] and "controller" in kafka_env["KAFKA_PROCESS_ROLES"], "KRaft mode"
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    volumes = set(compose().get("volumes") or {})
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            assert spec["condition"] in ("service_started", "service_healthy", "service_completed_successfully")
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency} to be healthy: no healthcheck"
        if name not in NO_HEALTHCHECK:
            assert "healthcheck" in service, f"{name} has no healthcheck"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in volumes, f"{name}: named volume {source} is not declared"


def test_compose_riskctl_services_use_settings_and_real_commands() -> None:
    services = riskctl_services()
    assert {"topics", "worker-1", "worker-2", "simulator", "station"} <= set(services)
    for name, service in services.items():
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        settings = settings_from_env(compose_env(service), name)
        args = parse_riskctl(service["command"], name)
        if args.command == "model-publish":  # files only: seeds the shared model registry
            continue
        assert settings.kafka_bootstrap_servers.split(":")[0] == "kafka", f"{name}: not pointed at the kafka service"
        assert args.command in ("worker", "topics", "simulate", "station", "archive")
        topics_done = service.get("depends_on", {}).get("topics", {}).get("condition") == "service_completed_successfully"
        if name != "topics":
            assert topics_done or args.command == "simulate", f"{name} must start after the topics exist"
        if args.command == "worker":
            assert args.no_create_topics, f"{name}: the topics service owns topic creation"
            mounts = {v.split(":")[1] for v in service.get("volumes", [])}
            assert str(settings.data_dir) in mounts, f"{name}: DATA_DIR {settings.data_dir} is not on a volume"
            probe = " ".join(service["healthcheck"]["test"])
            assert f":{settings.metrics_port}/metrics" in probe and "customs_worker_ready 1.0" in probe
        if args.command == "station":
            mounts = {v.split(":")[1] for v in service.get("volumes", [])}
            assert args.state_dir in mounts, f"{name}: the station journal must be on a volume"
    workers = [s for s in services.values() if s["command"][0] == "worker"]
    data_volumes = [v.split(":")[0] for s in workers for v in s["volumes"] if not v.endswith(":ro")]
    assert len(data_volumes) == len(set(data_volumes)), "each worker needs its own data volume"
    assert services["simulator"]["depends_on"], "the simulator waits for the workers"


def test_dockerfile_builds_the_riskctl_image() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r'^ENTRYPOINT \["riskctl"\]', text, re.M)
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    include = re.findall(r'include = \[(.*?)\]', (ROOT / "pyproject.toml").read_text())[0]
    packages = set(include.replace('"', "").replace("*", "").replace(" ", "").split(","))
    copied = set(re.findall(r"^COPY (\w+) ", text, re.M))
    assert packages <= copied, f"packages not copied into the image: {sorted(packages - copied)}"
    env = dict(re.findall(r"(\w+)=(\S+)", text.split("ENV", 1)[1].split("EXPOSE")[0]))
    settings = settings_from_env(env, "Dockerfile ENV")
    assert settings.metrics_host == "0.0.0.0"
    assert re.search(rf"^EXPOSE {settings.metrics_port}$", text, re.M)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "**" in ignore and all(f"!{p}/" in ignore for p in packages), "the build context must include the packages"


# ---------------------------------------------------------------------------- Kubernetes


def test_k8s_objects_are_complete_and_listed() -> None:
    documents = k8s_documents()
    namespace = k8s_object("Namespace")["metadata"]["name"]
    for path, doc in documents:
        assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), path.name
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, f"{path.name}: {doc['kind']} not in {namespace}"
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization["namespace"] == namespace
    listed = set(kustomization["resources"])
    files = {p.name for p, _ in documents}
    assert listed <= files and files - listed == {"secret.example.yaml"}, "every manifest but the example Secret is applied"
    kinds = {doc["kind"] for _, doc in documents}
    assert {"StatefulSet", "Service", "ConfigMap", "Job", "PodDisruptionBudget", "Secret"} <= kinds


def test_k8s_statefulset_scales_by_partition_with_persistent_state() -> None:
    sts = k8s_object("StatefulSet")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = container_env(container)
    settings = settings_from_env(env, "StatefulSet")
    assert 1 <= spec["replicas"] <= settings.partitions, "more workers than partitions leaves some idle"
    assert matches(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
    headless = k8s_object("Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None", "serviceName must be a headless Service"

    args = parse_riskctl(container["args"], "StatefulSet")
    assert args.command == "worker" and args.no_create_topics
    # Table state: a volumeClaimTemplate mounted exactly at DATA_DIR.
    claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts.get(str(settings.data_dir)) in claims, f"DATA_DIR {settings.data_dir} is not a volumeClaimTemplate mount"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    # Metrics and readiness on METRICS_PORT.
    assert settings.metrics_host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == settings.metrics_port
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert f"127.0.0.1:{settings.metrics_port}/metrics" in probe and "customs_worker_ready 1.0" in probe
    assert container["livenessProbe"]["tcpSocket"]["port"] in ("metrics", settings.metrics_port)
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    # Policy and CA files come from mounted volumes.
    volumes = {v["name"]: v for v in pod["volumes"]}

    def mounted_file(path: Path) -> dict[str, Any]:
        volume = volumes[mounts[str(path.parent)]]
        if "configMap" in volume:
            data = k8s_object("ConfigMap", volume["configMap"]["name"])["data"]
            assert path.name in data, f"{path}: no key {path.name} in the ConfigMap"
        else:
            assert path.name in {i["path"] for i in volume["secret"]["items"]}, path
        return volume

    assert "configMap" in mounted_file(settings.policy_file)
    assert "secret" in mounted_file(settings.kafka_ssl_cafile)


def test_k8s_secret_references_match_the_example_secret() -> None:
    """One Secret per ACL role (clients.acls.Role), each pod reading its own role's credentials and
    the shared CA: no pod holds another role's principal."""
    from clients.acls import Role

    secrets = {d["metadata"]["name"]: d for _, d in k8s_documents() if d["kind"] == "Secret"}
    for secret in secrets.values():
        assert all("REPLACE-ME" in str(v) for v in secret["stringData"].values()), "no real secrets in the repository"
    by_role = {d["metadata"]["labels"]["customs-risk/kafka-role"]: name for name, d in secrets.items()
               if "customs-risk/kafka-role" in d["metadata"].get("labels", {})}
    assert set(by_role) == {r.value for r in Role}, "every ACL role has its Secret"
    for role, name in by_role.items():
        assert name == f"customs-kafka-{role}" and {"sasl-username", "sasl-password"} <= set(secrets[name]["stringData"]), name
    assert len({secrets[n]["stringData"]["sasl-username"] for n in by_role.values()}) == len(by_role), "one principal per role"
    pods = {"worker": k8s_object("StatefulSet")["spec"]["template"]["spec"],
            "admin": k8s_object("Job", "customs-topics-create")["spec"]["template"]["spec"],
            "archive": k8s_object("Deployment", "customs-archive")["spec"]["template"]["spec"]}
    for role, pod in pods.items():
        container = pod["containers"][0]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "valueFrom" in e
                and e["valueFrom"]["secretKeyRef"]["name"].startswith("customs-kafka")}
        assert set(refs) == {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}, role
        for ref in refs.values():
            assert ref["name"] == by_role[role] and ref["key"] in secrets[ref["name"]]["stringData"], (role, ref)
        kafka_volumes = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert kafka_volumes == {"customs-kafka-ca"} and "ca.crt" in secrets["customs-kafka-ca"]["stringData"], role
    settings = k8s_settings_env()
    assert settings["KAFKA_SECURITY_PROTOCOL"].startswith("SASL") and "KAFKA_SASL_PASSWORD" not in settings


def test_k8s_services_pdb_and_job_select_the_workers() -> None:
    sts = k8s_object("StatefulSet")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    services = [d for _, d in k8s_documents() if d["kind"] == "Service" and d["metadata"]["name"].startswith("customs-worker")]
    assert len(services) == 2  # the archive's Service: tests/unit/archive/test_k8s_archive.py
    for service in services:
        assert matches(service["spec"]["selector"], labels), service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (
                f"{service['metadata']['name']}: targetPort {port['targetPort']} is not a named container port")
    pdb = k8s_object("PodDisruptionBudget")
    assert matches(pdb["spec"]["selector"]["matchLabels"], labels)
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable")

    job = k8s_object("Job", "customs-topics-create")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    (container,) = pod["containers"]
    args = parse_riskctl(container["args"], "Job")
    assert args.command == "topics" and args.topics_command == "create"
    job_settings = settings_from_env(container_env(container), "Job")
    worker_settings = settings_from_env(container_env(sts["spec"]["template"]["spec"]["containers"][0]), "StatefulSet")
    for field in ("kafka_bootstrap_servers", "topic_prefix", "partitions", "replication_factor", "app_id"):
        assert getattr(job_settings, field) == getattr(worker_settings, field), field


def test_k8s_policy_configmap_is_a_valid_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(k8s_object("ConfigMap", "customs-policy")["data"]["policy.yaml"])
    assert load_policy(path).version


def test_k8s_policy_configmap_ships_the_default_policy() -> None:
    # A copy goes stale silently; the shipped ConfigMap starts from the shipped default.
    shipped = (Path(__file__).resolve().parents[3] / "policy" / "default.yaml").read_text()
    assert k8s_object("ConfigMap", "customs-policy")["data"]["policy.yaml"] == shipped


# ---------------------------------------------------------------------------- promtool (optional)


def test_promtool_checks_config_rules_and_alert_unit_tests(tmp_path: Path) -> None:
    tool = promtool()

    def run(*args: str, cwd: Path = PROMETHEUS) -> None:
        result = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"

    run("check", "config", "prometheus.yml")
    run("check", "rules", "rules.yml", "alerts.yml")
    run("test", "rules", "tests/alerts.test.yml")
    # The dashboard's queries are valid PromQL once Grafana's variables are substituted.
    rules = []
    for i, (_, expr) in enumerate(dashboard_exprs()):
        expr = expr.replace("$__rate_interval", "1m").replace("$__range", "1h").replace("$port", ".*").replace("$scenario", ".*")
        rules.append({"record": f"dashboard:query:{i}", "expr": expr})
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run("check", "rules", "dashboard.yml", cwd=tmp_path)


def test_compose_workers_share_a_seeded_model_registry() -> None:
    """Hot swap works when deployed: every worker reads MODEL_DIR from one volume (read-only) that a
    one-shot service seeds with the starter model before the workers start."""
    services = riskctl_services()
    seeders = {n: s for n, s in services.items() if s["command"][0] == "model-publish"}
    assert len(seeders) == 1, "one service seeds the model registry"
    (seeder_name, seeder), = seeders.items()
    args = parse_riskctl(seeder["command"], seeder_name)
    assert args.if_empty, "seeding must not overwrite what analysts published"
    seeded = {v.split(":")[0] for v in seeder["volumes"] if v.split(":")[1] == str(args.registry)}
    assert len(seeded) == 1, f"{seeder_name}: the registry {args.registry} is not on a volume"
    for name, service in services.items():
        if service["command"][0] != "worker":
            continue
        settings = settings_from_env(compose_env(service), name)
        assert settings.model_dir is not None, f"{name}: MODEL_DIR unset: the worker runs the bundled starter model for good"
        mounts = {v.split(":")[1]: v for v in service["volumes"]}
        volume = mounts.get(str(settings.model_dir))
        assert volume is not None and volume.split(":")[0] in seeded and volume.endswith(":ro"), f"{name}: {volume}"
        assert service["depends_on"][seeder_name]["condition"] == "service_completed_successfully"


def test_compose_and_k8s_use_the_documented_partitions() -> None:
    documented = {int(m) for m in re.findall(r"PARTITIONS=(\d+)", (ROOT / "docs" / "operations.md").read_text())}
    assert len(documented) == 1, documented
    compose_partitions = {settings_from_env(compose_env(s), n).partitions for n, s in riskctl_services().items()
                          if s["command"][0] != "model-publish"}
    assert compose_partitions == documented
    assert int(k8s_settings_env()["PARTITIONS"]) in documented
    assert int(compose_env(compose()["services"]["kafka"])["KAFKA_NUM_PARTITIONS"]) in documented


def test_k8s_workers_share_the_seeded_model_registry_read_only() -> None:
    settings = settings_from_env(container_env(k8s_object("StatefulSet")["spec"]["template"]["spec"]["containers"][0]), "StatefulSet")
    assert settings.model_dir is not None, "MODEL_DIR unset: every deployed worker runs the bundled starter model for good"
    claim = k8s_object("PersistentVolumeClaim", "customs-models")
    assert "ReadWriteMany" in claim["spec"]["accessModes"], "one writer, every worker reading"

    def registry_mount(pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        container = pod["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(settings.model_dir))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        return mount, container

    worker_mount, _ = registry_mount(k8s_object("StatefulSet")["spec"]["template"]["spec"])
    assert worker_mount.get("readOnly") is True, "workers only read the registry"
    seed = k8s_object("Job", "customs-models-seed")["spec"]["template"]["spec"]
    seed_mount, container = registry_mount(seed)
    assert not seed_mount.get("readOnly")
    args = parse_riskctl(container["args"], "customs-models-seed")
    assert args.command == "model-publish" and args.starter and args.if_empty and args.registry == settings.model_dir


def test_k8s_persistent_volumes_only_where_a_persistent_store_is_used() -> None:
    settings = settings_from_env(container_env(k8s_object("StatefulSet")["spec"]["template"]["spec"]["containers"][0]), "StatefulSet")
    assert settings.table_store == "rocksdb", "the workers' volumeClaimTemplates hold RocksDB tables"
    archive = k8s_object("Deployment", "customs-archive")["spec"]["template"]["spec"]
    assert not any("persistentVolumeClaim" in v for v in archive.get("volumes", [])), "the archive writes to the object store"


def test_k8s_metrics_ports_admit_prometheus_only() -> None:
    policy = k8s_object("NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    selected = [doc for _, doc in k8s_documents() if doc["kind"] in ("StatefulSet", "Deployment")
                and matches(spec["podSelector"]["matchLabels"], doc["spec"]["template"]["metadata"]["labels"])]
    assert {d["metadata"]["name"] for d in selected} == {"customs-worker", "customs-archive"}, "every pod serving metrics is covered"
    (rule,) = spec["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["metrics"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"] and peer["namespaceSelector"]["matchLabels"], "Prometheus only, not the pod network"
    for doc in selected:
        names = {p["name"] for c in doc["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        assert names == {"metrics"}, f"{doc['metadata']['name']}: a port the NetworkPolicy does not admit: {names}"
