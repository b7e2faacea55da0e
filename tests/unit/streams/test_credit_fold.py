"""The credit fold through the topology's handler: batches, grouping, dead letters, decisions."""

from __future__ import annotations

import orjson

from clients import topics
from decision.services import Services
from policy.credit import EnterpriseCredit
from streams import metrics
from streams.testing import TopologyDriver
from tests.unit.streams.helpers import NOW, FixedScorer, decl, policy


def event(event_id: str, enterprise: str, agency: str = "customs", **over) -> dict:
    e = {"event_id": event_id, "enterprise_id": enterprise, "event_type": "qualification-registered",
         "qualification": "zero-tariff", "source_agency": agency, "event_time": NOW.isoformat()}
    e.update(over)
    return e


def batch(batch_id: str, events: list) -> bytes:
    return orjson.dumps({"batch_id": batch_id, "publisher": "taxation", "events": events})


def driver() -> TopologyDriver:
    return TopologyDriver(Services(policy(), FixedScorer({})))


def credit_writes(d: TopologyDriver) -> list[tuple[bytes, EnterpriseCredit]]:
    changelog = topics.changelog_topic(d.settings, topics.TABLE_ENTERPRISE_CREDIT)
    return [(k, EnterpriseCredit.from_bytes(v)) for t, _, k, v in d.outputs if t == changelog and v is not None]


def test_one_table_record_per_enterprise_per_micro_batch():
    d = driver()
    writes_before = metrics.CREDIT_TABLE_WRITES._value.get()
    events = [event(f"B{i}", f"E{i % 3}", agency=("customs", "taxation")[i % 2]) for i in range(30)]
    d.send_together([(topics.CREDIT_EVENT_BATCHES, b"B1", batch("B1", events[:20])),
                     (topics.CREDIT_EVENTS, b"E0", event("S1", "E0", "courts", event_type="joint-penalty-imposed",
                                                          qualification=None)),
                     (topics.CREDIT_EVENT_BATCHES, b"B2", batch("B2", events[20:]))])
    writes = credit_writes(d)
    assert sorted(k for k, _ in writes) == [b"E0", b"E1", b"E2"]
    assert metrics.CREDIT_TABLE_WRITES._value.get() - writes_before == 3
    e0 = dict(writes)[b"E0"]
    assert e0.joint_penalty and set(e0.agencies) == {"customs", "taxation", "courts"}
    assert e0.last_event_id == "B27"  # folded in arrival order: the single event between the two batches
    assert d.dead_letters() == []


def test_a_bad_event_in_a_batch_is_dead_lettered_alone_and_the_rest_apply():
    d = driver()
    bad = event("X1", "E9", event_type="credit-class-changed", qualification=None)  # no credit_class
    d.send(topics.CREDIT_EVENT_BATCHES, [(b"B1", batch("B1", [event("G1", "E1"), bad, event("G2", "E2")]))])
    assert sorted(k for k, _ in credit_writes(d)) == [b"E1", b"E2"]
    [letter] = d.dead_letters()
    assert letter["reason"] == "schema-violation" and letter["source_topic"].endswith("credit-event-batches")
    import base64
    assert orjson.loads(base64.b64decode(letter["value_b64"]))["event_id"] == "X1"  # the event's own bytes, not the batch


def test_an_unusable_or_oversized_batch_is_dead_lettered_whole():
    d = driver()
    d.topology.settings.credit_batch_max_events = 2
    d.send(topics.CREDIT_EVENT_BATCHES, [(b"B1", batch("B1", [event(f"G{i}", "E1") for i in range(3)])),
                                         (b"B2", orjson.dumps({"batch_id": "B2", "events": [event("G9", "E1")]}))])
    assert credit_writes(d) == []
    assert sorted(letter["reason"] for letter in d.dead_letters()) == ["batch-too-large", "schema-violation"]


def test_a_batch_of_credit_events_changes_decisions():
    d = driver()
    d.send(topics.DECLARATIONS, [(b"ZT1", decl("ZT1", scenario="zero-tariff"))])
    d.send(topics.CREDIT_EVENT_BATCHES, [(b"B1", batch("B1", [event("G1", "E1")]))])
    d.send(topics.DECLARATIONS, [(b"ZT2", decl("ZT2", scenario="zero-tariff"))])
    by_id = {i["declaration_id"]: i for i in d.instructions()}
    assert by_id["ZT1"]["action"] == "inspect" and by_id["ZT2"]["action"] == "release"
