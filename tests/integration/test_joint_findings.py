"""Joint control, outbound, on both brokers with a real worker: a found inspection result becomes
one joint finding carrying the declaration's enterprise and HS code, its redelivery publishes the
same finding id again (no new one), a not-found result and a dismissed review publish none, a
confirmed review publishes one, a bad review is dead-lettered."""

from __future__ import annotations

from collections import defaultdict

import pytest

from clients import topics
from clients.readers import assigned_reader
from schemas import JointFinding
from tests.integration.pipeline_harness import NOW, Harness, declaration, metric_value, pipeline_settings


def result(did: str, found: bool) -> dict:
    return {"schema_version": 1, "instruction_id": f"{did}:1:declaration", "declaration_id": did, "revision": 1,
            "port": "HAK-SEA", "station_id": "HAK-SEA-ST1", "found": found, "category": "cigarettes" if found else None,
            "duty_recovered": 310.0 if found else 0.0, "inspected_at": NOW}


def review(did: str, verdict: str) -> dict:
    return {"schema_version": 1, "warning_id": f"{did}:1:value-added-implausible", "verdict": verdict,
            "rule": "value-added-implausible", "severity": "high", "subject_kind": "enterprise", "subject_id": "E-JF",
            "port": "HAK-SEA", "declaration_id": did, "revision": 1, "warning_time": NOW, "reviewed_at": NOW}


@pytest.fixture
def harness(broker, unique_name, tmp_path):
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path), tmp_path)
    yield h
    h.close()


def test_found_results_and_confirmed_warnings_become_joint_findings_once_each(harness: Harness) -> None:
    worker = harness.start_worker()
    worker.wait_ready()
    dids = ["IT-JF-FOUND", "IT-JF-CLEAN", "IT-JF-WARN", "IT-JF-DISMISS"]
    for did in dids:
        harness.publish(topics.DECLARATIONS, did, {**declaration(did, "E-JF"), "hs_code": "24022000"})
    harness.flush()
    harness.read_until(lambda h: set(dids) <= {i["declaration_id"] for i in h.instructions}, 90, "the declarations decided")

    harness.publish(topics.INSPECTION_RESULTS, "IT-JF-FOUND", result("IT-JF-FOUND", True))
    harness.publish(topics.INSPECTION_RESULTS, "IT-JF-FOUND", result("IT-JF-FOUND", True))  # redelivered
    harness.publish(topics.INSPECTION_RESULTS, "IT-JF-CLEAN", result("IT-JF-CLEAN", False))
    harness.publish(topics.WARNING_REVIEWS, "IT-JF-WARN", review("IT-JF-WARN", "confirmed"))
    harness.publish(topics.WARNING_REVIEWS, "IT-JF-DISMISS", review("IT-JF-DISMISS", "dismissed"))
    harness.publish(topics.WARNING_REVIEWS, "IT-JF-WARN", {**review("IT-JF-WARN", "confirmed"), "note": "officer's words"})
    harness.flush()

    def handled() -> bool:
        text = worker.metrics_text()
        return (metric_value(text, "customs_inspection_results_total", port="HAK-SEA", found="false") >= 1
                and metric_value(text, "customs_warning_reviews_total", verdict="dismissed") >= 1)

    harness.read_until(lambda h: handled() and bool(h.dead_letters), 90, "the results, the reviews and the dead letter")
    (letter,) = harness.dead_letters
    assert letter["reason"] == "schema-violation" and letter["source_topic"] == harness.settings.topic(topics.WARNING_REVIEWS)

    reader = assigned_reader(harness.settings, [topics.JOINT_FINDINGS])
    found: list[tuple[bytes, JointFinding]] = []
    try:
        harness.read_until(lambda h: len(found) >= 3 or _poll(reader, found), 60, "the joint findings")
        harness.read_until(lambda h: _poll(reader, found) or True, 5, "any later finding")  # one more read to the end
    finally:
        reader.close()
    ids: dict[str, set[str]] = defaultdict(set)
    for key, f in found:
        assert key == (f.declaration_id or "").encode()
        ids[f.declaration_id or ""].add(f.finding_id)
    assert set(ids) == {"IT-JF-FOUND", "IT-JF-WARN"}  # nothing for the clean result or the dismissed warning
    assert len(ids["IT-JF-FOUND"]) == 1 and len(ids["IT-JF-WARN"]) == 1  # the redelivery repeats the same id
    by_kind = {f.kind.value: f for _, f in found}
    inspection = by_kind["inspection"]
    assert (inspection.enterprise_id, inspection.hs_code, inspection.category, inspection.duty_recovered) == (
        "E-JF", "24022000", "cigarettes", 310.0)
    assert by_kind["confirmed-warning"].category == "value-added-implausible"
    assert metric_value(worker.metrics_text(), "customs_joint_findings_total", kind="inspection", enterprise_known="true") == 2


def _poll(reader, into: list) -> bool:
    for msg in reader.consume(100, timeout=0.2):
        if not msg.error():
            into.append((msg.key(), JointFinding.model_validate_json(msg.value())))
    return False
