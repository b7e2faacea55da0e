"""A declaration's history narrowed by a day/port hint, its fallback to the full scan, the tables kept
open between queries, and archives written before inspection results had a note."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from archive import tables as t
from archive.queries import Archive
from clients import topics
from tests.unit.archive import fakes

TODAY = fakes.NOW.date()
EARLIER = fakes.NOW - timedelta(days=3)
EARLIER_TEXT = EARLIER.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """D1: revision 1 three days ago, revision 2 today. D2: one revision today at HAK-SEA, inspected
    with a note; a stray scan of D2 filed under HAK-AIR (outside any HAK-SEA hint)."""
    directory = tmp_path_factory.mktemp("archive")
    settings = fakes.archive_settings(directory)
    b = fakes.FakeBroker(settings)
    b.add(topics.DECLARATIONS, "D1", fakes.declaration("D1", event_time=EARLIER_TEXT))
    b.add(topics.INSTRUCTIONS, "D1", fakes.instruction("D1", event_time=EARLIER_TEXT, decided_at=EARLIER_TEXT))
    b.add(topics.DECLARATIONS, "D1", fakes.declaration("D1", revision=2))
    b.add(topics.INSTRUCTIONS, "D1", fakes.instruction("D1", revision=2))
    b.add(topics.DECLARATIONS, "D2", fakes.declaration("D2"))
    b.add(topics.INSTRUCTIONS, "D2", fakes.instruction("D2", action="inspect"))
    b.add(topics.INSPECTION_RESULTS, "D2", {**fakes.inspection("D2"), "instruction_id": "D2:1:declaration",
                                            "note": "in the spare tyre", "recorded_by": "officer.hak"})
    b.add(topics.SCANS, "D2", {**fakes.scan("D2"), "port": "HAK-AIR", "scan_id": "S-STRAY"})
    fakes.archive_all(settings, b, records=8)
    return directory


def _records(doc: dict[str, Any]) -> dict[str, list[Any]]:
    return {key: doc[key] for key in ("declarations", "centralised_items", "instructions", "scans", "inspection_results")}


def test_a_right_hint_reads_only_the_hinted_port_from_the_day_before_on(archive_dir: Path) -> None:
    archive = Archive(archive_dir)
    hinted = archive.history("D2", TODAY, "HAK-SEA")
    assert hinted["scanned"] == "hinted"
    assert [d["revision"] for d in hinted["declarations"]] == [1]
    assert [i["instruction_id"] for i in hinted["instructions"]] == ["D2:1:declaration"]
    assert hinted["scans"] == []  # filed under another port: outside the hinted partitions
    assert [s["scan_id"] for s in archive.history("D2")["scans"]] == ["S-STRAY"]


def test_the_hinted_history_carries_the_note_and_who_recorded_it(archive_dir: Path) -> None:
    result = Archive(archive_dir).history("D2", TODAY, "HAK-SEA")["inspection_results"][0]
    assert (result["note"], result["recorded_by"]) == ("in the spare tyre", "officer.hak")


@pytest.mark.parametrize("day, port", [
    (TODAY + timedelta(days=5), "HAK-SEA"),  # a day after every record
    (TODAY, "HAK-AIR"),  # another port
    (TODAY + timedelta(days=5), None),
])
def test_a_wrong_hint_falls_back_to_the_full_scan_and_hides_nothing(archive_dir: Path, day: date, port: str | None) -> None:
    archive = Archive(archive_dir)
    full = archive.history("D2")
    hinted = archive.history("D2", day, port)
    assert (full["scanned"], hinted["scanned"]) == ("full", "full-after-hint")
    assert _records(hinted) == _records(full) and hinted["declarations"]


def test_a_hint_from_a_later_revision_still_finds_the_first(archive_dir: Path) -> None:
    doc = Archive(archive_dir).history("D1", TODAY, "HAK-SEA")  # revision 1 is three days older
    assert doc["scanned"] == "full-after-hint"
    assert [d["revision"] for d in doc["declarations"]] == [1, 2]
    assert [i["instruction_id"] for i in doc["instructions"]] == ["D1:1:declaration", "D1:2:declaration"]
    assert Archive(archive_dir).history("D1", EARLIER.date(), "HAK-SEA")["scanned"] == "hinted"


def _append_result(directory: Path, did: str, offset: int) -> None:
    row = {"day": TODAY, "instruction_id": f"{did}:1:declaration", "declaration_id": did, "revision": 1, "port": "HAK-SEA",
           "station_id": "ST1", "found": False, "duty_recovered": 0.0, "inspected_at": fakes.NOW, "schema_version": 1,
           "kafka_topic": "x", "kafka_partition": 0, "kafka_offset": offset, "item_index": 0}
    spec = t.SPECS[t.INSPECTION_RESULTS]
    write_deltalake(str(directory / t.INSPECTION_RESULTS), pa.Table.from_pylist([row], schema=spec.schema),
                    partition_by=list(spec.partition_by), mode="append")


def test_the_tables_stay_open_until_their_refresh_interval(tmp_path: Path) -> None:
    t.ensure_tables(tmp_path)
    _append_result(tmp_path, "D7", 1)
    kept, fresh = Archive(tmp_path, refresh_s=3600), Archive(tmp_path, refresh_s=0)
    opened = kept.table(t.INSPECTION_RESULTS)
    assert len(kept.history("D7")["inspection_results"]) == len(fresh.history("D7")["inspection_results"]) == 1
    assert kept.table(t.INSPECTION_RESULTS) is opened and fresh.table(t.INSPECTION_RESULTS) is fresh.table(t.INSPECTION_RESULTS)
    _append_result(tmp_path, "D8", 2)
    assert kept.history("D8")["inspection_results"] == []  # held at its version
    assert [r["declaration_id"] for r in fresh.history("D8")["inspection_results"]] == ["D8"]
    assert kept.table(t.INSPECTION_RESULTS) is opened


OLD_COLUMNS = ("note", "recorded_by")


def test_an_archive_written_before_the_note_reads_and_takes_new_results(tmp_path: Path) -> None:
    spec = t.SPECS[t.INSPECTION_RESULTS]
    old = pa.schema([f for f in spec.schema if f.name not in OLD_COLUMNS])
    DeltaTable.create(str(tmp_path / t.INSPECTION_RESULTS), schema=old, partition_by=list(spec.partition_by))
    row = {"day": TODAY, "instruction_id": "D3:1:scan", "declaration_id": "D3", "revision": 1, "port": "HAK-SEA",
           "station_id": "ST1", "found": True, "category": "cigarettes", "duty_recovered": 120.0, "inspected_at": fakes.NOW,
           "schema_version": 1, "kafka_topic": "x", "kafka_partition": 0, "kafka_offset": 0, "item_index": 0}
    write_deltalake(str(tmp_path / t.INSPECTION_RESULTS), pa.Table.from_pylist([row], schema=old),
                    partition_by=list(spec.partition_by), mode="append")
    # Read as it is, before any sink of this release has run on it.
    before = Archive(tmp_path)
    assert [(r["found"], r["note"], r["recorded_by"]) for r in before.history("D3")["inspection_results"]] == [(True, None, None)]
    _, results = before.labelling(TODAY, TODAY)
    assert results.height == 0 and set(OLD_COLUMNS) <= set(results.columns)
    # The sink of this release adds the columns and archives a result with a note beside the old row.
    settings = fakes.archive_settings(tmp_path)
    b = fakes.FakeBroker(settings)
    b.add(topics.INSPECTION_RESULTS, "D4", {**fakes.inspection("D4"), "note": "false floor", "recorded_by": "officer.hak"})
    fakes.archive_all(settings, b, records=1)
    assert set(OLD_COLUMNS) <= {f.name for f in DeltaTable(str(tmp_path / t.INSPECTION_RESULTS)).schema().fields}
    after = Archive(tmp_path)
    assert [(r["note"], r["recorded_by"]) for r in after.history("D4")["inspection_results"]] == [("false floor", "officer.hak")]
    assert [r["note"] for r in after.history("D3")["inspection_results"]] == [None]
    assert isinstance(after.history("D4")["inspection_results"][0]["inspected_at"], str)
    assert datetime.fromisoformat(after.history("D3")["inspection_results"][0]["inspected_at"].replace("Z", "+00:00"))


def test_the_sink_adds_the_new_columns_to_an_older_table_when_it_starts(tmp_path: Path) -> None:
    spec = t.SPECS[t.INSPECTION_RESULTS]
    old = pa.schema([f for f in spec.schema if f.name not in OLD_COLUMNS])
    DeltaTable.create(str(tmp_path / t.INSPECTION_RESULTS), schema=old, partition_by=list(spec.partition_by))
    tables = t.ensure_tables(tmp_path)  # what the sink does on start, before it writes anything
    assert set(OLD_COLUMNS) <= {f.name for f in tables[t.INSPECTION_RESULTS].schema().fields}
    assert set(OLD_COLUMNS) <= {f.name for f in DeltaTable(str(tmp_path / t.INSPECTION_RESULTS)).schema().fields}
    t.ensure_tables(tmp_path)  # a second start (or a second sink) adds nothing and raises nothing


def test_locate_finds_the_day_of_the_first_revision_and_the_port(archive_dir: Path) -> None:
    archive = Archive(archive_dir)
    assert archive.locate("D1") == (EARLIER.date(), "HAK-SEA")  # revision 2 is today: the earliest day counts
    assert archive.locate("D2") == (TODAY, "HAK-SEA")
    assert archive.locate("D-NOT-ARCHIVED") is None
    day, port = archive.locate("D1")  # type: ignore[misc]
    located = archive.history("D1", day, port)
    assert located["scanned"] == "hinted" and _records(located) == _records(archive.history("D1"))


def test_the_console_hints_a_typed_id_with_where_the_archive_files_it(archive_dir: Path) -> None:
    from console.app import located

    assert located(Archive(archive_dir), "D1") == (EARLIER.date(), "HAK-SEA")
    assert located(Archive(archive_dir), "D-NOT-ARCHIVED") == (None, None)

    class Unreadable:
        def locate(self, declaration_id: str) -> None:
            raise OSError("the object store is down")

    assert located(Unreadable(), "D1") == (None, None)  # the history read itself then says what is wrong


def test_the_console_opens_the_history_tables_before_the_first_page(archive_dir: Path) -> None:
    from archive.queries import HISTORY
    from console.app import _open_tables

    archive = Archive(archive_dir, refresh_s=3600)
    _open_tables(archive)
    present = {table for table, _, _ in HISTORY.values() if (archive_dir / table / "_delta_log").exists()}
    assert present and present <= set(archive.tables._held)  # opened once, served as held to the first page
