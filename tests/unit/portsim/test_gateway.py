"""The gateway's publishing and scanner logic, with an in-memory producer (no broker)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from common.settings import Settings
from common.timefmt import utc_iso
from portsim.gateway import PortGateway
from portsim.traffic import PortOffice
from schemas import CreditEvent, CreditEventBatch, Declaration, ScanResult


class FakeProducer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes, partition: int = -1) -> None:
        self.records.append((topic, key, value))

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, _timeout: float = 0) -> int:
        return 0

    def on(self, topic: str) -> list[tuple[bytes, dict]]:
        return [(k, orjson.loads(v)) for t, k, v in self.records if t == topic]


@pytest.fixture
def gateway(small_office: PortOffice) -> tuple[PortGateway, FakeProducer]:
    fake = FakeProducer()
    return PortGateway(Settings(topic_prefix="t."), small_office, producer=fake, lifecycle_per_declaration=0.01), fake  # type: ignore[arg-type]  # a fake producer


def test_publishes_valid_keyed_records_with_current_event_times(gateway: Any) -> None:
    gw, fake = gateway
    n_credit = gw.publish_credit_population()
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert gw.publish_declarations(1_000) == 1_000
    decls = fake.on("t.declarations")
    assert len(decls) == 1_000
    for key, d in decls:
        model = Declaration.model_validate_json(orjson.dumps(d))
        assert key == model.declaration_id.encode()
        assert before <= model.event_time <= datetime.now(UTC) + timedelta(seconds=1)
        assert gw.truth(model.declaration_id) is not None
    credit = fake.on("t.credit-events")  # the lifecycle, one event a record
    assert len(credit) == 10 == gw.stats.lifecycle_events
    for key, e in credit:
        assert key == CreditEvent.model_validate_json(orjson.dumps(e)).enterprise_id.encode()
    batches = fake.on("t.credit-event-batches")  # the register, in batches
    assert sum(len(b["events"]) for _, b in batches) == n_credit == gw.stats.credit_events
    for key, b in batches:
        assert key == CreditEventBatch.model_validate_json(orjson.dumps(b)).batch_id.encode()
    # numbering continues across calls
    gw.publish_declarations(5)
    assert fake.on("t.declarations")[-1][1]["declaration_id"] == "D11-0000001004"


def test_rate_limit_and_duration(gateway: Any) -> None:
    gw, _ = gateway
    t0 = time.monotonic()
    sent = gw.publish_declarations(rate_per_s=200, duration_s=1.0)
    elapsed = time.monotonic() - t0
    assert 0.9 < elapsed < 2.0
    assert 150 <= sent <= 230


def _machine_check(d: dict, decided_at: str) -> bytes:
    return orjson.dumps({"instruction_id": f"{d['declaration_id']}:1:declaration", "declaration_id": d["declaration_id"],
                         "revision": 1, "port": d["port"], "stage": "declaration", "action": "machine-check",
                         "final": False, "decided_at": decided_at})


def test_scanner_answers_each_machine_check_once(gateway: Any) -> None:
    gw, fake = gateway
    gw.publish_declarations(300)
    decls = [d for _, d in fake.on("t.declarations")]
    now = utc_iso()
    for d in decls:
        gw._on_instruction(_machine_check(d, now), 0.0, 900.0)
    for d in decls[:20]:  # redelivered
        gw._on_instruction(_machine_check(d, now), 0.0, 900.0)
    gw._on_instruction(b"not json", 0.0, 900.0)
    gw._on_instruction(orjson.dumps({"stage": "scan", "action": "inspect"}), 0.0, 900.0)
    old = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    gw._on_instruction(_machine_check({**decls[0], "declaration_id": "D11-0000099999"}, old), 0.0, 900.0)
    assert gw.stats.stale_instructions == 1
    gw.publish_due_scans()
    scans = fake.on("t.scans")
    assert gw.stats.machine_checks == 300
    assert len(scans) + gw.stats.scans_withheld == 300
    assert 0 < gw.stats.scans_withheld < 30
    for key, s in scans:
        model = ScanResult.model_validate_json(orjson.dumps(s))
        assert key == model.declaration_id.encode()


def test_scan_delays_are_scaled(gateway: Any) -> None:
    gw, fake = gateway
    gw.publish_declarations(50)
    now = utc_iso()
    for _, d in fake.on("t.declarations"):
        gw._on_instruction(_machine_check(d, now), 1.0, 900.0)  # real delays: tens of seconds
    gw.publish_due_scans()
    assert fake.on("t.scans") == []
    assert gw.pending_scans == gw.stats.scans_scheduled > 0


def test_a_callers_loop_publishes_batches_and_plays_the_scanners(small_office: PortOffice) -> None:
    """The demo's and the bench's way: publish() one by one (batched per partition), answer()
    instructions as they come, poll() for the scans due."""
    fake = FakeProducer()
    gw = PortGateway(Settings(topic_prefix="t.", partitions=4), small_office, producer=fake,  # type: ignore[arg-type]  # a fake producer
                     batching=True, gateway_id="GW-T", lifecycle_per_declaration=0.01)
    records = []
    for _ in range(400):
        record, truth = gw.next_declaration()
        record["event_time"] = utc_iso()
        gw.publish(record, truth)
        records.append(record)
    gw.flush()
    assert fake.on("t.declarations") == []
    batches = [b for _, b in fake.on("t.declaration-batches")]
    assert all(b["gateway"] == "GW-T" for b in batches)
    assert sorted(d["declaration_id"] for b in batches for d in b["declarations"]) == sorted(r["declaration_id"] for r in records)
    assert len(fake.on("t.credit-events")) == gw.stats.lifecycle_events == 4
    assert gw.stats.declarations == 400

    now = utc_iso()
    answered = [gw.answer(orjson.loads(_machine_check(d, now)), scan_delay_scale=0.0) for d in records]
    assert not gw.answer(orjson.loads(_machine_check(records[0], now)), scan_delay_scale=0.0)  # a repeat
    assert not gw.answer({"stage": "declaration", "action": "release"})
    assert not gw.answer(None)
    assert sum(answered) == gw.stats.scans_scheduled == 400 - gw.stats.scans_withheld
    gw.poll()
    scans = fake.on("t.scans")
    assert len(scans) == gw.stats.scans_published == sum(answered)
    for key, s in scans:
        assert key == ScanResult.model_validate_json(orjson.dumps(s)).declaration_id.encode()


def test_truths_kept_by_the_caller_and_centralised_items(small_office: PortOffice) -> None:
    fake = FakeProducer()
    (_record, truth), (_other, other_truth) = small_office.declaration_dicts(2, first_index=5_000)
    gw = PortGateway(Settings(topic_prefix="t."), small_office, producer=fake, truths={"X-1": truth})  # type: ignore[arg-type]  # a fake producer
    assert gw.truth("X-1") == truth
    gw.publish_centralised({"centralised_id": "C1-000001", "items": [{}, {}]}, {"C1-000001-0001": truth, "C1-000001-0002": other_truth})
    assert gw.truth("C1-000001-0002") == other_truth
    assert gw.stats.centralised == 1 and gw.stats.declarations == 2
    assert [k for k, _ in fake.on("t.centralised-declarations")] == [b"C1-000001"]


def test_the_credit_register_size_is_what_the_table_must_hold(gateway: Any) -> None:
    gw, _ = gateway
    n = gw.publish_credit_population()
    assert 0 < gw.credit_enterprises < n
    assert gw.credit_enterprises == len({e.enterprise_id for e in gw.office.credit_population()})
