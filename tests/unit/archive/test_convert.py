"""Kafka records to archive rows: every topic, bad input as dead letters, rows that fit their schemas."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pytest

from archive import tables as t
from archive.convert import Record, original_bytes, rows_of
from clients import topics
from schemas.deadletters import dead_letter_record
from tests.unit.archive import fakes

NOW = datetime.now(UTC)


def rec(value: dict[str, Any] | bytes | None, key: bytes | None = b"K", topic: str = "customs.x", offset: int = 7) -> Record:
    return Record(topic, 1, offset, key, fakes.encode(value), NOW)


def fits(table: str, rows: list[dict[str, Any]], complete: bool = True) -> pa.Table:
    """Rows carry no column the table lacks (from_pylist would silently drop it) and, from a whole
    record, every column the table has."""
    schema = t.SPECS[table].schema
    for row in rows:
        assert set(row) <= set(schema.names), f"{table}: extra {set(row) - set(schema.names)}"
        assert not complete or set(row) == set(schema.names), f"{table}: missing {set(schema.names) - set(row)}"
    return pa.Table.from_pylist(rows, schema=schema)


GOOD = [
    (topics.DECLARATIONS, fakes.declaration("D1"), t.DECLARATIONS, 1),
    (topics.DECLARATION_BATCHES, fakes.batch("B1", [fakes.declaration("D1"), fakes.declaration("D2", port="HAK-AIR")]), t.DECLARATIONS, 2),
    (topics.CENTRALISED_DECLARATIONS, fakes.centralised("CD1", items=3), t.CENTRALISED_ITEMS, 3),
    (topics.SCANS, fakes.scan("D1"), t.SCANS, 1),
    (topics.INSTRUCTIONS, fakes.instruction("D1"), t.INSTRUCTIONS, 1),
    (topics.INSPECTION_RESULTS, fakes.inspection("D1"), t.INSPECTION_RESULTS, 1),
    (topics.CREDIT_EVENTS, fakes.credit("E1"), t.CREDIT_EVENTS, 1),
    (topics.CREDIT_EVENT_BATCHES, {"batch_id": "CB1", "publisher": "courts", "events": [fakes.credit("E1"), fakes.credit("E2")]},
     t.CREDIT_EVENTS, 2),
    (topics.RISK_LISTS, fakes.risk_entry("RL1"), t.RISK_LISTS, 1),
    (topics.DEAD_LETTERS, fakes.dead_letter(3), t.DEAD_LETTERS, 1),
    (topics.SHADOW_SCORES, fakes.shadow("D1"), t.SHADOW_SCORES, 1),
    (topics.CONSOLE_ACTIONS, fakes.console_action("A1"), t.CONSOLE_ACTIONS, 1),
    (topics.WARNINGS, fakes.warning("D1"), t.WARNINGS, 1),
    (topics.ZERO_TARIFF_REGISTER, fakes.zero_tariff_import("ZT1"), t.ZERO_TARIFF_REGISTER, 1),
    (topics.POSITIONS, fakes.position("P1"), t.POSITIONS, 1),
    (topics.DUTY_FREE_PURCHASES, fakes.duty_free_purchase("DF1", lines=3), t.DUTY_FREE_PURCHASES, 3),
]


@pytest.mark.parametrize("logical,value,table,count", GOOD, ids=[g[0] for g in GOOD])
def test_every_topic_becomes_rows_of_its_table(logical: str, value: dict[str, Any], table: str, count: int) -> None:
    rows = rows_of(logical, rec(value), NOW)
    assert [name for name, _ in rows] == [table] * count
    arrow = fits(table, [r for _, r in rows])
    assert arrow.column("kafka_offset").to_pylist() == [7] * count
    assert arrow.column("item_index").to_pylist() == list(range(count))
    assert arrow.column("day").to_pylist()[0] == NOW.date()


def test_enums_and_times_are_plain_values_in_arrow() -> None:
    row = fits(t.INSTRUCTIONS, [r for _, r in rows_of(topics.INSTRUCTIONS, rec(fakes.instruction("D1", "scan", "inspect")), NOW)])
    first = row.to_pylist()[0]
    assert first["action"] == "inspect" and first["stage"] == "scan" and first["credit_class"] == "general"
    assert first["thresholds"] == [0.55, 0.8] and first["risk_hits"] == ["RL/1"]
    assert first["event_time"] == fakes.NOW


def test_batch_items_keep_their_batch_and_centralised_items_their_declaration_id() -> None:
    rows = [r for _, r in rows_of(topics.DECLARATION_BATCHES, rec(fakes.batch("B1", [fakes.declaration("D1")])), NOW)]
    assert rows[0]["source"] == "batch" and rows[0]["batch_id"] == "B1" and rows[0]["gateway"] == "GW1"
    items = [r for _, r in rows_of(topics.CENTRALISED_DECLARATIONS, rec(fakes.centralised("CD1", items=2)), NOW)]
    assert [(r["declaration_id"], r["item_no"], r["items"]) for r in items] == [("CD1-0001", 1, 2), ("CD1-0002", 2, 2)]
    assert items[1]["declared_value"] == 20.0 and items[1]["port"] == "HAK-SEA"


@pytest.mark.parametrize("logical", list(t.PRIMARY_TABLE))
def test_garbage_on_any_topic_is_one_dead_letter_with_the_original_bytes(logical: str) -> None:
    raw = b'{"not": "a record", \xff'
    rows = rows_of(logical, rec(raw, topic="customs.t"), NOW)
    assert [name for name, _ in rows] == [t.DEAD_LETTERS]
    row = rows[0][1]
    fits(t.DEAD_LETTERS, [row])
    assert original_bytes(row) == raw and row["origin"] == "archive"
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == ("customs.t", 1, 7)
    # The same shape as the worker's dead letters.
    _, payload = dead_letter_record("customs.t", 1, 7, b"K", raw, ValueError("x"))
    worker = orjson.loads(payload)
    assert {row["key_b64"], row["value_b64"], row["value_sha256"]} == {worker["key_b64"], worker["value_b64"], worker["value_sha256"]}


def test_a_dead_letter_is_filed_under_its_records_day_unless_that_clock_is_implausible() -> None:
    archived = datetime(2026, 12, 6, 0, 0, 5, tzinfo=UTC)  # archived just after midnight
    published = datetime(2026, 12, 5, 23, 59, 58, tzinfo=UTC)
    row = rows_of(topics.DECLARATIONS, Record("customs.t", 0, 1, b"K", b"{", published), archived)[0][1]
    assert (row["day"], row["received_at"]) == (published.date(), published)
    hostile = rows_of(topics.DECLARATIONS, Record("customs.t", 0, 2, b"K", b"{", datetime(1970, 1, 2, tzinfo=UTC)), archived)[0][1]
    assert hostile["received_at"] > archived and hostile["day"] == hostile["received_at"].date()  # the sink's clock
    untimed = rows_of(topics.DECLARATIONS, Record("customs.t", 0, 3, b"K", b"{", None), archived)[0][1]
    assert untimed["received_at"] > archived


def test_a_batch_keeps_its_good_items_and_dead_letters_each_bad_one() -> None:
    bad = fakes.declaration("D2", hs_code="12")
    raw = orjson.dumps(fakes.batch("B1", [fakes.declaration("D1"), bad, fakes.declaration("D3")]))
    rows = rows_of(topics.DECLARATION_BATCHES, rec(raw), NOW)
    assert [(name, r["item_index"]) for name, r in rows] == [(t.DECLARATIONS, 0), (t.DEAD_LETTERS, 1), (t.DECLARATIONS, 2)]
    letter = rows[1][1]
    assert letter["reason"] == "schema-violation" and orjson.loads(original_bytes(letter) or b"") == bad
    assert rows[2][1]["batch_id"] == "B1"


def test_a_credit_batch_keeps_its_good_events_and_dead_letters_each_bad_one() -> None:
    bad = {**fakes.credit("E2"), "event_type": "credit-class-changed", "credit_class": None}
    bad.pop("credit_class")
    raw = orjson.dumps({"batch_id": "CB1", "publisher": "courts", "events": [fakes.credit("E1"), bad, fakes.credit("E3")]})
    rows = rows_of(topics.CREDIT_EVENT_BATCHES, rec(raw), NOW)
    assert [(name, r["item_index"]) for name, r in rows] == [(t.CREDIT_EVENTS, 0), (t.DEAD_LETTERS, 1), (t.CREDIT_EVENTS, 2)]
    assert orjson.loads(original_bytes(rows[1][1]) or b"") == bad
    fits(t.CREDIT_EVENTS, [rows[0][1], rows[2][1]])


def test_tombstones_missing_values_and_duplicate_keys() -> None:
    (name, row), = rows_of(topics.DECLARATIONS, rec(None), NOW)
    assert name == t.DEAD_LETTERS and row["reason"] == "missing-value" and row["value_b64"] is None
    (name, row), = rows_of(topics.RISK_LISTS, rec(None, key=b"RL9"), NOW)
    assert name == t.RISK_LISTS and row["retracted"] and row["entry_id"] == "RL9" and row["day"] == NOW.date()
    fits(t.RISK_LISTS, [row], complete=False)
    (name, row), = rows_of(topics.RISK_LISTS, rec(None, key=b"\xff"), NOW)
    assert name == t.DEAD_LETTERS and row["reason"] == "invalid-key"
    dup = b'{"scan_id": "S1", "scan_id": "S2",' + orjson.dumps(fakes.scan("D1"))[1:].replace(b'"scan_id":"S-D1",', b"", 1)
    (name, row), = rows_of(topics.SCANS, rec(dup), NOW)
    assert name == t.DEAD_LETTERS and row["reason"] == "duplicate-key"


def test_worker_dead_letters_keep_their_source() -> None:
    (_, row), = rows_of(topics.DEAD_LETTERS, rec(fakes.dead_letter(42)), NOW)
    assert row["origin"] == "worker" and row["source_offset"] == 42 and base64.b64decode(row["value_b64"]) == b"x"


def test_warnings_keep_their_evidence_and_a_bad_one_is_a_dead_letter() -> None:
    (name, row), = rows_of(topics.WARNINGS, rec(fakes.warning("D1")), NOW)
    assert name == t.WARNINGS and list(row["evidence"]) == ["claimed ratio 2.00", "history 0.40"] and row["port"] == "HAK-SEA"
    assert fits(t.WARNINGS, [row]).column("rule").to_pylist() == ["value-added-implausible"]
    (name, row), = rows_of(topics.WARNINGS, rec({**fakes.warning("D2"), "severity": "urgent"}), NOW)
    assert name == t.DEAD_LETTERS and row["reason"] == "schema-violation" and "severity" in row["error"]


def test_processing_values_are_archived_with_the_declaration() -> None:
    value = fakes.declaration("D1", scenario="processing-value-added", imported_material_value=8.0, value_added=2.0)
    (name, row), = rows_of(topics.DECLARATIONS, rec(value), NOW)
    assert name == t.DECLARATIONS and (row["imported_material_value"], row["value_added"]) == (8.0, 2.0)
    fits(t.DECLARATIONS, [row])


def test_the_zero_tariff_register_keeps_identifiers_and_removals() -> None:
    (name, row), = rows_of(topics.ZERO_TARIFF_REGISTER, rec(fakes.zero_tariff_import("ZT1", status="released")), NOW)
    arrow = fits(t.ZERO_TARIFF_REGISTER, [row]).to_pylist()[0]
    assert name == t.ZERO_TARIFF_REGISTER and arrow["status"] == "released" and arrow["removed"] is False
    assert arrow["identifiers"] == ["vin:LSVAU2180N2183294", "vin:LFV3A23C0J3000001"] and arrow["import_declaration_id"] == "IMP-ZT1"
    (name, row), = rows_of(topics.ZERO_TARIFF_REGISTER, rec(None, key=b"ZT1"), NOW)
    assert name == t.ZERO_TARIFF_REGISTER and row["removed"] and row["import_id"] == "ZT1" and row["day"] == NOW.date()
    fits(t.ZERO_TARIFF_REGISTER, [row], complete=False)
    (name, row), = rows_of(topics.ZERO_TARIFF_REGISTER, rec(None, key=b""), NOW)
    assert name == t.DEAD_LETTERS and row["reason"] == "invalid-key"
    bad = {**fakes.zero_tariff_import("ZT2"), "identifiers": [{"kind": "vin", "value": "X1"}] * 2}
    (name, row), = rows_of(topics.ZERO_TARIFF_REGISTER, rec(bad), NOW)
    assert name == t.DEAD_LETTERS and row["origin"] == "archive"


def test_positions_keep_the_port_of_a_passage_and_the_fix_of_a_position() -> None:
    (_, passage), = rows_of(topics.POSITIONS, rec(fakes.position("P1")), NOW)
    fix = {**fakes.position("P2", event_type="position", port=None), "latitude": 20.02, "longitude": 110.35}
    (_, position), = rows_of(topics.POSITIONS, rec(fix), NOW)
    arrow = fits(t.POSITIONS, [passage, position]).to_pylist()
    assert [(r["event_type"], r["port"], r["latitude"]) for r in arrow] == [("port-passage", "HAK-SEA", None), ("position", None, 20.02)]
    (name, row), = rows_of(topics.POSITIONS, rec(fakes.position("P3", event_type="position", port=None)), NOW)
    assert name == t.DEAD_LETTERS and "latitude" in row["error"]


def test_a_duty_free_purchase_is_one_row_per_goods_line_with_its_header() -> None:
    rows = [r for _, r in rows_of(topics.DUTY_FREE_PURCHASES, rec(fakes.duty_free_purchase("DF1", lines=2)), NOW)]
    arrow = fits(t.DUTY_FREE_PURCHASES, rows).to_pylist()
    assert [(r["goods_code"], r["quantity"], r["item_index"]) for r in arrow] == [("G1", 1, 0), ("G2", 2, 1)]
    assert {(r["purchase_id"], r["shopper_token"], r["payer_token"], r["items"], r["total_cny"]) for r in arrow} == {
        ("DF1", "SH1", "PAY1", 2, 300.0)}
    assert {(r["identity_token"], r["identity_method"], r["identity_matched"], r["category"]) for r in arrow} == {
        ("IC1", "face", True, "cosmetics")}
    wrong_total = {**fakes.duty_free_purchase("DF2"), "total_cny": 9999.0}
    (name, row), = rows_of(topics.DUTY_FREE_PURCHASES, rec(wrong_total), NOW)
    assert name == t.DEAD_LETTERS and "total_cny" in row["error"]
