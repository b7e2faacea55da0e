"""Replaying the same inputs with the same versions gives the same instructions, byte for byte.

A seeded stream (credit events, risk-list entries, declarations and revisions, a centralised
declaration, scans before and after their declarations, scan timeouts) runs through two fresh
topology drivers with the shipped policy, the bundled starter model and the same clock. Every
instruction and every table write must be identical (dead letters excepted: they record when they
were received)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from clients import topics
from decision.services import Services
from policy.config import load_policy
from riskmodels.serving import ModelRegistry
from streams.testing import TopologyDriver

T0 = 1_800_000_000.0  # the drivers' clock: decided_at and scan deadlines derive from it
ENTERPRISES = [f"E{i}" for i in range(8)]
HS_CODES = ["851712", "240220", "847130", "930320", "610910", "030617"]
COUNTRIES = ["CN", "VN", "KP", "DE", "US", "SG"]

Op = tuple[str, Any]  # ("send", (topic, records)), ("forward", topic), ("advance", seconds)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def generate(seed: int) -> list[Op]:
    rng = random.Random(seed)
    event_time = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    ops: list[Op] = []

    def send(topic: str, records: list[tuple[bytes, Any]]) -> None:
        ops.append(("send", (topic, records)))

    credit = [("white-list", "credit-class-changed", {"credit_class": "white-list"}),
              ("focus", "credit-class-changed", {"credit_class": "focus-list"}),
              ("aeo", "credit-class-changed", {"credit_class": "aeo"}),
              ("penalty", "joint-penalty-imposed", {}),
              ("zt", "qualification-registered", {"qualification": "zero-tariff"})]
    for i, eid in enumerate(ENTERPRISES):
        tag, kind, extra = credit[i % len(credit)]
        send(topics.CREDIT_EVENTS, [(eid.encode(), {"event_id": f"CE-{eid}-{tag}", "enterprise_id": eid, "event_type": kind,
                                                     "source_agency": "customs", "event_time": event_time, **extra})])
    lists = [("R1", "origin", "KP", "inspect"), ("R2", "hs-prefix", "8471", "watch"), ("R3", "enterprise", "E6", "machine-check")]
    send(topics.RISK_LISTS, [(rid.encode(), {"entry_id": rid, "list_id": "L", "kind": kind, "value": value, "action": action,
                                             "reason": "replay", "source_agency": "customs", "valid_from": "2020-01-01T00:00:00Z"})
                             for rid, kind, value, action in lists])

    # One port and one enterprise per declaration, whatever its revision: a scan binds to its
    # declaration's port, and an amendment naming another enterprise is refused.
    ports: dict[str, str] = {}
    enterprises: dict[str, str] = {}

    def port_of(did: str) -> str:
        return ports.get(did) or ports.setdefault(did, rng.choice(["HAK-SEA", "YPU-SEA", "BAR-AIR"]))

    def declaration(did: str, revision: int = 1) -> dict[str, Any]:
        port = port_of(did)
        enterprise = enterprises.get(did) or enterprises.setdefault(did, rng.choice(ENTERPRISES))
        return {"declaration_id": did, "revision": revision, "port": port, "enterprise_id": enterprise,
                "declarant_id": "DC1", "scenario": rng.choice(["general-trade", "zero-tariff"]),
                "hs_code": rng.choice(HS_CODES), "origin_country": rng.choice(COUNTRIES), "departure_country": rng.choice(COUNTRIES),
                "transport_mode": "sea", "declared_value": round(rng.uniform(10, 50_000), 2), "currency": "CNY",
                "net_mass_kg": round(rng.uniform(0.1, 900), 3), "tax_rate": rng.choice([0.0, 5.0, 13.0]), "event_time": event_time}

    def scan(did: str, revision: int = 1) -> dict[str, Any]:
        suspicious = rng.random() < 0.3
        port = port_of(did)
        return {"scan_id": f"S-{did}-{revision}", "declaration_id": did, "revision": revision, "port": port, "device_id": f"{port}-XR01",
                "device_type": "x-ray", "anomaly_score": 0.9 if suspicious else 0.1, "verdict": "suspicious" if suspicious else "clean",
                "suspected_categories": ["dense-object"] if suspicious else [], "event_time": event_time}

    late_scans: list[tuple[bytes, Any]] = []
    for batch in range(12):
        records = []
        for j in range(20):
            did = f"D{batch:02d}{j:02d}"
            draw = rng.random()
            if draw < 0.15:  # the scan comes first
                send(topics.SCANS, [(did.encode(), scan(did))])
            elif draw < 0.6:  # the scan comes later (or never: a scan timeout)
                late_scans.append((did.encode(), scan(did)))
            records.append((did.encode(), declaration(did)))
            if rng.random() < 0.05:  # a new revision in the same micro-batch
                records.append((did.encode(), declaration(did, revision=2)))
        send(topics.DECLARATIONS, records)
        ops.append(("advance", 0.25))
        if batch % 3 == 2:
            rng.shuffle(late_scans)
            send(topics.SCANS, late_scans[: len(late_scans) // 2])
            del late_scans[: len(late_scans) // 2]
    # An amendment of a pending machine-check (enterprise E6 is on a machine-check list): decided afresh.
    enterprises["DREV"] = "E6"
    for revision in (1, 2):
        send(topics.DECLARATIONS, [(b"DREV", {**declaration("DREV", revision), "scenario": "general-trade", "origin_country": "CN",
                                              "departure_country": "CN"})])
    items = [{"item_no": n, "hs_code": rng.choice(HS_CODES), "origin_country": rng.choice(COUNTRIES), "declared_value": 100.0 * n,
              "currency": "CNY", "net_mass_kg": 2.0, "tax_rate": 5.0} for n in range(1, 9)]
    send(topics.CENTRALISED_DECLARATIONS, [(b"C1", {"centralised_id": "C1", "port": "HAK-SEA", "enterprise_id": "E0", "declarant_id": "DC1",
                                                   "scenario": "general-trade", "transport_mode": "sea", "departure_country": "CN",
                                                   "event_time": event_time, "items": items})])
    ops.append(("forward", topics.DECLARATIONS))
    send(topics.SCANS, [(b"C1-0002", scan("C1-0002"))])
    ops.append(("advance", 600.0))  # past every port's scan deadline: the rest time out
    return ops


def replay(ops: list[Op]) -> TopologyDriver:
    clock = Clock()
    driver = TopologyDriver(Services(load_policy(), ModelRegistry.open(None)), clock=clock)
    for kind, arg in ops:
        if kind == "send":
            driver.send(*arg)
        elif kind == "forward":
            driver.forward(arg)
        else:
            clock.now += arg
            driver.expire(clock.now)
    return driver


def test_the_same_inputs_replay_to_the_same_instruction_bytes() -> None:
    ops = generate(seed=20261128)
    first, second = replay(ops), replay(ops)
    dead = first.settings.topic(topics.DEAD_LETTERS)
    assert first.dead_letters() == []
    outputs = [o for o in first.outputs if o[0] != dead]
    assert outputs == [o for o in second.outputs if o[0] != dead]
    assert first.records(topics.INSTRUCTIONS) == second.records(topics.INSTRUCTIONS)

    # The stream exercised what it claims to.
    instructions = [orjson.loads(v) for _, _, v in first.records(topics.INSTRUCTIONS)]
    assert {i["stage"] for i in instructions} == {"declaration", "scan", "timeout"}
    assert {i["action"] for i in instructions} == {"release", "machine-check", "inspect"}
    assert {i["selection_reason"] for i in instructions} >= {"rule", "risk-list", "scan", "timeout"}
    assert {i["revision"] for i in instructions} == {1, 2}
    assert sum(1 for i in instructions if i.get("centralised_id") == "C1" and i["stage"] == "declaration") == 8
    assert {i["decided_at"][:4] for i in instructions} == {"2027"}  # from the drivers' clock, not the wall clock
