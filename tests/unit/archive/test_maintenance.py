"""Compaction, retention and vacuum keep the rows and the positions, beside a running sink."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from archive import metrics
from archive import tables as t
from archive.maintenance import maintain, retention_cutoff
from archive.sink import ArchiveSink
from cli.main import main
from clients import topics
from common.settings import Settings
from tests.unit.archive import fakes

OLD = "2012-03-01T10:00:00Z"


def settings_for(tmp_path: Path, **over: float) -> Settings:
    return Settings(archive_dir=tmp_path / "archive", archive_flush_interval_s=0.02, archive_flush_records=7, archive_idle_commit_s=0.2,
                    archive_metrics_port=0, archive_retention_years=10, **over)


def run_until(sink: ArchiveSink, done: Callable[[], bool]) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not done():
        assert time.monotonic() < deadline and thread.is_alive(), "the sink did not get there"
        time.sleep(0.01)  # poll interval of a condition with a deadline
    stop.set()
    thread.join(30)


def files(settings: Settings, name: str) -> int:
    table = t.open_table(settings.archive_dir, name)
    assert table is not None
    return len(table.file_uris())


def test_retention_cutoff() -> None:
    assert retention_cutoff(date(2026, 12, 4), 10) == date(2016, 12, 4)
    assert retention_cutoff(date(2028, 2, 29), 1) == date(2027, 2, 28)


def test_compaction_keeps_rows_and_positions_and_retention_drops_old_days(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, archive_maintenance_interval_s=0)
    broker = fakes.FakeBroker(settings)
    for i in range(60):
        broker.add(topics.DECLARATIONS, f"D{i}", fakes.declaration(f"D{i}", event_time=OLD if i < 5 else fakes.NOW_TEXT))
    sink = ArchiveSink(settings, consumer_factory=broker.consumer)
    run_until(sink, lambda: sink.totals["records"] == 60)
    before = files(settings, t.DECLARATIONS)
    position = t.open_table(settings.archive_dir, t.DECLARATIONS).transaction_version(t.app_id(settings.topic(topics.DECLARATIONS), 0))
    assert before >= 8 and position == 60

    done = maintain(settings.archive_dir, retention_years=10)
    assert done[t.DECLARATIONS]["expired_rows"] == 5 and done[t.DECLARATIONS]["files_compacted"] >= before - 2
    assert files(settings, t.DECLARATIONS) <= 2
    frame = pl.read_delta(str(t.table_path(settings.archive_dir, t.DECLARATIONS)))
    assert sorted(frame["declaration_id"].to_list()) == sorted(f"D{i}" for i in range(5, 60))
    table = t.open_table(settings.archive_dir, t.DECLARATIONS)
    assert table is not None and table.transaction_version(t.app_id(settings.topic(topics.DECLARATIONS), 0)) == 60

    # A restarted sink resumes after compaction exactly where it was.
    broker.add(topics.DECLARATIONS, "D60", fakes.declaration("D60"))
    again = ArchiveSink(settings, consumer_factory=broker.consumer)
    app = t.app_id(settings.topic(topics.DECLARATIONS), 0)
    run_until(again, lambda: all(t.open_table(settings.archive_dir, name).transaction_version(app) == 61  # type: ignore[union-attr]  # the table exists by now
                                 for name in (t.DECLARATIONS, t.DEAD_LETTERS)))
    frame = pl.read_delta(str(t.table_path(settings.archive_dir, t.DECLARATIONS)))
    assert frame.height == 56 and frame["declaration_id"].n_unique() == 56


def test_archive_maintain_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t.ensure_tables(tmp_path / "archive")
    assert main(["archive-maintain", "--archive-dir", str(tmp_path / "archive"), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == set(t.SPECS)
    assert main(["archive-maintain", "--archive-dir", str(tmp_path / "nothing")]) == 2
    assert "no archive" in capsys.readouterr().err


def test_the_sink_maintains_the_archive_while_it_writes(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, archive_maintenance_interval_s=0.05)
    broker = fakes.FakeBroker(settings)
    runs = metrics.MAINTENANCE.labels("ok")._value.get()
    failures = metrics.MAINTENANCE.labels("failed")._value.get()
    sink = ArchiveSink(settings, consumer_factory=broker.consumer)
    produced = [0]

    def keep_writing() -> bool:
        if produced[0] < 400:
            for _ in range(10):
                broker.add(topics.INSTRUCTIONS, f"D{produced[0]}", fakes.instruction(f"D{produced[0]}"))
                produced[0] += 1
            return False
        return sink.totals["records"] == 400 and metrics.MAINTENANCE.labels("ok")._value.get() >= runs + 2

    run_until(sink, keep_writing)
    frame = pl.read_delta(str(t.table_path(settings.archive_dir, t.INSTRUCTIONS)))
    assert frame.height == 400 and frame["instruction_id"].n_unique() == 400
    assert metrics.MAINTENANCE.labels("failed")._value.get() == failures
