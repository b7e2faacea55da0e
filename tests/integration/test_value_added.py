"""Processing value-added end to end on both brokers: a declaration under the threshold gets the
duty-due reason, an implausible claim (far above the enterprise's history in the starter model)
raises exactly one early warning on the warnings topic, and a processing declaration without its
values is dead-lettered with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients import topics
from clients.readers import assigned_reader
from riskmodels.features import VA_MIN_ROWS
from riskmodels.serving import STARTER_DIR
from schemas import EarlyWarning
from tests.integration.pipeline_harness import Harness, credit, declaration, metric_value, pipeline_settings, write_policy

IMPLAUSIBLE = [f"IT-VA-HIGH-{n}" for n in range(3)]


def enterprise_with_history(min_rows: int) -> tuple[str, float]:
    """An enterprise whose value-added history the starter model holds (id, mean ratio)."""
    stats = json.loads((Path(STARTER_DIR) / "encodings.json").read_text())["value_added"]["enterprise"]
    for key, n, mean in zip(stats["keys"], stats["n"], stats["mean"]):
        if n >= max(min_rows, VA_MIN_ROWS):
            return key, mean
    raise AssertionError("the starter model holds no value-added history")


def processing(did: str, enterprise: str, imported: float, added: float) -> dict:
    return {**declaration(did, enterprise, "processing-value-added"), "declared_value": imported + added,
            "imported_material_value": imported, "value_added": added}


@pytest.fixture
def harness(broker, unique_name, tmp_path):
    policy = write_policy(tmp_path / "policy.yaml", version="it-value-added", random_selection={"share": 0.0, "action": "machine-check"},
                          capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}})
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, policy_file=policy), tmp_path)
    yield h
    h.close()


def test_duty_due_reason_one_warning_per_implausible_claim_and_dead_letters(harness: Harness) -> None:
    enterprise, mean = enterprise_with_history(10)  # the shipped policy's min_history
    worker = harness.start_worker()
    worker.wait_ready()
    harness.publish(topics.CREDIT_EVENTS, enterprise, credit(enterprise, "C-VA", event_type="qualification-registered",
                                                            qualification="processing-value-added"))
    harness.flush()
    harness.read_until(lambda h: metric_value(worker.metrics_text(), "customs_credit_events_applied_total") >= 1, 60,
                       "the qualification to be applied")

    harness.publish(topics.DECLARATIONS, "IT-VA-UNDER", processing("IT-VA-UNDER", enterprise, 1000.0, 200.0))
    harness.publish(topics.DECLARATIONS, "IT-VA-OK", processing("IT-VA-OK", enterprise, 1000.0, round(1000.0 * max(mean, 0.3), 2)))
    for did in IMPLAUSIBLE:
        harness.publish(topics.DECLARATIONS, did, processing(did, enterprise, 1000.0, round(1000.0 * (mean + 2.0), 2)))
    bare = declaration("IT-VA-BARE", enterprise, "processing-value-added")  # no imported materials, no value added
    harness.publish(topics.DECLARATIONS, "IT-VA-BARE", bare)
    harness.flush()

    decided = ["IT-VA-UNDER", "IT-VA-OK", *IMPLAUSIBLE]
    harness.read_until(lambda h: set(decided) <= {i["declaration_id"] for i in h.instructions} and h.dead_letters, 90,
                       "an instruction for every processing declaration and the dead letter")
    first = {i["declaration_id"]: i for i in harness.instructions if i["stage"] == "declaration"}
    under = first["IT-VA-UNDER"]
    assert under["action"] == "inspect" and under["selection_reason"] == "rule"
    assert under["reasons"][0] == "duty due: value added 20.0% of imported materials is below the 30% threshold; not released duty-free"
    assert not any("value added" in r for r in first["IT-VA-OK"]["reasons"])
    for did in IMPLAUSIBLE:
        assert first[did]["action"] == "inspect" and any(r.startswith("implausible value added") for r in first[did]["reasons"])
    (letter,) = harness.dead_letters
    assert letter["reason"] == "schema-violation" and "needs imported_material_value and value_added" in letter["error"]
    assert letter["source_topic"] == harness.settings.topic(topics.DECLARATIONS)

    # The warnings: read from the topic until all three are there; the worker counts what it raised.
    reader = assigned_reader(harness.settings, [topics.WARNINGS])
    warnings: list[tuple[bytes, EarlyWarning]] = []
    try:
        harness.read_until(lambda h: len(warnings) >= len(IMPLAUSIBLE) or _poll(reader, warnings), 60, "the early warnings")
    finally:
        reader.close()
    assert sorted(w.declaration_id or "" for _, w in warnings) == sorted(IMPLAUSIBLE)  # exactly once each
    for key, w in warnings:
        assert key == (w.declaration_id or "").encode() and w.rule == "value-added-implausible" and w.subject_id == enterprise
        assert w.warning_id == f"{w.declaration_id}:1:value-added-implausible" and w.severity.value == "high"
        assert any(f"mean ratio {mean:.2f}" in e for e in w.evidence)
    assert metric_value(worker.metrics_text(), "customs_early_warnings_total", severity="high",
                        rule="value-added-implausible") == len(IMPLAUSIBLE)


def _poll(reader, into: list) -> bool:
    for msg in reader.consume(100, timeout=0.2):
        if not msg.error():
            into.append((msg.key(), EarlyWarning.model_validate_json(msg.value())))
    return False
