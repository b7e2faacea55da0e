"""Risk lists change decisions while the worker runs; `riskctl explain` reads the reasons back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from clients import topics
from tests.integration.pipeline_harness import Harness, declaration, pipeline_settings, write_policy

NOW = datetime.now(UTC)


@pytest.fixture
def harness(broker, unique_name, tmp_path):
    # Everyone is released by the model thresholds: only a risk list can select.
    policy = write_policy(
        tmp_path / "policy.yaml", version="it-risk-1",
        thresholds={c: {"machine_check": 1.0, "inspect": 1.0} for c in ("aeo", "white-list", "general", "focus-list", "joint-penalty")},
        scenario_thresholds={}, random_selection={"share": 0.0, "action": "machine-check"},
        capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}},
    )
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, policy_file=policy), tmp_path)
    yield h
    h.close()


def entry(entry_id: str, **over) -> dict:
    return {"schema_version": 1, "entry_id": entry_id, "list_id": "JASC-2026-11", "kind": "hs-prefix", "value": "8517",
            "action": "inspect", "reason": "telephone sets smuggled under false origin", "source_agency": "anti-smuggling bureau",
            "valid_from": (NOW - timedelta(days=1)).isoformat(), **over}


def test_adding_and_retracting_an_entry_changes_decisions_without_restart(harness: Harness) -> None:
    worker = harness.start_worker()
    worker.wait_ready()
    harness.publish(topics.DECLARATIONS, "RL-BEFORE", declaration("RL-BEFORE", "GEN1"))
    harness.flush()
    harness.read_until(lambda h: "RL-BEFORE" in h.finals(), 60, "the first declaration")
    assert harness.final_action("RL-BEFORE") == "release"

    harness.publish(topics.RISK_LISTS, "E-8517", entry("E-8517"))
    harness.publish(topics.RISK_LISTS, "E-BAD", b'{"entry_id": "E-BAD"}')  # invalid entry: dead-lettered
    harness.flush()
    harness.read_until(lambda h: worker.metric("customs_risk_list_entries") >= 1 and h.dead_letters, 30,
                       "the entry to be active in the worker")
    harness.publish(topics.DECLARATIONS, "RL-HIT", declaration("RL-HIT", "GEN1"))
    harness.flush()
    harness.read_until(lambda h: "RL-HIT" in h.finals(), 60, "the hit declaration")
    hit = next(i for i in harness.instructions if i["declaration_id"] == "RL-HIT")
    assert hit["action"] == "inspect" and hit["selection_reason"] == "risk-list"
    assert hit["risk_hits"] == ["JASC-2026-11/E-8517"]

    harness.producer.produce(harness.settings.topic(topics.RISK_LISTS), key=b"E-8517", value=None)  # retract
    harness.flush()
    harness.read_until(lambda h: worker.metric("customs_risk_list_entries") == 0, 30, "the entry to be retracted")
    harness.publish(topics.DECLARATIONS, "RL-AFTER", declaration("RL-AFTER", "GEN1"))
    harness.flush()
    harness.read_until(lambda h: "RL-AFTER" in h.finals(), 60, "the declaration after retraction")
    assert harness.final_action("RL-AFTER") == "release"
    assert [d["reason"] for d in harness.dead_letters] == ["schema-violation"]

    # `riskctl explain` shows the officer why, from the instruction topic.
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": harness.settings.kafka_bootstrap_servers,
           "TOPIC_PREFIX": harness.settings.topic_prefix, "PARTITIONS": str(harness.settings.partitions)}
    done = subprocess.run([sys.executable, "-m", "cli.main", "explain", "RL-HIT", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    explained = json.loads(done.stdout.strip().splitlines()[-1])
    text = json.dumps(explained)
    assert "JASC-2026-11/E-8517" in text and "telephone sets" in text
