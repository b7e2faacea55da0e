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


def test_a_reload_past_the_fetch_bound_is_read_as_it_is_folded_and_nothing_is_lost(broker, unique_name, tmp_path) -> None:
    """With room for one waiting credit record, micro-batches of two records and the fold given a
    tenth of the loop, the worker keeps leaving the batch topic out of its fetches (the bound
    holds) and still folds every event."""
    harness = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, partitions=1), tmp_path)
    try:
        worker = harness.start_worker(extra_env={"CREDIT_BATCHES_BUFFERED": "1", "CREDIT_FOLD_SHARE": "0.1", "BATCH_MAX": "40"})
        worker.wait_ready()
        records, per_record = 60, 20
        for r in range(records):
            events = [credit(f"IT-RB-{r}-{e}", f"RB-{r}-{e}", event_type="credit-class-changed", credit_class="aeo")
                      for e in range(per_record)]
            harness.publish(topics.CREDIT_EVENT_BATCHES, f"IT-RB-{r}", {"batch_id": f"IT-RB-{r}", "publisher": "customs", "events": events})
        harness.publish(topics.DECLARATIONS, "IT-RB-D1", declaration("IT-RB-D1", "IT-RB-59-19"))
        harness.flush()
        applied = lambda: metric_value(worker.metrics_text(), "customs_credit_events_applied_total")  # noqa: E731 - read in the waits below
        harness.read_until(lambda h: applied() >= records * per_record and any(i["declaration_id"] == "IT-RB-D1" for i in h.instructions),
                           120, "every reload event folded and the declaration decided")
        assert applied() == records * per_record
        # The bound held: published with the consumer's other figures, once a second.
        harness.read_until(lambda h: metric_value(worker.metrics_text(), "customs_consumer_fetch_holds_total") > 0, 30,
                           "fetches of the batch topic left out while records waited for the fold")
        assert not harness.dead_letters
    finally:
        harness.close()
