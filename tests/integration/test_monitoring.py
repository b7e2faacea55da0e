"""The shipped monitoring on a real Prometheus server: Debian's ``prometheus`` binary (unpacked by
``make promtool-fetch`` into ``.tools``) scrapes a running worker with the shipped recording rules
and alerts, and the test drives alerts to firing by producing their conditions.

The only change to the shipped files: every alert's ``for:`` is cut to a second and the scrape and
evaluation intervals to one second, so that an alert fires within a test's time; the expressions,
thresholds and labels are the shipped ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clients import topics
from devkit.brokers import Broker, free_port
from devkit.launcher import WorkerProcess
from tests.integration.pipeline_harness import Harness, declaration, pipeline_settings

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus"
START_TIMEOUT_S = 30.0
FIRE_TIMEOUT_S = 90.0
STALL_BURST = 5000  # declarations the worker is still deciding when the broker is frozen
STALL_TIMEOUT_S = 150.0  # the shipped threshold is a minute of stall


def prometheus_binary() -> str | None:
    for candidate in (os.environ.get("PROMETHEUS"), str(REPO / ".tools" / "prometheus")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("prometheus")


def fast_alerts(source: Path, dest: Path) -> Path:
    doc = yaml.safe_load(source.read_text())
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "1s"
    dest.write_text(yaml.safe_dump(doc))
    return dest


class Prometheus:
    def __init__(self, binary: str, workdir: Path, worker_target: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        shipped = yaml.safe_load((RULES / "prometheus.yml").read_text())
        rule_files = [fast_alerts(RULES / name, workdir / name) for name in shipped["rule_files"]]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            # The shipped job name: the rules select on it.
            "scrape_configs": [{"job_name": "customs-worker", "static_configs": [{"targets": [worker_target]}]}],
        }
        assert shipped["scrape_configs"][0]["job_name"] == "customs-worker"
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ready():
            assert self.proc.poll() is None, f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.2)  # probe interval; the deadline bounds the wait

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}", timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def value(self, query: str) -> float:
        """The query's single value now (0 when it has no series yet)."""
        result = self.api("query?" + urllib.parse.urlencode({"query": query}))["result"]
        return float(result[0]["value"][1]) if result else 0.0

    def alert_states(self) -> dict[str, str]:
        return {a["labels"]["alertname"]: a["state"] for a in self.api("alerts")["alerts"]}

    def rule_health(self) -> dict[str, str]:
        return {r["name"]: r["health"] for g in self.api("rules")["groups"] for r in g["rules"]}

    def wait(self, condition: Any, what: str, timeout_s: float = FIRE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, (
                f"timed out waiting for {what}; alerts: {self.alert_states()}; dead-letter share "
                f"{self.value('customs:dead_letter_share:ratio_5m')}, dead letters {self.value('sum(customs_dead_letters_total)')}, "
                f"rules: {self.rule_health()}")
            time.sleep(0.5)  # probe interval; the deadline bounds the wait

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def prometheus_binary_path() -> str:
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("the Prometheus server is not available: `make promtool-fetch` unpacks it into .tools (or set PROMETHEUS)")
    return binary


@pytest.fixture
def watched(broker, unique_name, tmp_path, prometheus_binary_path) -> Iterator[tuple[Harness, WorkerProcess, Prometheus]]:
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path), tmp_path)
    worker = h.start_worker()
    prometheus: Prometheus | None = None
    try:
        worker.wait_ready()
        prometheus = Prometheus(prometheus_binary_path, tmp_path / "prometheus", f"127.0.0.1:{worker.settings.metrics_port}")
        yield h, worker, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        h.close()


def test_the_shipped_alerts_fire_on_a_real_prometheus(watched: tuple[Harness, WorkerProcess, Prometheus], broker: Broker) -> None:
    h, worker, prom = watched
    prom.wait(lambda: any(t["health"] == "up" for t in prom.api("targets")["activeTargets"]), "the worker's target to be up")
    sent = {"good": 0, "bad": 0}

    def traffic(good: int, bad: int) -> None:
        """A gateway's next half second: ``good`` declarations and ``bad`` records that do not parse."""
        for _ in range(good):
            did = f"MON-{sent['good']:05d}"
            h.publish(topics.DECLARATIONS, did, declaration(did, "GEN1"))
            sent["good"] += 1
        for _ in range(bad):
            h.publish(topics.DECLARATIONS, f"BAD-{sent['bad']:05d}", b'{"schema_version": 1, "declaration_id": ')
            sent["bad"] += 1
        h.flush()

    # Clean traffic, steadily: decided, scraped, every rule evaluates, and no dead-letter alert.
    prom.wait(lambda: traffic(10, 0) or prom.value("sum(rate(customs_events_in_total[5m]))") > 0, "clean traffic to be scraped")
    prom.wait(lambda: traffic(10, 0) or all(health == "ok" for health in prom.rule_health().values()), "every shipped rule to evaluate")
    assert prom.value("customs:dead_letter_share:ratio_5m") == 0.0
    assert not {"CustomsDeadLetters", "CustomsDeadLettersSurge", "CustomsWorkerDown"} & set(prom.alert_states())

    # A broken gateway: most of what it sends does not parse. The worker dead-letters it and goes on.
    prom.wait(lambda: traffic(2, 20) or prom.alert_states().get("CustomsDeadLettersSurge") == "firing",
              "CustomsDeadLettersSurge to fire")
    assert prom.alert_states().get("CustomsDeadLetters") == "firing"
    assert prom.value("customs:dead_letter_share:ratio_5m") > 0.10
    h.read_until(lambda h: len(h.dead_letters) >= sent["bad"], 60, "every broken record dead-lettered")
    assert worker.alive()

    # A stall: the broker stops answering (SIGSTOP) while the worker has a batch handed to a handler
    # whose outputs it cannot get acknowledged. The oldest-undecided gauge grows past the shipped
    # minute and CustomsDecisionsStalled fires; the worker's metrics are still scraped meanwhile.
    stalled = False
    for _ in range(3):  # a freeze that falls between two batches holds nothing: burst again
        before = worker.metric("customs_events_in_total")
        traffic(STALL_BURST, 0)
        h.read_until(lambda h, before=before: worker.metric("customs_events_in_total") > before, 60, "the burst to reach the worker")
        broker.suspend()
        try:
            if not _waits(lambda: worker.metric("customs_oldest_undecided_seconds") >= 2.0, 6.0):
                continue  # nothing was in flight when the broker froze
            prom.wait(lambda: prom.alert_states().get("CustomsDecisionsStalled") == "firing", "CustomsDecisionsStalled to fire",
                      STALL_TIMEOUT_S)
            assert prom.value("max(customs_oldest_undecided_seconds)") > 60 and worker.alive()
            stalled = True
            break
        finally:
            broker.resume()
    assert stalled, "no batch was in flight in any of the three freezes"
    h.read_until(lambda h: worker.metric("customs_oldest_undecided_seconds") == 0.0, 120, "the stalled batch to be acknowledged")

    # The worker goes away: its target is down and the alert on it fires.
    worker.stop()
    prom.wait(lambda: prom.alert_states().get("CustomsWorkerDown") == "firing", "CustomsWorkerDown to fire")


def _waits(condition: Any, timeout_s: float) -> bool:
    """Whether ``condition`` holds within ``timeout_s`` (False, not an error, when it does not)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)  # probe interval; the deadline bounds the wait
    return True
