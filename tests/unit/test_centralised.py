"""Centralised declarations: the schema (hostile cases included) and the split agent's handler,
driven through the topology without a broker."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas import CentralisedDeclaration, Declaration, codec
from schemas.records import MAX_CENTRALISED_ITEMS
from streams.deadletter import reject_reason

NOW = datetime.now(timezone.utc).isoformat()


def item(no: int, **over: Any) -> dict[str, Any]:
    return {"item_no": no, "hs_code": "851712", "origin_country": "CN", "declared_value": 1000.0 + no, "currency": "CNY",
            "net_mass_kg": 5.0, "tax_rate": 5.0, **over}


def centralised(cid: str, enterprise: str, n_items: int = 3, **over: Any) -> dict[str, Any]:
    return {"schema_version": 1, "centralised_id": cid, "revision": 1, "port": "HAK-SEA", "enterprise_id": enterprise,
            "declarant_id": "DC1", "scenario": "general-trade", "transport_mode": "sea", "departure_country": "CN",
            "event_time": NOW, "items": [item(i) for i in range(1, n_items + 1)], **over}


def rejected(record: dict[str, Any] | bytes) -> tuple[str, str]:
    raw = record if isinstance(record, bytes) else orjson.dumps(record)
    with pytest.raises((ValidationError, codec.DuplicateKey)) as info:
        codec.parse(CentralisedDeclaration, raw)
    return reject_reason(info.value)


# ---- schema ----------------------------------------------------------------------------------------
def test_items_become_declarations_with_their_own_ids() -> None:
    record = centralised("C1", "E1", 2, procedure_code="0110", items=[item(1, seller_id="S1"), item(7, quantity=3.0)])
    decls = codec.parse(CentralisedDeclaration, orjson.dumps(record)).item_declarations()
    assert [d.declaration_id for d in decls] == ["C1-0001", "C1-0007"]
    assert {(d.centralised_id, d.revision, d.enterprise_id, d.procedure_code) for d in decls} == {("C1", 1, "E1", "0110")}
    assert (decls[0].seller_id, decls[0].quantity, decls[1].seller_id, decls[1].quantity) == ("S1", None, None, 3.0)
    for d in decls:  # what the split agent emits parses back as the same declaration
        assert codec.parse(Declaration, d.model_dump_json(exclude_none=True).encode()) == d


def test_the_longest_id_and_item_number_still_make_a_valid_declaration_id() -> None:
    record = centralised("C" * 59, "E1", items=[item(9999)])
    (decl,) = codec.parse(CentralisedDeclaration, orjson.dumps(record)).item_declarations()
    assert decl.declaration_id == "C" * 59 + "-9999" and len(decl.declaration_id) == 64
    assert rejected({**record, "centralised_id": "C" * 60})[0] == "schema-violation"


@pytest.mark.parametrize("items, detail", [
    ([item(1), item(1)], "item_no must be unique and ascending: 1 follows 1"),
    ([item(1), item(3), item(2)], "item_no must be unique and ascending: 2 follows 3"),
    ([], "at least 1 item"),
    ([item(i) for i in range(1, MAX_CENTRALISED_ITEMS + 2)], f"at most {MAX_CENTRALISED_ITEMS} items"),
    ([item(0)], "greater than or equal to 1"),
    ([item(10_000)], "less than or equal to 9999"),
    ([item(1, declared_value="1000")], "valid number"),  # no coercion inside items either
    ([item(1, extra=1)], "Extra inputs"),
    ([item(1, hs_code="85A712")], "pattern"),
    ("C1-0001", "valid array"),
])
def test_hostile_item_lists_are_rejected(items: Any, detail: str) -> None:
    reason, text = rejected(centralised("C1", "E1", items=items))
    assert reason == "schema-violation" and detail in text


def test_nan_inside_an_item_is_rejected() -> None:
    raw = orjson.dumps(centralised("C1", "E1", 1)).replace(b'"tax_rate":5.0', b'"tax_rate":NaN')
    assert rejected(raw)[0] == "schema-violation"


@pytest.mark.parametrize("change", [{"centralised_id": "../x"}, {"revision": 0}, {"scenario": "smuggling"},
                                    {"event_time": "2999-01-01T00:00:00Z"}, {"declaration_id": "D1"}, {"hs_code": "851712"}])
def test_hostile_headers_are_rejected(change: dict[str, Any]) -> None:
    assert rejected({**centralised("C1", "E1"), **change})[0] == "schema-violation"


def test_duplicate_keys_inside_an_item_are_refused() -> None:
    raw = orjson.dumps(centralised("C1", "E1", 2)).replace(b'"item_no":2,', b'"item_no":2,"item_no":2,')
    assert rejected(raw)[0] == "duplicate-key"
