"""Every generated record validates against the strict schemas and is internally consistent."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson

from portsim import world
from portsim.population import GENERAL
from portsim.traffic import PortOffice
from schemas import ControlInstruction, CreditEvent, CreditEventType, Declaration, InspectionResult, ScanResult

IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
MODES_BY_KIND = {world.SEA: {"sea", "other"}, world.AIR: {"air", "post"}, world.RAIL_ROAD: {"rail", "road"}}


def test_ports() -> None:
    assert len(world.PORTS) == 10
    assert {p.kind for p in world.PORTS} == {world.SEA, world.AIR, world.RAIL_ROAD}
    assert all(IDENT.match(p.port_id) for p in world.PORTS)
    assert abs(sum(p.share for p in world.PORTS) - 1.0) < 1e-9


def test_every_declaration_dict_validates_strictly_and_round_trips(sample: list) -> None:
    for d, truth in sample[:50_000]:
        model = Declaration.model_validate_json(orjson.dumps(d))
        assert model.model_dump(mode="json", exclude_unset=True) == d  # every key but centralised_id (items only)
        assert truth.declaration_id == d["declaration_id"]


def test_declarations_yields_models(small_office: PortOffice) -> None:
    decls = list(small_office.declarations(200))
    assert all(isinstance(d, Declaration) for d, _ in decls)
    assert [d.declaration_id for d, _ in decls] == [f"D11-{i:010d}" for i in range(200)]


def test_fields_are_consistent(sample: list, office: PortOffice) -> None:
    kinds = {p.port_id: p.kind for p in world.PORTS}
    pop = office.population
    previous = None
    now = datetime.now(UTC)
    for d, _ in sample:
        assert d["transport_mode"] in MODES_BY_KIND[kinds[d["port"]]]
        assert (d["courier_id"] is not None) <= (d["transport_mode"] in ("post", "air"))
        i = int(d["enterprise_id"][3:])
        if d["scenario"] == "zero-tariff":
            assert pop.zero_tariff[i]
        elif d["scenario"] == "processing-value-added":
            assert pop.processing[i]
        elif d["scenario"] == "duty-free-shopping":
            assert pop.duty_free_operator[i]
        if d["scenario"] in ("zero-tariff", "duty-free-shopping"):
            assert d["tax_rate"] == 0.0
        t = datetime.fromisoformat(d["event_time"])
        assert previous is None or t >= previous
        previous = t
    assert previous < now + timedelta(days=1)


def test_scenario_and_port_mix(sample: list) -> None:
    from collections import Counter

    scen = Counter(d["scenario"] for d, _ in sample)
    assert set(scen) == {"general-trade", "zero-tariff", "processing-value-added", "duty-free-shopping"}
    assert scen["general-trade"] > len(sample) / 2
    assert all(scen[s] > 0.02 * len(sample) for s in scen)
    ports = Counter(d["port"] for d, _ in sample)
    assert set(ports) == set(world.PORT_IDS)


def test_credit_population(office: PortOffice) -> None:
    events = list(office.credit_population())
    assert all(isinstance(e, CreditEvent) for e in events)
    pop = office.population
    covered = {e.enterprise_id for e in events}
    non_general = {pop.ids[i] for i in range(pop.size) if pop.credit_class[i] != GENERAL}
    assert non_general <= covered  # one or more events per non-general enterprise
    shares = {e.credit_class.value: 0 for e in events if e.credit_class}
    for e in events:
        if e.event_type is CreditEventType.CREDIT_CLASS_CHANGED:
            shares[e.credit_class.value] += 1
    assert 0.02 < shares["aeo"] / pop.size < 0.04
    assert 0.08 < shares["white-list"] / pop.size < 0.12
    assert 0.04 < shares["focus-list"] / pop.size < 0.06
    assert len({e.event_id for e in events}) == len(events)
    for e in events[:2000]:
        assert CreditEvent.model_validate_json(orjson.dumps(e.model_dump(mode="json"))) == e


def test_lifecycle_events(office: PortOffice) -> None:
    events = list(office.lifecycle_events(3_000))
    assert len(events) == 3_000
    types = {e.event_type for e in events}
    assert {CreditEventType.CREDIT_CLASS_CHANGED, CreditEventType.QUALIFICATION_REGISTERED,
            CreditEventType.QUALIFICATION_SUSPENDED, CreditEventType.JOINT_PENALTY_IMPOSED} <= types
    times = [e.event_time for e in events]
    assert times == sorted(times)
    for e in events:
        CreditEvent.model_validate_json(orjson.dumps(e.model_dump(mode="json")))


def _instruction(d: dict, action: str = "inspect", stage: str = "declaration", final: bool = True) -> ControlInstruction:
    return ControlInstruction.model_validate_json(orjson.dumps({
        "instruction_id": f"{d['declaration_id']}:1:{stage}", "declaration_id": d["declaration_id"], "revision": 1,
        "port": d["port"], "enterprise_id": d["enterprise_id"], "scenario": d["scenario"], "stage": stage,
        "action": action, "final": final, "selection_reason": "random", "credit_class": "general", "score": 0.3,
        "policy_version": "p1", "event_time": d["event_time"], "decided_at": d["event_time"],
    }))


def test_scans_and_inspections_validate(small_office: PortOffice) -> None:
    for d, truth in small_office.declaration_dicts(500):
        scan, delay = small_office.scan_for(d["declaration_id"], truth, d["port"])
        assert delay > 0
        if scan is not None:
            assert ScanResult.model_validate_json(orjson.dumps(scan.model_dump(mode="json"))) == scan
        result = small_office.inspection_for(_instruction(d), truth, f"{d['port']}-ST1")
        assert InspectionResult.model_validate_json(orjson.dumps(result.model_dump(mode="json"))) == result
