"""Table stores read and written directly, and the worker's status, on a real (never started) app."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from faust.types import TP

from common.settings import Settings
from streams.outputs import OutputBatch
from streams.runtime import status, tables
from streams.runtime.app import faust_app
from streams.runtime.fetchsession import FetchSession

RAW = {"key_type": bytes, "value_type": bytes}


def _app(tmp_path: Path) -> Any:
    return faust_app(Settings(app_id="tables-test", partitions=4, data_dir=tmp_path / "data"))


def test_a_table_write_updates_the_store_and_records_the_changelog(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = _app(tmp_path)
        table = app.Table("state", partitions=4, **RAW)
        out = OutputBatch()
        out.set_table(table, 2, b"k", b"v1")
        assert tables.contents(table)[b"k"] == b"v1" and table[b"k"] == b"v1"
        out.set_table(table, 2, b"k", None)  # a delete
        out.set_table(table, 2, b"gone", None)  # deleting a missing key is fine
        assert b"k" not in tables.contents(table)
        assert list(out.records()) == [
            ("tables-test-state-changelog", 2, b"k", b"v1"),
            ("tables-test-state-changelog", 2, b"k", None),
            ("tables-test-state-changelog", 2, b"gone", None),
        ]

    asyncio.run(scenario())


def test_contents_is_the_memory_store_s_plain_dict(tmp_path: Path) -> None:
    async def scenario() -> None:
        table = _app(tmp_path).Table("state", partitions=4, **RAW)
        assert type(tables.contents(table)) is dict
        assert tables.contents(table) is table.data.data

    asyncio.run(scenario())


def test_contents_falls_back_to_the_store_itself() -> None:
    class OtherStore(dict):  # a store without an inner dict
        pass

    class Table:
        data = OtherStore(a=1)

    assert tables.contents(Table()) is Table.data


def test_changelog_topics_are_recognised(tmp_path: Path) -> None:
    async def scenario() -> str:
        return tables.changelog_topic(_app(tmp_path).Table("state", partitions=4, **RAW))

    name = asyncio.run(scenario())
    assert name == "tables-test-state-changelog"
    assert tables.is_changelog(name) and not tables.is_changelog("customs.declarations")


def test_a_worker_is_ready_once_its_tables_recovered_and_no_rebalance_runs(tmp_path: Path) -> None:
    async def scenario() -> list[bool]:
        app = _app(tmp_path)
        seen = [status.ready(app)]  # tables not recovered yet
        app.tables.recovery.completed.set()
        seen.append(status.ready(app))
        app.rebalancing = True
        seen.append(status.ready(app))
        return seen

    assert asyncio.run(scenario()) == [False, True, False]


def test_input_lag_skips_changelogs_and_partitions_without_a_position(tmp_path: Path) -> None:
    decl0, decl1, decl2 = (TP("customs.declarations", p) for p in range(3))
    changelog = TP("tables-test-state-changelog", 0)

    async def scenario() -> tuple[list[tuple[str, int, int]], set[Any]]:
        app = _app(tmp_path)
        app.assignor.assigned_actives = lambda: {decl0, decl1, decl2, changelog}
        consumer = app.consumer

        def highwater(tp: TP) -> int:
            if tp == decl2:
                raise KeyError(tp)  # no fetch response yet
            return 50

        consumer.highwater = highwater
        consumer._read_offset[decl0] = 39  # the last record delivered
        consumer._read_offset[changelog] = 0
        return sorted(status.input_lag(app)), status.active_partitions(app)

    lag, actives = asyncio.run(scenario())
    assert lag == [("customs.declarations", 0, 10)]
    assert actives == {decl0, decl1, decl2, changelog}


def test_fetches_add_up_every_broker_s_session(tmp_path: Path) -> None:
    async def scenario() -> tuple[tuple[int, int], tuple[int, int]]:
        app = _app(tmp_path)
        before = status.fetches(app)
        one, two = FetchSession(1), FetchSession(2)
        one.full_fetches, one.incremental_fetches, two.full_fetches, two.incremental_fetches = 1, 30, 2, 5
        app.consumer.fetch_sessions.update({1: one, 2: two})
        return before, status.fetches(app)

    assert asyncio.run(scenario()) == ((0, 0), (3, 35))


def _rocksdb_table(tmp_path: Path) -> Any:
    app = _app(tmp_path)
    return app.Table("state", partitions=4, store="rocksdb:state", use_partitioner=True, **RAW)


def test_a_rocksdb_write_goes_to_the_partition_given_without_a_current_event(tmp_path: Path) -> None:
    # In a timer there is no current event, and in a batch it is one record's: Faust's own write
    # would assert, or pick the wrong partition's database.
    async def scenario() -> None:
        table = _rocksdb_table(tmp_path)
        assert tables.is_rocksdb(table) and not tables.is_rocksdb(_app(tmp_path).Table("m", partitions=4, **RAW))
        tables.open_partitions(table, {1, 3})  # as an assignment does: a write reaches only an open database
        out = OutputBatch()
        out.set_table(table, 3, b"k3", b"v3")
        out.set_table(table, 1, b"k1", b"v1")
        store = table.data
        assert tables.contents(table).get(b"k3") == b"v3" and tables.contents(table).get(b"k1") == b"v1"
        assert store._db_for_partition(3).get(b"k3") is None  # not on disk before its changelog record is delivered
        out.set_table(table, 3, b"k2", b"v2")
        out.set_table(table, 3, b"k3", None)
        assert tables.contents(table).get(b"k3") is None and b"k3" not in tables.contents(table)
        assert [r[1:] for r in out.records()] == [(3, b"k3", b"v3"), (3, b"k2", b"v2"), (3, b"k3", None),
                                                  (1, b"k1", b"v1")]  # in order per partition
        for partition, written, writes in out.table_writes():
            tables.flush_acknowledged(written, partition, writes)
        assert store._db_for_partition(3).get(b"k2") == b"v2" and store._db_for_partition(3).get(b"k3") is None
        assert store._db_for_partition(1).get(b"k1") == b"v1" and store._db_for_partition(1).get(b"k2") is None
        assert tables.unflushed(table).latest == {}
        assert b"k1" in tables.contents(table) and tables.contents(table)[b"k2"] == b"v2"

    asyncio.run(scenario())


def test_a_rocksdb_partition_is_walked_in_bounded_steps(tmp_path: Path) -> None:
    async def scenario() -> None:
        table = _rocksdb_table(tmp_path)
        tables.open_partitions(table, {0, 2})
        out = OutputBatch()
        for i in range(5):
            out.set_table(table, 2, b"k%d" % i, b"v%d" % i)
        out.set_table(table, 0, b"other", b"x")
        for partition, written, writes in out.table_writes():
            tables.flush_acknowledged(written, partition, writes)
        table.data.set_persisted_offset(TP("tables-test-state-changelog", 2), 41)  # Faust's own record: left out
        seen: list[tuple[bytes, bytes]] = []
        after = None
        while True:
            step = tables.partition_items(table, 2, after, 2)
            seen += step
            if len(step) < 2:
                break
            after = step[-1][0]
        assert seen == [(b"k%d" % i, b"v%d" % i) for i in range(5)]

    asyncio.run(scenario())


def test_the_memory_store_keeps_the_key_object_last_written(tmp_path: Path) -> None:
    # The expiry index (streams.expiry) holds the key objects the handlers write: the store must
    # hold the same ones, or a retained declaration would cost its key twice.
    async def scenario() -> None:
        table = _app(tmp_path).Table("state", partitions=4, **RAW)
        first, second = b"KEY", b"".join([b"K", b"EY"])
        assert first == second and first is not second
        tables.write(table, first, b"v1", 0)
        tables.write(table, second, b"v2", 0)
        [kept] = tables.contents(table)
        assert kept is second and tables.contents(table)[second] == b"v2"

    asyncio.run(scenario())


def test_a_delivered_changelog_batch_moves_the_rocksdb_store_s_persisted_offset(tmp_path: Path, monkeypatch: Any) -> None:
    # A restart then recovers only what comes after it (Faust does this for its own writes only).
    from collections import namedtuple

    import streams.outputs

    Metadata = namedtuple("Metadata", "offset")
    sent: list[tuple[str, int]] = []

    async def fake_send(app: Any, by_partition: Any) -> list[asyncio.Future]:
        futures = []
        for (topic, partition), _records in by_partition:
            sent.append((topic, partition))
            future = asyncio.get_running_loop().create_future()
            if partition == 2:
                future.set_result(Metadata(41))  # the batch's base offset
            else:
                future.set_exception(RuntimeError("not delivered"))
            futures.append(future)
        return futures

    monkeypatch.setattr(streams.outputs, "send_records", fake_send)

    async def scenario() -> tuple[int | None, int | None]:
        table = _rocksdb_table(tmp_path)
        tables.open_partitions(table, {1, 2})
        out = OutputBatch()
        out.set_table(table, 2, b"k", b"v")
        out.set_table(table, 1, b"j", b"w")
        out.add("customs.instructions", 2, b"k", b"i")
        futures = await out.send(object())
        await asyncio.gather(*futures, return_exceptions=True)
        await asyncio.sleep(0)  # the done callbacks
        changelog = "tables-test-state-changelog"
        store = table.data
        assert store._db_for_partition(2).get(b"k") == b"v"  # delivered: on disk with its offset, in one write
        assert store._db_for_partition(1).get(b"j") is None and tables.contents(table).get(b"j") == b"w"  # not delivered
        return store.persisted_offset(TP(changelog, 2)), store.persisted_offset(TP(changelog, 1))

    assert asyncio.run(scenario()) == (41, None)  # partition 1's batch failed: not moved
    assert len(sent) == 3


def test_rocksdb_writes_reach_the_disk_in_the_order_sent_whatever_the_order_acknowledged(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        table = _rocksdb_table(tmp_path)
        db = table.data._db_for_partition(0)
        first, second = OutputBatch(), OutputBatch()
        first.set_table(table, 0, b"k", b"old")
        first.set_table(table, 0, b"a", b"1")
        second.set_table(table, 0, b"k", b"new")
        acks = [loop.create_future(), loop.create_future()]
        for out, ack in zip((first, second), acks):
            [(partition, written, writes)] = list(out.table_writes())
            tables.flush_when_delivered(written, partition, writes, [ack])
        acks[1].set_result(type("Metadata", (), {"offset": 9})())
        await asyncio.sleep(0)
        assert db.get(b"k") is None and db.get(b"a") is None  # the later batch waits for the earlier one
        acks[0].set_result(type("Metadata", (), {"offset": 7})())
        await asyncio.sleep(0)
        assert db.get(b"k") == b"new" and db.get(b"a") == b"1" and table.data.persisted_offset(TP("tables-test-state-changelog", 0)) == 9
        assert tables.unflushed(table).latest == {}

    asyncio.run(scenario())


def test_an_undone_rocksdb_write_leaves_neither_disk_nor_reads_changed(tmp_path: Path) -> None:
    from streams.outputs import recording

    async def scenario() -> None:
        table = _rocksdb_table(tmp_path)
        tables.open_partitions(table, {1})
        kept = OutputBatch()
        kept.set_table(table, 1, b"k", b"sent")
        with recording() as journal:
            failed = OutputBatch()
            failed.set_table(table, 1, b"k", b"undone")
            failed.set_table(table, 1, b"n", b"undone")
            journal.rollback()
        assert tables.contents(table).get(b"k") == b"sent" and b"n" not in tables.contents(table)
        [(partition, written, writes)] = list(kept.table_writes())
        tables.flush_acknowledged(written, partition, writes, 3)
        assert table.data._db_for_partition(1).get(b"k") == b"sent" and tables.unflushed(table).latest == {}

    asyncio.run(scenario())


def test_unflushed_writes_of_revoked_partitions_are_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        table = _rocksdb_table(tmp_path)
        out = OutputBatch()
        out.set_table(table, 1, b"kept", b"v")
        out.set_table(table, 2, b"revoked", b"v")
        for partition, written, writes in out.table_writes():
            tables.flush_when_delivered(written, partition, writes, [asyncio.get_running_loop().create_future()])
        tables.drop_unflushed(table, {1})
        assert set(tables.unflushed(table).latest) == {b"kept"} and set(tables.unflushed(table).queues) == {1}

    asyncio.run(scenario())
