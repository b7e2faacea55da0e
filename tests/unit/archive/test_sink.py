"""The sink's exactly-once bookkeeping with a fake consumer and real Delta tables on disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

import archive.sink as sink_module
from archive import metrics
from archive import tables as t
from archive.sink import ArchiveSink
from clients import topics
from common.settings import Settings
from tests.unit.archive import fakes

DEADLINE_S = 20.0


class Crash(BaseException):
    """Stands for SIGKILL: nothing in the sink catches it, no flush runs after it."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(archive_dir=tmp_path / "archive", archive_flush_interval_s=0.05, archive_idle_commit_s=0.3,
                    archive_metrics_port=0, archive_maintenance_interval_s=0, partitions=2)


def rows(settings: Settings, table: str) -> pl.DataFrame:
    return pl.read_delta(str(t.table_path(settings.archive_dir, table)))


def version(settings: Settings, table: str, logical: str, partition: int = 0) -> int | None:
    dt = t.open_table(settings.archive_dir, table)
    return dt.transaction_version(t.app_id(settings.topic(logical), partition)) if dt is not None else None


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # poll interval of a condition with a deadline


class Running:
    def __init__(self, sink: ArchiveSink) -> None:
        self.sink = sink
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.sink.run(self.stop)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def until(self, condition: Callable[[], bool], what: str) -> None:
        wait_for(lambda: condition() or self.error is not None, what)
        assert self.error is None, self.error

    def close(self) -> None:
        self.stop.set()
        self.thread.join(DEADLINE_S)
        assert self.error is None, self.error


@pytest.fixture
def running() -> Iterator[Callable[[ArchiveSink], Running]]:
    started: list[Running] = []

    def start(sink: ArchiveSink) -> Running:
        started.append(Running(sink))
        return started[-1]

    yield start
    for r in started:
        r.stop.set()
        r.thread.join(DEADLINE_S)


def test_every_record_once_with_its_position_in_the_table(settings: Settings, running: Callable[[ArchiveSink], Running]) -> None:
    broker = fakes.FakeBroker(settings)
    for i in range(30):
        broker.add(topics.DECLARATIONS, f"D{i}", fakes.declaration(f"D{i}"), partition=i % 2)
    broker.add(topics.DECLARATION_BATCHES, "B1", fakes.batch("B1", [fakes.declaration(f"B1-{j}") for j in range(5)]))
    broker.add(topics.DECLARATIONS, "X", b"garbage", partition=1)
    broker.add(topics.INSTRUCTIONS, "D1", fakes.instruction("D1"))
    broker.add(topics.RISK_LISTS, "RL1", None)
    rejected = metrics.REJECTED.labels(topics.DECLARATIONS, "invalid-json")._value.get()
    sink = ArchiveSink(settings, consumer_factory=broker.consumer)
    run = running(sink)
    run.until(lambda: sink.totals["records"] == 34, "34 records archived")
    run.close()
    assert rows(settings, t.DECLARATIONS).height == 35
    assert rows(settings, t.DEAD_LETTERS)["reason"].to_list() == ["invalid-json"]
    assert rows(settings, t.RISK_LISTS)["retracted"].to_list() == [True]
    assert version(settings, t.DECLARATIONS, topics.DECLARATIONS, 0) == 15
    assert version(settings, t.DECLARATIONS, topics.DECLARATIONS, 1) == 16
    assert version(settings, t.DEAD_LETTERS, topics.DECLARATIONS, 1) == 16
    assert metrics.REJECTED.labels(topics.DECLARATIONS, "invalid-json")._value.get() == rejected + 1
    # A restarted sink resumes at the positions in the tables and reads nothing twice.
    again = ArchiveSink(settings, consumer_factory=broker.consumer)
    run = running(again)
    broker.add(topics.DECLARATIONS, "D99", fakes.declaration("D99"), partition=0)
    run.until(lambda: version(settings, t.DECLARATIONS, topics.DECLARATIONS, 0) == 16
              and version(settings, t.DEAD_LETTERS, topics.DECLARATIONS, 0) == 16, "the new record archived")
    run.close()
    assert rows(settings, t.DECLARATIONS)["declaration_id"].is_duplicated().sum() == 0
    assert rows(settings, t.DECLARATIONS).height == 36


def test_a_crash_between_two_tables_commits_neither_loses_nor_repeats(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                                       running: Callable[[ArchiveSink], Running]) -> None:
    broker = fakes.FakeBroker(settings)
    broker.add(topics.DECLARATIONS, "D0", fakes.declaration("D0"))
    broker.add(topics.DECLARATIONS, "X1", b"garbage 1")
    broker.add(topics.DECLARATIONS, "D2", fakes.declaration("D2"))
    real_write = sink_module.write_deltalake

    def crash_at_dead_letters(table: DeltaTable, data: Any, **kw: Any) -> None:
        if Path(table.table_uri.removeprefix("file://")).name == t.DEAD_LETTERS:
            raise Crash("killed between the declarations and the dead_letters commits")
        real_write(table, data, **kw)

    monkeypatch.setattr(sink_module, "write_deltalake", crash_at_dead_letters)
    first = ArchiveSink(settings, consumer_factory=broker.consumer)
    with pytest.raises(Crash):
        first.run(threading.Event())
    assert version(settings, t.DECLARATIONS, topics.DECLARATIONS) == 3
    assert version(settings, t.DEAD_LETTERS, topics.DECLARATIONS) is None
    monkeypatch.setattr(sink_module, "write_deltalake", real_write)

    broker.add(topics.DECLARATIONS, "X3", b"garbage 2")
    broker.add(topics.DECLARATIONS, "D4", fakes.declaration("D4"))
    consumers: list[fakes.FakeConsumer] = []

    def factory(conf: dict[str, Any]) -> fakes.FakeConsumer:
        consumers.append(broker.consumer(conf))
        return consumers[-1]

    second = ArchiveSink(settings, consumer_factory=factory)
    run = running(second)
    run.until(lambda: version(settings, t.DEAD_LETTERS, topics.DECLARATIONS) == 5
              and version(settings, t.DECLARATIONS, topics.DECLARATIONS) == 5, "both tables at offset 5")
    run.close()
    # dead_letters held no position, so the partition was re-read from the beginning, and the
    # declarations table skipped what it had.
    assert consumers[0].assigned_offsets[0][(settings.topic(topics.DECLARATIONS), 0)] == 0
    assert sorted(rows(settings, t.DECLARATIONS)["declaration_id"].to_list()) == ["D0", "D2", "D4"]
    assert sorted(rows(settings, t.DEAD_LETTERS)["source_offset"].to_list()) == [1, 3]


def test_resume_from_the_lower_of_two_tables_positions(settings: Settings, running: Callable[[ArchiveSink], Running]) -> None:
    broker = fakes.FakeBroker(settings)
    for i in range(4):
        broker.add(topics.DECLARATIONS, f"D{i}", fakes.declaration(f"D{i}"))
    sink = ArchiveSink(settings, consumer_factory=broker.consumer)
    run = running(sink)
    # dead_letters gets no rows, yet its position follows within archive_idle_commit_s.
    run.until(lambda: version(settings, t.DEAD_LETTERS, topics.DECLARATIONS) == 4, "the idle table's position")
    run.close()
    tables = t.ensure_tables(settings.archive_dir)
    write_deltalake(tables[t.DECLARATIONS], t.SPECS[t.DECLARATIONS].schema.empty_table(), mode="append",
                    commit_properties=CommitProperties(app_transactions=[Transaction(t.app_id(settings.topic(topics.DECLARATIONS), 0), 9)]))
    consumers: list[fakes.FakeConsumer] = []
    again = ArchiveSink(settings, consumer_factory=lambda conf: consumers.append(broker.consumer(conf)) or consumers[-1])
    run = running(again)
    run.until(lambda: bool(consumers and consumers[0].assigned_offsets), "the assignment")
    run.close()
    assert consumers[0].assigned_offsets[0][(settings.topic(topics.DECLARATIONS), 0)] == 4


def test_a_failed_write_drops_the_buffer_and_rereads_from_the_tables(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                                      running: Callable[[ArchiveSink], Running]) -> None:
    broker = fakes.FakeBroker(settings)
    for i in range(10):
        broker.add(topics.INSTRUCTIONS, f"D{i}", fakes.instruction(f"D{i}"))
        broker.add(topics.DECLARATIONS, f"D{i}", fakes.declaration(f"D{i}"))
    real_write = sink_module.write_deltalake
    failed: list[str] = []

    def fail_once(table: DeltaTable, data: Any, **kw: Any) -> None:
        if Path(table.table_uri.removeprefix("file://")).name == t.INSTRUCTIONS and not failed:
            failed.append("instructions")
            raise OSError(28, "No space left on device")
        real_write(table, data, **kw)

    monkeypatch.setattr(sink_module, "write_deltalake", fail_once)
    monkeypatch.setattr(sink_module, "MAX_BACKOFF_S", 0.05)
    before = metrics.FAILURES.labels("write")._value.get()
    sink = ArchiveSink(settings, consumer_factory=broker.consumer)
    run = running(sink)
    run.until(lambda: version(settings, t.INSTRUCTIONS, topics.INSTRUCTIONS) == 10, "the instructions after the failure")
    run.close()
    assert failed and metrics.FAILURES.labels("write")._value.get() == before + 1
    assert rows(settings, t.INSTRUCTIONS)["instruction_id"].n_unique() == rows(settings, t.INSTRUCTIONS).height == 10
    assert rows(settings, t.DECLARATIONS).height == 10


def test_group_offsets_are_committed_as_a_hint(settings: Settings, running: Callable[[ArchiveSink], Running]) -> None:
    broker = fakes.FakeBroker(settings)
    for i in range(3):
        broker.add(topics.SCANS, f"D{i}", fakes.scan(f"D{i}"))
    consumers: list[fakes.FakeConsumer] = []
    sink = ArchiveSink(settings, consumer_factory=lambda conf: consumers.append(broker.consumer(conf)) or consumers[-1])
    run = running(sink)
    run.until(lambda: version(settings, t.DEAD_LETTERS, topics.SCANS) == 3, "both tables' positions")
    run.close()
    hinted = {(tp.topic, tp.partition): tp.offset for commit in consumers[0].commits for tp in commit}
    assert hinted[(settings.topic(topics.SCANS), 0)] == 3
    assert consumers[0].conf["enable.auto.commit"] is False and consumers[0].conf["group.id"] == "customs-risk-archive"


def test_a_stale_writer_cannot_commit_a_position_another_writer_moved(tmp_path: Path) -> None:
    """The guard against a sink that lost its partitions but still flushes: delta-rs refuses a commit
    whose application transaction another commit changed since the writer's snapshot."""
    path = str(tmp_path / "t")
    data = pa.table({"x": [1]})
    write_deltalake(path, data, commit_properties=CommitProperties(app_transactions=[Transaction("topic:0", 1)]))
    stale = DeltaTable(path)
    write_deltalake(path, data, mode="append", commit_properties=CommitProperties(app_transactions=[Transaction("topic:0", 2)]))
    with pytest.raises(CommitFailedError):
        write_deltalake(stale, data, mode="append", commit_properties=CommitProperties(app_transactions=[Transaction("topic:0", 3)]))
    assert DeltaTable(path).transaction_version("topic:0") == 2


def test_a_recreated_topic_is_refused_not_skipped(settings: Settings, running: Callable[[ArchiveSink], Running]) -> None:
    broker = fakes.FakeBroker(settings)
    for i in range(6):
        broker.add(topics.DECLARATIONS, f"D{i}", fakes.declaration(f"D{i}"))
    broker.add(topics.INSTRUCTIONS, "D0", fakes.instruction("D0"))
    sink = ArchiveSink(settings, consumer_factory=broker.consumer)
    run = running(sink)
    run.until(lambda: version(settings, t.DEAD_LETTERS, topics.DECLARATIONS) == 6, "the first topic archived")
    run.close()
    # The declarations topic is deleted and recreated: its offsets restart at 0, under the same name.
    topic = settings.topic(topics.DECLARATIONS)
    broker.logs[(topic, 0)] = []
    for i in range(2):
        broker.add(topics.DECLARATIONS, f"N{i}", fakes.declaration(f"N{i}"))
    again = running(ArchiveSink(settings, consumer_factory=broker.consumer))
    wait_for(lambda: again.error is not None, "the sink to refuse the recreated topic")
    assert isinstance(again.error, sink_module.TopicRecreated)
    message = str(again.error)
    assert f"{topic}[0] archived up to offset 6 but ends at 2" in message
    assert "recreated" in message and "ARCHIVE_LOCATION" in message and settings.topic(topics.INSTRUCTIONS) not in message
    # Nothing of the new topic was archived, nothing skipped silently: the positions are as they were.
    assert version(settings, t.DECLARATIONS, topics.DECLARATIONS) == 6
    assert sorted(rows(settings, t.DECLARATIONS)["declaration_id"].to_list()) == [f"D{i}" for i in range(6)]
