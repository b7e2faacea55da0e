"""End to end on both brokers: gateways' records in, one final instruction per declaration out."""

from __future__ import annotations

import pytest

from clients import topics
from tests.integration.pipeline_harness import Harness, declaration, pipeline_settings, scan, set_credit_class, write_policy


@pytest.fixture
def harness(broker, unique_name, tmp_path):
    # Policy chosen so that the action is known whatever the model scores: AEO enterprises are
    # released, everyone else is machine-checked, no random selection, short scan deadline.
    policy = write_policy(
        tmp_path / "policy.yaml", version="it-1",
        thresholds={"aeo": {"machine_check": 1.0, "inspect": 1.0}, "general": {"machine_check": 0.0, "inspect": 1.0}},
        scenario_thresholds={}, random_selection={"share": 0.0, "action": "machine-check"}, scan={"timeout_s": 3.0, "port_timeout_s": {}},
        capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}},  # no adaptation
    )
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, policy_file=policy), tmp_path)
    yield h
    h.close()


def test_every_declaration_gets_exactly_one_right_final_instruction(harness: Harness) -> None:
    worker = harness.start_worker()
    worker.wait_ready()
    set_credit_class(harness, worker, "AEO1", "aeo")

    expected: dict[str, str] = {}
    for i in range(40):
        did = f"REL{i}"
        harness.publish(topics.DECLARATIONS, did, declaration(did, "AEO1"))
        expected[did] = "release"
    for i in range(20):  # unqualified zero-tariff declaration: hard rule -> inspect
        did = f"ZT{i}"
        harness.publish(topics.DECLARATIONS, did, declaration(did, "GEN1", scenario="zero-tariff"))
        expected[did] = "inspect"
    for i in range(20):  # machine-check then a clean scan -> release
        did = f"MCC{i}"
        harness.publish(topics.DECLARATIONS, did, declaration(did, "GEN1"))
        expected[did] = "release"
    for i in range(20):  # scan arrives BEFORE its declaration, suspicious -> inspect
        did = f"EARLY{i}"
        harness.publish(topics.SCANS, did, scan(did, "suspicious"))
        harness.publish(topics.DECLARATIONS, did, declaration(did, "GEN1"))
        expected[did] = "inspect"
    for i in range(10):  # no scan at all -> timeout -> inspect, with no further traffic
        did = f"TO{i}"
        harness.publish(topics.DECLARATIONS, did, declaration(did, "GEN1"))
        expected[did] = "inspect"
    # Garbage interleaved with good records: dead-lettered, the worker carries on.
    harness.publish(topics.DECLARATIONS, "junk1", b"{not json")
    harness.publish(topics.DECLARATIONS, "junk2", {"declaration_id": "junk2"})
    harness.publish(topics.DECLARATIONS, "WRONGKEY", declaration("OTHER", "GEN1"))
    harness.publish(topics.SCANS, "junk3", b"\xff\xfe")
    harness.flush()

    harness.read_until(lambda h: all(f"MCC{i}" in {x["declaration_id"] for x in h.instructions} for i in range(20)),
                       60, "machine-check instructions")
    for i in range(20):
        harness.publish(topics.SCANS, f"MCC{i}", scan(f"MCC{i}", "clean"))
    # A duplicate declaration (redelivery) must not produce a different outcome.
    harness.publish(topics.DECLARATIONS, "REL0", declaration("REL0", "AEO1"))
    harness.flush()

    harness.read_until(lambda h: set(expected) <= set(h.finals()) and len(h.dead_letters) >= 4, 90,
                       "a final instruction for every declaration and 4 dead letters")
    finals = harness.finals()
    assert {d: len(ids) for d, ids in finals.items() if len(ids) != 1} == {}
    wrong = {d: (harness.final_action(d), want) for d, want in expected.items() if harness.final_action(d) != want}
    assert wrong == {}
    timeouts = [i for i in harness.instructions if i["declaration_id"].startswith("TO") and i["final"]]
    assert {i["selection_reason"] for i in timeouts} == {"timeout"}
    early = [i for i in harness.instructions if i["declaration_id"] == "EARLY0" and i["final"]]
    assert early[0]["suspected_categories"] == ["narcotics"]
    assert sorted(d["reason"] for d in harness.dead_letters) == ["invalid-json", "invalid-json", "key-mismatch", "schema-violation"]
    assert all(d["value_b64"] for d in harness.dead_letters)
    assert worker.alive(), "the worker must survive bad input"


def test_gateway_batches_and_compressed_records_are_decided_once(harness: Harness) -> None:
    """High-rate gateways pack declarations per partition; a bad item is dead-lettered alone."""
    from confluent_kafka import Producer

    from clients.gateway import DeclarationPublisher
    from schemas.partitioning import partition_for

    worker = harness.start_worker()
    worker.wait_ready()
    publisher = DeclarationPublisher(harness.producer, harness.settings, gateway="IT-GW", max_batch=50)
    expected = {f"B{i}" for i in range(400)}
    for did in sorted(expected):
        publisher.publish(declaration(did, "GEN1", scenario="zero-tariff"))  # rule: inspect, final
    assert publisher.flush() == 0
    assert publisher.records_sent < len(expected) // 10  # batched, not one record per declaration

    # One envelope with a bad item and an item on the wrong partition among good ones.
    n = harness.settings.partitions
    good = next(f"BG{i}" for i in range(100) if partition_for(f"BG{i}".encode(), n) == 0)
    stray = next(f"BW{i}" for i in range(100) if partition_for(f"BW{i}".encode(), n) != 0)
    bad = {**declaration("BBAD", "GEN1"), "declared_value": "lots"}
    envelope = {"schema_version": 1, "batch_id": "IT-MIXED", "gateway": "IT-GW",
                "declarations": [declaration(good, "GEN1", scenario="zero-tariff"), bad, declaration(stray, "GEN1")]}
    import orjson

    harness.producer.produce(harness.settings.topic(topics.DECLARATION_BATCHES), key=b"IT-MIXED", value=orjson.dumps(envelope), partition=0)
    expected.add(good)
    # Gateways may compress: every codec a Kafka producer can use must be readable by the worker.
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        producer = Producer({**harness.settings.confluent_config(), "partitioner": "murmur2_random", "compression.type": codec})
        did = f"C-{codec}"
        producer.produce(harness.settings.topic(topics.DECLARATIONS), key=did.encode(),
                         value=orjson.dumps(declaration(did, "GEN1", scenario="zero-tariff")))
        assert producer.flush(30) == 0
        expected.add(did)
    harness.flush()

    harness.read_until(lambda h: expected <= set(h.finals()) and len(h.dead_letters) >= 2, 90,
                       "every batched and compressed declaration decided, 2 dead letters")
    assert {d: ids for d, ids in harness.finals().items() if len(ids) != 1} == {}
    assert {harness.final_action(d) for d in expected} == {"inspect"}
    reasons = sorted(d["reason"] for d in harness.dead_letters)
    assert reasons == ["schema-violation", "wrong-partition"]
    assert stray not in harness.finals() and "BBAD" not in harness.finals()
    assert worker.alive()
