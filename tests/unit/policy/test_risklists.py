"""Risk characteristic lists: the record, the index, validity windows, updates and persistence."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from pydantic import ValidationError

from policy.risklists import RiskListIndex, RiskListKeyMismatch, load_jsonl
from schemas import RiskListAction, RiskListEntry, RiskListKind
from tests.unit.factories import NOW, declaration

DAY = timedelta(days=1)


def entry(entry_id: str = "R1", kind: str = "origin", value: str = "CN", action: str = "inspect", **kw) -> RiskListEntry:
    fields = dict(entry_id=entry_id, list_id="L1", kind=kind, value=value, action=action, reason="alert",
                  source_agency="customs", valid_from=NOW - DAY)
    fields.update(kw)
    return RiskListEntry.model_validate(fields, strict=False)


def raw(e: RiskListEntry) -> bytes:
    return e.model_dump_json().encode()


@pytest.mark.parametrize("kind,value", [
    ("hs-code", "8517"), ("hs-prefix", "851"), ("hs-prefix", "8517123456"), ("origin", "cn"),
    ("route", "CN-KP"), ("enterprise", "E 1"),
])
def test_values_must_fit_their_kind(kind, value):
    with pytest.raises(ValidationError):
        entry(kind=kind, value=value)


def test_window_must_not_be_inverted_and_unknown_fields_are_refused():
    with pytest.raises(ValidationError, match="valid_until"):
        entry(valid_until=NOW - 2 * DAY)
    with pytest.raises(ValidationError):
        RiskListEntry.model_validate({**entry().model_dump(mode="json"), "severity": 3})


@pytest.mark.parametrize("kind,value,decl", [
    ("hs-code", "851712", {}),
    ("hs-code", "85171200", {"hs_code": "85171200"}),
    ("hs-prefix", "85", {}),
    ("hs-prefix", "8517", {}),
    ("hs-prefix", "851712", {}),
    ("hs-prefix", "85171200", {"hs_code": "8517120010"}),
    ("origin", "CN", {}),
    ("route", "SG->KP", {"departure_country": "SG", "origin_country": "KP"}),
    ("enterprise", "E1", {}),
    ("declarant", "DC1", {}),
    ("seller", "S1", {}),
])
def test_each_kind_matches_its_field(kind, value, decl):
    index = RiskListIndex([entry(kind=kind, value=value)])
    assert [h.entry_id for h in index.matches(declaration(**decl))] == ["R1"]


@pytest.mark.parametrize("kind,value,decl", [
    ("hs-code", "851712", {"hs_code": "85171200"}),  # an hs-code entry is exact; use hs-prefix for families
    ("hs-prefix", "8518", {}),
    ("hs-prefix", "85171200", {}),  # longer than the declared code
    ("route", "KP->SG", {"departure_country": "SG", "origin_country": "KP"}),  # direction matters
    ("seller", "S1", {"seller_id": None}),
    ("origin", "CN", {"origin_country": "VN"}),
])
def test_non_matches(kind, value, decl):
    assert RiskListIndex([entry(kind=kind, value=value)]).matches(declaration(**decl)) == []


def test_validity_window_is_checked_at_the_declaration_event_time():
    index = RiskListIndex([entry(valid_from=NOW, valid_until=NOW + DAY)])
    assert index.matches(declaration(event_time=NOW - timedelta(seconds=1))) == []
    assert len(index.matches(declaration(event_time=NOW))) == 1  # valid_from is inclusive
    assert index.matches(declaration(event_time=NOW + DAY)) == []  # valid_until is exclusive
    assert len(index.matches(declaration(), at=NOW + timedelta(hours=1))) == 1


def test_apply_adds_replaces_and_deletes_by_entry_id():
    index = RiskListIndex()
    assert index.apply(b"R1", raw(entry()))
    assert not index.apply(b"R1", raw(entry()))  # redelivered: no change
    assert index.apply("R1", raw(entry(kind="hs-prefix", value="8517", action="watch")))  # replaced: kind moved
    hits = index.matches(declaration())
    assert len(index) == 1 and [h.action for h in hits] == [RiskListAction.WATCH]
    assert index.apply(b"R1", None)  # tombstone
    assert len(index) == 0 and index.matches(declaration()) == []
    assert not index.apply(b"R1", None)


def test_expiry_by_valid_until_in_the_past():
    index = RiskListIndex([entry()])
    index.apply(b"R1", raw(entry(valid_until=NOW - timedelta(minutes=1))))
    assert index.matches(declaration()) == []
    assert index.prune(NOW) == 1 and len(index) == 0


def test_bad_records_leave_the_index_unchanged():
    index = RiskListIndex([entry()])
    with pytest.raises(RiskListKeyMismatch):
        index.apply(b"OTHER", raw(entry()))
    with pytest.raises(ValidationError):
        index.apply(b"R1", b'{"entry_id": "R1"}')
    assert len(index) == 1 and index.get("R1") == entry()


def test_hits_are_ordered_by_severity_then_list_then_entry():
    index = RiskListIndex([
        entry("W1", kind="seller", value="S1", action="watch"),
        entry("M2", kind="hs-prefix", value="85", action="machine-check", list_id="B"),
        entry("M1", kind="declarant", value="DC1", action="machine-check", list_id="A"),
        entry("I1", kind="route", value="CN->CN", action="inspect"),
    ])
    assert [h.entry_id for h in index.matches(declaration())] == ["I1", "M1", "M2", "W1"]
    assert index.matches(declaration())[0].ref == "L1/I1"


def test_state_round_trips_through_bytes():
    index = RiskListIndex([entry("A"), entry("B", kind="hs-prefix", value="85", valid_until=NOW + DAY)])
    copy = RiskListIndex.from_bytes(index.to_bytes())
    assert copy.entries() == index.entries()
    assert copy.to_bytes() == index.to_bytes()
    assert copy.matches(declaration()) == index.matches(declaration())
    assert RiskListIndex.from_bytes(b"[]").to_bytes() == b"[]"


def test_sync_mirrors_a_table_and_skips_invalid_values():
    index = RiskListIndex()
    table = {b"A": raw(entry("A")), b"B": raw(entry("B", kind="seller", value="S1"))}
    assert index.sync(table) == 2 and index.sync(table) == 0
    table[b"B"] = b"not json"
    del table[b"A"]
    table[b"C"] = raw(entry("C", kind="enterprise", value="E1"))
    assert index.sync(table) == 3
    assert sorted(e.entry_id for e in index.entries()) == ["C"]


def test_load_jsonl_replaces_deletes_and_names_the_bad_line():
    lines = [raw(entry("A")), raw(entry("B")), orjson.dumps({"entry_id": "A", "deleted": True}), b"",
             raw(entry("B", action="watch"))]
    index = load_jsonl(lines)
    assert [(e.entry_id, e.action.value) for e in index.entries()] == [("B", "watch")]
    with pytest.raises(ValueError, match="line 2"):
        load_jsonl([raw(entry("A")), b'{"entry_id": "X"}'], "lists.jsonl")


def test_matching_is_cheap_with_many_entries():
    index = RiskListIndex(entry(f"E{i}", kind="enterprise", value=f"ENT{i}") for i in range(5000))
    d = declaration(enterprise_id="ENT4242")
    assert [h.entry_id for h in index.matches(d)] == ["E4242"]


# ---- incremental upkeep (issue 15, item 7) ----------------------------------------------------------
def test_refresh_reindexes_only_the_given_keys() -> None:
    table = {b"R1": raw(entry("R1")), b"R2": raw(entry("R2", value="VN"))}
    index = RiskListIndex()
    assert index.refresh(table, [b"R1"]) == 1
    assert "R1" in index and "R2" not in index  # R2 was not named: not looked at
    table[b"R1"] = raw(entry("R1", value="KP"))
    del table[b"R2"]
    assert index.refresh(table, [b"R1", b"R2"]) == 1  # R1 replaced; R2 absent and never indexed
    assert index.get("R1").value == "KP"
    table[b"R1"] = b'{"entry_id": "R1"}'  # invalid (it was dead-lettered): the old version must not linger
    assert index.refresh(table, [b"R1"]) == 1 and "R1" not in index


def test_prune_drops_what_expired_by_its_end_of_validity_and_skips_replaced_versions() -> None:
    index = RiskListIndex([entry("OPEN"), entry("SOON", valid_until=NOW + DAY), entry("LATER", valid_until=NOW + 3 * DAY)])
    index.put(entry("SOON", valid_until=NOW + 5 * DAY))  # extended: the old end of validity is stale
    assert index.prune(NOW + 2 * DAY) == 0
    assert index.prune(NOW + 4 * DAY) == 1 and "LATER" not in index
    assert index.prune(NOW + 6 * DAY) == 1 and "SOON" not in index
    assert len(index) == 1 and "OPEN" in index
    for i in range(1000):  # replaced over and over: the heap stays bounded by the entries it serves
        index.put(entry("CHURN", valid_until=NOW + (7 + i % 5) * DAY))
    assert len(index._expiry) <= 2 * len(index) + 64


# ---- the office's volumes (issue 19): 300,000 entries on every worker ----------------------------------
def test_the_index_keeps_a_compact_form_not_the_records_or_their_models() -> None:
    import gc
    import tracemalloc

    records = [raw(entry(f"E{i:06d}", kind="enterprise", value=f"460{i:07d}", list_id=f"L{i % 40}",
                         reason=f"joint punishment list {i % 40}", valid_until=NOW + DAY if i % 2 else None))
               for i in range(20_000)]
    gc.collect()
    tracemalloc.start()
    try:
        index = RiskListIndex()
        for i, r in enumerate(records):
            index.apply(f"E{i:06d}", r)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(index) == 20_000
    # a pydantic model and its record bytes alone are over a kilobyte an entry
    assert held / len(index) < 700, f"{held / len(index):.0f} bytes per entry"
    a, b = index.matches(declaration(enterprise_id="4600000000"))[0], index.matches(declaration(enterprise_id="4600000040"))[0]
    assert a.reason is b.reason and a.list_id is b.list_id  # a list's texts are held once


def test_a_redelivered_record_is_skipped_and_a_changed_one_replaces() -> None:
    index = RiskListIndex()
    assert index.apply(b"R1", raw(entry()))
    assert not index.apply(b"R1", bytearray(raw(entry())))  # the same bytes, as another buffer type
    assert index.apply(b"R1", raw(entry(reason="alert, extended")))
    assert index.get("R1") == entry(reason="alert, extended")


def test_two_entries_with_one_value_match_and_leave_independently() -> None:
    index = RiskListIndex([entry("A", list_id="L1"), entry("B", list_id="L2", action="watch")])
    assert [h.entry_id for h in index.matches(declaration())] == ["A", "B"]
    assert index.remove("A") and [h.entry_id for h in index.matches(declaration())] == ["B"]
    assert index.remove("B") and index.matches(declaration()) == [] and index._lookup[RiskListKind.ORIGIN] == {}


def test_the_garbage_collector_does_not_walk_the_entries() -> None:
    import gc

    index = RiskListIndex()
    for i in range(2_000):
        index.apply(f"E{i}", raw(entry(f"E{i}", kind="seller", value=f"S{i % 1500}", valid_until=NOW + DAY)))
    gc.collect()
    tracked = sum(gc.is_tracked(e) for e in index._entries.values())
    tracked += sum(gc.is_tracked(b) for by_value in index._lookup.values() for b in by_value.values())
    tracked += sum(gc.is_tracked(item) for item in index._expiry)
    assert tracked == 0  # each full collection would otherwise visit every entry
    assert len(index.matches(declaration(seller_id="S7"))) == 2
