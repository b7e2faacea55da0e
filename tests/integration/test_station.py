"""The inspection station against a real broker: dedup by instruction id, and restarts that neither
lose nor repeat work (including a crash after acting but before the offset commit).

Records are counted by reading the topics (Tansu's watermarks are wrong); waits have deadlines.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from common.settings import Settings
from devkit.brokers import create_topics
from portsim.gateway import PortGateway, now_iso
from portsim.station import InspectionStation, StationCrash
from portsim.traffic import PortOffice

pytestmark = pytest.mark.integration

PARTITIONS = 3
ENTERPRISES = 2_000
SEED = 5


@pytest.fixture(scope="module")
def office() -> PortOffice:
    return PortOffice(seed=SEED, enterprises=ENTERPRISES)


@pytest.fixture
def settings(broker: Any, unique_name: str, tmp_path: Path) -> Settings:
    s = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"{unique_name}.", app_id=unique_name,
        data_dir=tmp_path / "worker", partitions=PARTITIONS,
    )
    names = [s.topic(t) for t in ("instructions", "inspection-results", "declarations", "scans", "credit-events",
                                     "credit-event-batches")]
    create_topics(broker.bootstrap_servers, dict.fromkeys(names, PARTITIONS))
    return s


def instructions_for(office: PortOffice, first: int, n: int) -> list[dict]:
    """A realistic mix: final inspects at declaration time, machine-checks followed by a scan-stage
    inspect or release, timeouts, and plain releases."""
    out = []
    for k, (d, _truth) in enumerate(office.declaration_dicts(n, first_index=first)):
        base = {
            "schema_version": 1, "declaration_id": d["declaration_id"], "revision": 1, "port": d["port"],
            "enterprise_id": d["enterprise_id"], "scenario": d["scenario"], "selection_reason": "model-threshold",
            "credit_class": "general", "score": 0.42, "model_version": "m1", "policy_version": "p1",
            "reasons": ["score 0.42 above the lane threshold"], "suspected_categories": [], "scan_id": None,
            "event_time": d["event_time"], "decided_at": d["event_time"],
        }

        def ins(stage: str, action: str, final: bool, **extra: Any) -> dict:
            return {**base, "instruction_id": f"{d['declaration_id']}:1:{stage}", "stage": stage, "action": action,  # noqa: B023 - called only within this iteration
                    "final": final, **extra}

        kind = k % 5
        if kind == 0:
            out.append(ins("declaration", "inspect", True))
        elif kind == 1:
            out.append(ins("declaration", "machine-check", False))
            out.append(ins("scan", "inspect", True, selection_reason="scan", scan_id=f"SC-{d['declaration_id']}-1",
                           suspected_categories=["dense-object"]))
        elif kind == 2:
            out.append(ins("declaration", "machine-check", False))
            out.append(ins("timeout", "inspect", True, selection_reason="timeout"))
        elif kind == 3:
            out.append(ins("declaration", "machine-check", False))
            out.append(ins("scan", "release", True, selection_reason="scan"))
        else:
            out.append(ins("declaration", "release", True, selection_reason="none"))
    return out


def produce(settings: Settings, records: list[dict]) -> None:
    producer = Producer({**settings.confluent_config(), "partitioner": "murmur2_random", "linger.ms": 2})
    for r in records:
        producer.produce(settings.topic("instructions"), orjson.dumps(r), r["declaration_id"].encode())
    assert producer.flush(30) == 0


def read_topic(settings: Settings, name: str, idle_s: float = 3.0, timeout_s: float = 60.0) -> list[tuple[int, dict]]:
    """Every record of a topic as (partition, value), read from the beginning by assignment (no
    group, no watermarks); stops after ``idle_s`` without records."""
    consumer = Consumer({**settings.confluent_config(), "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    topic = settings.topic(name)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    out: list[tuple[int, dict]] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s and time.monotonic() < deadline:
            for msg in consumer.consume(5_000, timeout=0.5):
                if msg.error():
                    continue
                out.append((msg.partition(), orjson.loads(msg.value())))
                last = time.monotonic()
    finally:
        consumer.close()
    return out


def read_results(settings: Settings) -> list[dict]:
    return [v for _, v in read_topic(settings, "inspection-results")]


def expected_results(records: list[dict]) -> set[str]:
    return {r["instruction_id"] for r in records if r["final"] and r["action"] == "inspect"}


def station(settings: Settings, tmp_path: Path, port: str = "all", **kw: Any) -> InspectionStation:
    return InspectionStation(settings, port, state_dir=tmp_path / "stations", enterprises=ENTERPRISES, out=None, **kw)


def test_duplicates_produce_one_action(settings: Settings, office: PortOffice, tmp_path: Path) -> None:
    records = instructions_for(office, 0, 60)
    dupes = [r for r in records if r["final"]][::2]
    produce(settings, records + dupes)  # the same instruction records again, at later offsets
    produce(settings, dupes[:5])

    st = station(settings, tmp_path)
    stats = st.run(max_idle_s=5.0)
    assert stats.records == len(records) + len(dupes) + 5
    assert stats.duplicates == len(dupes) + 5
    assert stats.acted == len(records)

    results = read_results(settings)
    ids = Counter(r["instruction_id"] for r in results)
    assert set(ids) == expected_results(records)
    assert max(ids.values()) == 1
    # the findings are the simulator's ground truth, reproduced from the declaration id
    by_id = {r["instruction_id"]: r for r in results}
    for _rid, r in by_id.items():
        truth = office.truth_for(r["declaration_id"])
        assert truth is not None
        if r["found"]:
            assert truth.fraud and r["category"] == truth.category and r["duty_recovered"] == truth.duty_recoverable
        else:
            assert r["duty_recovered"] == 0.0

    # a station for one port sees only that port's instructions (its own group, from the beginning)
    port = records[0]["port"]
    one = station(settings, tmp_path, port=port, publish_results=False)
    stats = one.run(max_idle_s=5.0)
    assert stats.acted == len({r["instruction_id"] for r in records if r["port"] == port})
    assert stats.results == 0


def test_restart_neither_loses_nor_repeats(settings: Settings, office: PortOffice, tmp_path: Path) -> None:
    first = instructions_for(office, 100, 40)
    produce(settings, first)

    # 1. a station works through part of the backlog and stops cleanly
    a = station(settings, tmp_path)
    a.run(max_instructions=len(first) // 2)
    done_a = a.stats.records

    # 2. the next one acts on a batch, then crashes before committing its offsets
    b = station(settings, tmp_path)
    b.fail_before_commit = True
    with pytest.raises(StationCrash):
        b.run(max_idle_s=10.0)
    assert b.stats.acted > 0

    # 3. more traffic arrives, including redeliveries of instructions already acted on
    second = instructions_for(office, 200, 30)
    redelivered = [r for r in first if r["final"]][:10]
    produce(settings, second + redelivered)

    # 4. a restarted station picks up where the committed offsets are, and the journal dedups
    c = station(settings, tmp_path)
    stats = c.run(max_idle_s=5.0)
    assert stats.records == len(first) - done_a + len(second) + len(redelivered)
    assert stats.duplicates == b.stats.acted + len(redelivered)  # b's batch is in the journal

    results = read_results(settings)
    ids = Counter(r["instruction_id"] for r in results)
    assert set(ids) == expected_results(first + second), "lost work"
    assert max(ids.values()) == 1, f"repeated work: {[i for i, n in ids.items() if n > 1]}"
    assert a.stats.results + b.stats.results + stats.results == len(ids)


def test_gateway_publishes_and_its_scanners_answer(settings: Settings, office: PortOffice) -> None:
    """The live gateway: credit register, declarations co-partitioned with their scans, and a scan
    (or, sometimes, deliberately none) for each machine-check, once even if the instruction repeats."""
    gateway = PortGateway(settings, office, lifecycle_per_declaration=0.01)
    try:
        gateway.start_scanners(scan_delay_scale=0.001)
        credit = gateway.publish_credit_population()
        assert gateway.publish_declarations(400, rate_per_s=0) == 400
        checks = [{**r, "decided_at": now_iso()} for r in instructions_for(office, 0, 400) if r["action"] == "machine-check"]
        produce(settings, checks + checks[:10])
        deadline = time.monotonic() + 60
        while gateway.stats.scans_published + gateway.stats.scans_withheld < len(checks):
            assert time.monotonic() < deadline, f"scanners answered too little: {gateway.stats}"
            time.sleep(0.2)
        time.sleep(1.0)  # a repeated instruction must not produce a second scan
        assert gateway.stats.machine_checks == len(checks)
    finally:
        gateway.close()

    declarations = read_topic(settings, "declarations")
    scans = read_topic(settings, "scans")
    lifecycle_events = read_topic(settings, "credit-events")
    register = [event for _, batch in read_topic(settings, "credit-event-batches") for event in batch["events"]]
    assert len(declarations) == 400
    assert len(register) == credit and len({e["event_id"] for e in register}) == credit  # the register, as batches
    assert len(lifecycle_events) == gateway.stats.lifecycle_events  # the lifecycle, one event per record
    assert gateway.stats.lifecycle_events == 4
    partition_of = {d["declaration_id"]: p for p, d in declarations}
    assert len(scans) == gateway.stats.scans_published
    assert len({s["scan_id"] for _, s in scans}) == len(scans)
    checked = {r["declaration_id"] for r in checks}
    for p, scan in scans:
        assert scan["declaration_id"] in checked
        assert partition_of[scan["declaration_id"]] == p  # co-partitioned with its declaration
    for _, d in declarations:
        assert gateway.truth(d["declaration_id"]) == office.truth_for(d["declaration_id"])
