"""Credit-event batches end to end on both brokers: a batch changes the credit the worker decides
with, one record per enterprise goes to the credit table, and a bad event in a batch is
dead-lettered alone while the rest apply."""

from __future__ import annotations

import pytest

from clients import topics
from tests.integration.pipeline_harness import Harness, credit, declaration, metric_value, pipeline_settings


@pytest.fixture
def harness(broker, unique_name, tmp_path):
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path), tmp_path)
    yield h
    h.close()


def test_a_batch_changes_decisions_and_a_bad_event_is_dead_lettered_alone(harness: Harness) -> None:
    worker = harness.start_worker()
    worker.wait_ready()
    events = [credit("IT-CB-AEO", "CB1", event_type="credit-class-changed", credit_class="aeo"),
              credit("IT-CB-PEN", "CB2", event_type="credit-class-changed", credit_class="aeo"),
              credit("IT-CB-BAD", "CB3", event_type="credit-class-changed"),  # no credit_class: refused alone
              {**credit("IT-CB-PEN", "CB4", event_type="joint-penalty-imposed"), "source_agency": "courts"},
              {**credit("IT-CB-PEN", "CB5", event_type="credit-class-changed", credit_class="white-list"), "source_agency": "taxation"}]
    harness.publish(topics.CREDIT_EVENT_BATCHES, "IT-CB-1", {"batch_id": "IT-CB-1", "publisher": "courts", "events": events})
    harness.flush()
    harness.read_until(lambda h: metric_value(worker.metrics_text(), "customs_credit_events_applied_total") >= 4 and h.dead_letters,
                       90, "four events applied and the bad one dead-lettered")
    (letter,) = harness.dead_letters
    assert letter["reason"] == "schema-violation" and "credit-class-changed needs credit_class" in letter["error"]
    assert letter["source_topic"] == harness.settings.topic(topics.CREDIT_EVENT_BATCHES)
    assert metric_value(worker.metrics_text(), "customs_credit_table_writes_total") == 2  # one per enterprise

    for did, enterprise in (("IT-CB-D1", "IT-CB-AEO"), ("IT-CB-D2", "IT-CB-PEN"), ("IT-CB-D3", "IT-CB-NONE")):
        harness.publish(topics.DECLARATIONS, did, declaration(did, enterprise))
    harness.flush()
    harness.read_until(lambda h: {"IT-CB-D1", "IT-CB-D2", "IT-CB-D3"} <= {i["declaration_id"] for i in h.instructions}, 90,
                       "the three declarations decided")
    first = {i["declaration_id"]: i for i in harness.instructions if i["stage"] == "declaration"}
    assert first["IT-CB-D1"]["credit_class"] == "aeo"
    # The penalty from courts wins; taxation's class does not override customs' aeo (policy/credit.py).
    assert first["IT-CB-D2"]["credit_class"] == "joint-penalty" and first["IT-CB-D2"]["action"] != "release"
    assert first["IT-CB-D3"]["credit_class"] == "general"
