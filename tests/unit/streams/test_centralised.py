"""Centralised declarations: the schema (hostile cases included) and the split agent's handler,
driven through the topology without a broker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from clients import topics
from decision.services import Services
from policy.config import Policy
from schemas import CentralisedDeclaration, ControlInstruction, Declaration, codec
from schemas.deadletters import reject_reason
from schemas.partitioning import partition_for
from schemas.records import MAX_CENTRALISED_ITEMS
from streams.testing import TopologyDriver
from tests.unit.streams.helpers import FixedScorer, decl, policy, scan

NOW = datetime.now(UTC).isoformat()


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


# ---- the split agent, through the topology driver ----------------------------------------------------
def credit_event(eid: str, event_id: str, event_type: str, **kw: Any) -> tuple[bytes, dict[str, Any]]:
    return eid.encode(), {"event_id": event_id, "enterprise_id": eid, "event_type": event_type, "source_agency": "customs",
                          "event_time": NOW, **kw}


def make_driver(pol: Policy | None = None) -> TopologyDriver:
    # White-list thresholds of the fixture policy: machine-check from 0.75, inspect from 0.93.
    scorer = FixedScorer({"C1-0003": 0.8, "C1-0007": 0.99})
    d = TopologyDriver(Services(pol or policy(), scorer))
    d.scorer = scorer  # type: ignore[attr-defined]  # kept on the driver for the test's asserts
    d.send(topics.CREDIT_EVENTS, [
        credit_event("WL1", "CE1", "credit-class-changed", credit_class="white-list"),
        credit_event("JP1", "CE2", "credit-class-changed", credit_class="white-list"),
        credit_event("JP1", "CE3", "joint-penalty-imposed"),
    ])
    return d


def test_a_white_list_centralised_declaration_becomes_one_decided_declaration_per_item() -> None:
    d = make_driver()
    d.send(topics.CENTRALISED_DECLARATIONS, [(b"C1", centralised("C1", "WL1", 12))])
    emitted = d.records(topics.DECLARATIONS)
    ids = [f"C1-{i:04d}" for i in range(1, 13)]
    assert sorted(k.decode() for _, k, _ in emitted) == ids
    n = d.settings.partitions
    assert all(p == partition_for(k, n) for p, k, _ in emitted)  # co-partitioned with the items' scans
    assert len({p for p, _, _ in emitted}) > 1
    assert d.instructions() == [] and d.dead_letters() == []

    assert d.forward(topics.DECLARATIONS) == 12
    d.send(topics.SCANS, [(b"C1-0003", scan("C1-0003", "clean"))])
    instructions = d.instructions()
    for i in instructions:
        ControlInstruction.model_validate_json(orjson.dumps(i))
    assert {i["centralised_id"] for i in instructions} == {"C1"}
    finals = {i["declaration_id"]: i["action"] for i in instructions if i["final"]}
    assert sorted(finals) == ids
    assert (finals["C1-0003"], finals["C1-0007"]) == ("release", "inspect")  # after its scan / at once
    assert sum(1 for v in finals.values() if v == "release") == 11
    assert {i["stage"] for i in instructions if i["declaration_id"] == "C1-0003"} == {"declaration", "scan"}


def test_an_ordinary_declarations_instruction_has_no_centralised_id_key() -> None:
    d = make_driver()
    d.send(topics.DECLARATIONS, [(b"PLAIN", decl("PLAIN"))])
    (instruction,) = d.instructions()
    assert "centralised_id" not in instruction  # its bytes are what they were before centralised declarations


@pytest.mark.parametrize("enterprise, reason, detail", [
    ("GEN1", "centralised-not-allowed", "credit class general may not submit centralised declarations"),  # no credit events: general
    ("JP1", "centralised-not-allowed", "credit class joint-penalty (joint penalty) may not"),  # white list, but a joint penalty
])
def test_refused_centralised_declarations_are_dead_lettered_with_the_reason(enterprise: str, reason: str, detail: str) -> None:
    d = make_driver()
    refused = lambda: REGISTRY.get_sample_value("customs_centralised_declarations_total", {"outcome": "refused"}) or 0.0  # noqa: E731 - a named condition for the wait it is passed to
    before = refused()
    d.send(topics.CENTRALISED_DECLARATIONS, [(b"C9", centralised("C9", enterprise, 2))])
    assert refused() == before + 1
    (letter,) = d.dead_letters()
    assert (letter["reason"], letter["source_topic"]) == (reason, d.settings.topic(topics.CENTRALISED_DECLARATIONS))
    assert detail in letter["error"]
    assert d.records(topics.DECLARATIONS) == []


def test_more_items_than_the_policy_allows_are_refused_and_bad_records_dead_lettered() -> None:
    base = policy()
    d = make_driver(base.model_copy(update={"batch": base.batch.model_copy(update={"max_items": 5})}))
    d.send(topics.CENTRALISED_DECLARATIONS, [
        (b"C5", centralised("C5", "WL1", 5)),  # at the limit: split
        (b"C6", centralised("C6", "WL1", 6)),
        (b"OTHER", centralised("C7", "WL1", 1)),
        (b"C8", b"{not json"),
        (b"C9", {**centralised("C9", "WL1", 2), "items": [item(2), item(1)]}),
    ])
    letters = {x["reason"]: x["error"] for x in d.dead_letters()}
    assert sorted(letters) == ["centralised-too-many-items", "invalid-json", "key-mismatch", "schema-violation"]
    assert "1 to 5 items, got 6" in letters["centralised-too-many-items"]
    assert "item_no must be unique and ascending: 1 follows 2" in letters["schema-violation"]
    assert sorted(k.decode() for _, k, _ in d.records(topics.DECLARATIONS)) == [f"C5-{i:04d}" for i in range(1, 6)]


def test_redelivery_re_emits_identical_items_and_decides_nothing_twice() -> None:
    d = make_driver()
    record = [(b"C1", centralised("C1", "WL1", 12))]
    d.send(topics.CENTRALISED_DECLARATIONS, record)
    d.forward(topics.DECLARATIONS)
    first_items, first_instructions = d.records(topics.DECLARATIONS), d.records(topics.INSTRUCTIONS)
    calls = list(d.scorer.calls)  # type: ignore[attr-defined]

    d.send(topics.CENTRALISED_DECLARATIONS, record)  # at-least-once: the same record again
    again = d.records(topics.DECLARATIONS)[len(first_items):]
    assert again == first_items  # same keys, partitions and bytes
    assert d.forward(topics.DECLARATIONS) == 12
    assert d.scorer.calls == calls  # type: ignore[attr-defined]  # nothing scored or decided again
    assert d.records(topics.INSTRUCTIONS)[len(first_instructions):] == first_instructions  # the stored bytes, re-emitted
    assert len({orjson.loads(v)["instruction_id"] for _, _, v in d.records(topics.INSTRUCTIONS)}) == 12
