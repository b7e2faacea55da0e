"""Centralised declarations end to end on both brokers: a white-list enterprise's many-item
declaration is split by the worker into one declaration per item, each machine-checked and joined
with its own scan (before or after the split); a general enterprise's is dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clients import topics
from clients.gateway import DeclarationPublisher
from tests.integration.pipeline_harness import Harness, metric_value, pipeline_settings, scan, set_credit_class, write_policy

NOW = datetime.now(UTC).isoformat()
ITEMS = 12


def centralised(cid: str, enterprise: str, n_items: int) -> dict:
    items = [dict(item_no=n, hs_code="851712", origin_country="CN", declared_value=100.0 * n, currency="CNY", net_mass_kg=2.0,
                  tax_rate=5.0) for n in range(1, n_items + 1)]
    return dict(schema_version=1, centralised_id=cid, revision=1, port="HAK-SEA", enterprise_id=enterprise, declarant_id="DC1",
                scenario="general-trade", transport_mode="sea", departure_country="CN", event_time=NOW, items=items)


@pytest.fixture
def harness(broker, unique_name, tmp_path):
    # Every white-list item is machine-checked whatever the model says, so each must be joined with
    # its own scan; no random selection, no adaptation; a deadline far beyond the test.
    policy = write_policy(
        tmp_path / "policy.yaml", version="it-centralised",
        thresholds={"white-list": {"machine_check": 0.0, "inspect": 1.0}}, scenario_thresholds={},
        random_selection={"share": 0.0, "action": "machine-check"}, scan={"timeout_s": 600.0, "port_timeout_s": {}},
        capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}},
    )
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, policy_file=policy), tmp_path)
    yield h
    h.close()


def test_centralised_declaration_gets_one_final_instruction_per_item(harness: Harness) -> None:
    worker = harness.start_worker()
    worker.wait_ready()
    set_credit_class(harness, worker, "WL1", "white-list")

    items = [f"IT-C1-{n:04d}" for n in range(1, ITEMS + 1)]
    early, late = items[::2], items[1::2]
    for did in early:  # scans that arrive before the split: kept in the item's state until it comes
        harness.publish(topics.SCANS, did, scan(did, "clean"))
    publisher = DeclarationPublisher(harness.producer, harness.settings, gateway="IT-GW")
    publisher.publish_centralised(centralised("IT-C1", "WL1", ITEMS))
    publisher.publish_centralised(centralised("IT-C2", "GEN1", 3))  # general class: refused
    harness.flush()

    checks = lambda h: set(items) <= {i["declaration_id"] for i in h.instructions if i["action"] == "machine-check"}  # noqa: E731 - a named condition for the wait it is passed to
    harness.read_until(checks, 60, "a machine-check instruction for every item")
    for did in late:
        harness.publish(topics.SCANS, did, scan(did, "clean"))
    harness.flush()
    harness.read_until(lambda h: set(items) <= set(h.finals()) and h.dead_letters, 60,
                       "a final instruction for every item and the refused declaration's dead letter")

    # Redelivery of the centralised record: identical items, found as duplicates, nothing decided again.
    publisher.publish_centralised(centralised("IT-C1", "WL1", ITEMS))
    harness.flush()
    duplicates = lambda: metric_value(worker.metrics_text(), "customs_redelivered_total", type="declaration", outcome="duplicate")  # noqa: E731 - a named condition for the wait it is passed to
    harness.read_until(lambda h: duplicates() >= ITEMS, 60, "the redelivered items to be recognised as duplicates")

    finals = harness.finals()
    assert {d: len(finals[d]) for d in items} == {d: 1 for d in items}
    assert {harness.final_action(d) for d in items} == {"release"}
    assert {(i["centralised_id"], i["stage"] if i["final"] else "pre") for i in harness.instructions} == {
        ("IT-C1", "scan"), ("IT-C1", "pre")}
    assert not any(i["declaration_id"].startswith("IT-C2") for i in harness.instructions)
    (letter,) = harness.dead_letters
    assert (letter["reason"], letter["source_topic"]) == (
        "centralised-not-allowed", harness.settings.topic(topics.CENTRALISED_DECLARATIONS))
    text = worker.metrics_text()
    assert metric_value(text, "customs_centralised_declarations_total", outcome="split") == 2
    assert metric_value(text, "customs_centralised_declarations_total", outcome="refused") == 1
    assert worker.alive()
