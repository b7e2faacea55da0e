"""A real pipeline on a real broker for integration tests: topics, worker processes, producer, reader."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Producer

from clients import topics
from clients.readers import assigned_reader
from clients.topics import create_topics
from common.settings import Settings
from devkit.brokers import free_port
from devkit.launcher import WorkerProcess, metric_value
from policy.config import load_policy


def pipeline_settings(bootstrap: str, name: str, tmp_path: Path, **over: Any) -> Settings:
    return Settings(
        kafka_bootstrap_servers=bootstrap, app_id=name, topic_prefix=f"{name}.", partitions=over.pop("partitions", 4),
        metrics_port=free_port(), data_dir=tmp_path / "worker", **over,
    )


def write_policy(path: Path, **changes: Any) -> Path:
    """The shipped policy with test overrides (deep-merged one level)."""
    raw = load_policy().model_dump(mode="json")
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    path.write_text(yaml.safe_dump(raw))
    return path


class Harness:
    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        create_topics(settings)
        self.producer = Producer({**settings.confluent_config(), "partitioner": "murmur2_random", "linger.ms": 1})
        self.reader = assigned_reader(settings, [topics.INSTRUCTIONS, topics.DEAD_LETTERS])
        self.instructions: list[dict[str, Any]] = []
        self.dead_letters: list[dict[str, Any]] = []
        self.workers: list[WorkerProcess] = []

    def start_worker(self, metrics_port: int | None = None, extra_env: dict[str, str] | None = None) -> WorkerProcess:
        """A worker on the harness's settings; ``extra_env`` sets any other (``{"BATCH_MAX": "40"}``)."""
        s = self.settings.model_copy(update={"metrics_port": metrics_port or free_port(),
                                             "data_dir": self.tmp_path / f"worker{len(self.workers)}"})
        worker = WorkerProcess(s, self.tmp_path / f"worker{len(self.workers)}.log", extra_env)
        self.workers.append(worker)
        return worker

    def publish(self, topic: str, key: str, value: bytes | dict[str, Any]) -> None:
        payload = value if isinstance(value, bytes) else orjson.dumps(value)
        self.producer.produce(self.settings.topic(topic), key=key.encode(), value=payload)
        self.producer.poll(0)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0, "producer could not deliver every record"

    def read_until(self, done: Callable[[Harness], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done(self):
            if time.monotonic() > deadline:
                logs = "\n".join(w.log_tail(15) for w in self.workers)
                raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; worker logs:\n{logs}")
            for msg in self.reader.consume(1000, timeout=0.2):
                if msg.error():
                    continue
                record = orjson.loads(msg.value())
                if msg.topic() == self.settings.topic(topics.DEAD_LETTERS):
                    self.dead_letters.append(record)
                else:
                    self.instructions.append(record)

    def finals(self) -> dict[str, set[str]]:
        """declaration id -> distinct final instruction ids seen (exactly one is correct)."""
        out: dict[str, set[str]] = defaultdict(set)
        for i in self.instructions:
            if i["final"]:
                out[i["declaration_id"]].add(i["instruction_id"])
        return out

    def final_action(self, declaration_id: str) -> str | None:
        for i in self.instructions:
            if i["declaration_id"] == declaration_id and i["final"]:
                return i["action"]
        return None

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.reader.close()


# ---- record builders shared by the pipeline tests ----------------------------------------------
NOW = datetime.now(UTC).isoformat()


def declaration(did: str, enterprise: str, scenario: str = "general-trade", revision: int = 1) -> dict:
    return dict(declaration_id=did, revision=revision, port="HAK-SEA", enterprise_id=enterprise, declarant_id="DC1",
                scenario=scenario, hs_code="851712", origin_country="CN", departure_country="CN", transport_mode="sea",
                declared_value=1000.0, currency="CNY", net_mass_kg=5.0, tax_rate=5.0, event_time=NOW)


def scan(did: str, verdict: str) -> dict:
    return dict(scan_id=f"S-{did}", declaration_id=did, port="HAK-SEA", device_id="HAK-SEA-XR01", device_type="x-ray",
                anomaly_score=0.9 if verdict == "suspicious" else 0.05, verdict=verdict,
                suspected_categories=["narcotics"] if verdict == "suspicious" else [], event_time=NOW)


def credit(eid: str, event_id: str, **kw) -> dict:
    return dict(event_id=event_id, enterprise_id=eid, source_agency="customs", event_time=NOW, **kw)


def set_credit_class(harness: Harness, worker: WorkerProcess, eid: str, credit_class: str) -> None:
    """Publish a credit-class change and wait until the worker has folded it: declarations depend on it."""
    harness.publish(topics.CREDIT_EVENTS, eid, credit(eid, "C1", event_type="credit-class-changed", credit_class=credit_class))
    harness.flush()
    applied = lambda: metric_value(worker.metrics_text(), "customs_credit_events_applied_total") >= 1  # noqa: E731 - a named condition for the wait it is passed to
    harness.read_until(lambda h: applied(), 60, "the credit event to be applied")
