"""The demo's zero-tariff register and positions, run through the worker's own rules: each planted
story raises the warnings it promises, routine fixes raise none, and a leaving declaration is caught."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from decision.positions import TrackedState, on_position
from policy.config import ZeroTariff
from policy.zerotariff import GOODS_LEAVING, check_declaration, decode_goods, fold_import, goods_key, registered_goods
from portsim.tracking import held_goods, leaving_declaration, live_positions, live_register
from portsim.traffic import PortOffice
from schemas import Declaration

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
CONFIG = ZeroTariff()


@pytest.fixture(scope="module")
def office() -> PortOffice:
    return PortOffice(seed=7, enterprises=5_000)


def fold(register: list) -> dict[bytes, bytes]:
    """The register as the worker's fold leaves its table."""
    table: dict[bytes, bytes] = {}
    for record in register:
        for key, value in fold_import(record.import_id, record, table.get).writes.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    return table


def test_the_planted_stories_raise_the_warnings_they_promise(office: PortOffice) -> None:
    register = live_register(office, 7, NOW)
    held = held_goods(register)
    table = fold(register)
    assert held and len([k for k in table if k.startswith(b"g:")]) == len(held), "held goods are what the fold keeps"
    events, expected = live_positions(held, 7, NOW, CONFIG)
    assert expected["zero-tariff-away-too-long"] > 0 and expected["zero-tariff-port-passage"] > 0
    states: dict[str, TrackedState | None] = {}
    raised: Counter[str] = Counter()
    for event in events:
        goods = decode_goods(table[goods_key(event.identifier)])  # what the worker looks up: on the register
        step = on_position(CONFIG, states.get(event.identifier), event, goods, "p", NOW.timestamp())
        assert step.state is not None, "every event is applied (none stale)"
        states[event.identifier] = step.state
        raised.update(rule for _, rule in step.raised)
    assert dict(raised) == expected


def test_a_leaving_declaration_names_held_goods_and_is_inspected(office: PortOffice) -> None:
    register = live_register(office, 7, NOW)
    held = held_goods(register)
    table = fold(register)
    decl = Declaration.model_validate(leaving_declaration(declaration(), held[0]), strict=False)
    findings = check_declaration(CONFIG, decl, registered_goods(table, decl))
    assert [f.rule for f in findings] == [GOODS_LEAVING] and findings[0].warning is not None
    released = {r.import_id for r in register if r.status.value == "released"}
    assert released and not any(g.import_id in released for g in held), "released imports' goods are not held"


def test_the_same_seed_gives_the_same_records(office: PortOffice) -> None:
    first = live_positions(held_goods(live_register(office, 7, NOW)), 7, NOW, CONFIG)
    again = live_positions(held_goods(live_register(office, 7, NOW)), 7, NOW, CONFIG)
    assert first == again


def declaration() -> dict:
    return {"declaration_id": "D1", "port": "HAK-SEA", "enterprise_id": "E1", "declarant_id": "DC1", "scenario": "zero-tariff",
            "hs_code": "851712", "origin_country": "CN", "departure_country": "CN", "transport_mode": "road",
            "declared_value": 1000.0, "currency": "CNY", "net_mass_kg": 5.0, "tax_rate": 5.0, "event_time": NOW.isoformat()}
