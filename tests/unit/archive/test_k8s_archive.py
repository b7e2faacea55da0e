"""deploy/k8s/deployment-archive.yaml runs one archive sink whose settings, Secret, port and Service
agree with the code and with the rest of the kit (helpers of tests/unit/deploy/test_deploy.py)."""

from __future__ import annotations

from typing import Any

import yaml

from archive.location import from_settings
from tests.unit.deploy.test_deploy import (
    K8S,
    PROMETHEUS,
    SETTINGS_ENV,
    container_env,
    k8s_object,
    load_yaml,
    matches,
    parse_riskctl,
    settings_from_env,
)

# The object store's own variables, read by delta-rs (not Settings fields).
OBJECT_STORE_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP"}


def sink() -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = k8s_object("Deployment", "customs-archive")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def test_one_sink_replaced_not_rolled() -> None:
    deployment, container = sink()
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert "deployment-archive.yaml" in load_yaml(K8S / "kustomization.yaml")["resources"]
    args = parse_riskctl(container["args"], "archive Deployment")
    assert args.command == "archive" and args.no_create_topics
    assert matches(deployment["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])


def test_settings_and_object_store_credentials_come_from_the_secret() -> None:
    _, container = sink()
    env = container_env(container)
    settings = settings_from_env({k: v for k, v in env.items() if k not in OBJECT_STORE_ENV}, "archive Deployment")
    assert set(env) - SETTINGS_ENV <= OBJECT_STORE_ENV
    # Location and credentials are Secret references, never values in the manifest or the ConfigMap.
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert {"ARCHIVE_LOCATION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(refs)
    store = k8s_object("Secret", "customs-archive-store")
    for name in ("ARCHIVE_LOCATION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        assert refs[name]["name"] == "customs-archive-store" and refs[name]["key"] in store["stringData"], name
    for name in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP"):  # S3-compatible stores only
        assert refs[name]["name"] == "customs-archive-store" and refs[name].get("optional") is True, name
    kafka = k8s_object("Secret", "customs-kafka-archive")  # the archive role's principal
    assert {refs[n]["key"] for n in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")} <= set(kafka["stringData"])
    assert all("REPLACE-ME" in str(v) for v in store["stringData"].values()), "no real secrets in the repository"
    shared = k8s_object("ConfigMap", "customs-settings")["data"]
    assert not any(k.startswith(("AWS_", "ARCHIVE_LOCATION", "ARCHIVE_STORAGE")) for k in shared)
    # The example location is one the sink accepts.
    example = settings.model_copy(update={"archive_location": store["stringData"]["location"]})
    assert from_settings(example).uri == "s3://REPLACE-ME-bucket/archive"
    assert settings.kafka_ssl_cafile is not None
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(settings.kafka_ssl_cafile.parent) in mounts


def test_metrics_port_probe_service_and_scrape_job_agree() -> None:
    deployment, container = sink()
    settings = settings_from_env({k: v for k, v in container_env(container).items() if k not in OBJECT_STORE_ENV}, "archive")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == settings.archive_metrics_port and settings.metrics_host == "0.0.0.0"
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert f"127.0.0.1:{settings.archive_metrics_port}/metrics" in probe and "customs_archive_ready 1.0" in probe
    service = k8s_object("Service", "customs-archive-metrics")
    assert matches(service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"]
    config = yaml.safe_load((PROMETHEUS / "prometheus-k8s.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "customs-archive")
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    assert keep["regex"] == "customs-archive-metrics;metrics"
    compose_jobs = {j["job_name"] for j in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]}
    assert "customs-archive" in compose_jobs, "same job name on compose and Kubernetes"
