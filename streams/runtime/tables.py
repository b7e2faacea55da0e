"""Direct access to a Faust table's local store, for the hot path.

Faust's table ``__setitem__`` writes the store and sends the changelog record through
``send_soon``, one message at a time. The handlers instead write the store here and put the
changelog record into the micro-batch's output (``streams.outputs.OutputBatch.set_table``), on the
partition of the input record: where Faust itself would write it and where its recovery reads it
back. Reads go to the plain dict inside Faust's memory store: its ``Store`` wrapper costs about a
microsecond per look-up through the generic ``Mapping`` methods.

With Faust's RocksDB store (one database per partition) a write through the store picks the
database from ``current_event()``: wrong in a micro-batch spanning partitions, absent in a timer.
Writes therefore name their partition. And a database on disk outlives the process, so it must
never hold a write whose changelog record the broker has not acknowledged: after a kill -9 it
would be ahead of the changelog, a redelivered declaration would find its state on disk and
re-emit without re-sending it, and the state would be missing from the changelog for good (and
a timer's write, a scan timeout, would be lost with its instruction). A write is therefore held
in memory (``Unflushed``, read before the database) until its changelog batch is acknowledged,
then written to the partition's database together with the persisted offset, in one RocksDB
write batch, in the order the batches were sent.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Write = tuple[bytes, bytes | None, int]  # (key, value or None: a delete, sequence number)


@dataclass
class _Delivery:
    """One changelog record batch's writes, waiting for the broker's acknowledgement."""

    writes: list[Write]
    offset: int | None = None  # the batch's base offset, once acknowledged
    acknowledged: bool = False


@dataclass
class Unflushed:
    """A RocksDB table's writes not yet acknowledged on its changelog: the latest per key (read
    before the database), and per partition the sent batches in the order they were sent."""

    latest: dict[bytes, tuple[int, bytes | None]] = field(default_factory=dict)
    queues: dict[int, deque[_Delivery]] = field(default_factory=dict)
    numbers: Iterator[int] = field(default_factory=itertools.count)
    view: Mapping[bytes, bytes] | None = None

    def forget(self, writes: Sequence[Write]) -> None:
        latest = self.latest
        for key, _, number in writes:
            entry = latest.get(key)
            if entry is not None and entry[0] == number:  # no later write of the key is waiting
                del latest[key]


def unflushed(table: Any) -> Unflushed:
    """The table's unacknowledged writes, kept on its store object (a store is a ``Mapping``: as a
    dictionary key it would compare equal by walking every item)."""
    store = table.data
    held: Unflushed | None = getattr(store, "_customs_unflushed", None)
    if held is None:
        held = Unflushed()
        store._customs_unflushed = held
    return held


class _ReadThrough(Mapping[bytes, bytes]):
    """A RocksDB table as the handlers read it: its unacknowledged writes first, then the store."""

    __slots__ = ("_latest", "_store")

    def __init__(self, store: Any, latest: dict[bytes, tuple[int, bytes | None]]) -> None:
        self._store = store
        self._latest = latest

    def get(self, key: bytes, default: Any = None) -> Any:
        entry = self._latest.get(key)
        if entry is not None:
            return default if entry[1] is None else entry[1]
        value = self._store.get(key)
        return default if value is None else value

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes | None = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get(key) is not None

    def __iter__(self) -> Iterator[bytes]:
        latest = self._latest
        for key in self._store:
            if key not in latest:
                yield key
        for key, (_, value) in list(latest.items()):
            if value is not None:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)


def contents(table: Any) -> Mapping[bytes, bytes]:
    """A table's key -> value mapping for reads: the plain dict inside Faust's memory store; for
    RocksDB its unacknowledged writes over the store; the store itself for any other store.
    Read-only by convention: write through ``write``."""
    store = table.data
    inner = getattr(store, "data", None)
    if isinstance(inner, dict):
        return inner
    if is_rocksdb(table):
        held = unflushed(table)
        if held.view is None:
            held.view = _ReadThrough(store, held.latest)
        return held.view
    mapping: Mapping[bytes, bytes] = store
    return mapping


def write(table: Any, key: bytes, value: bytes | None, partition: int | None = None) -> int | None:
    """Set (or delete, with None) a key in the table's local store only; the caller sends the
    changelog record (to ``changelog_topic(table)``). ``partition``: the key's changelog partition,
    required by a partitioned on-disk store. Returns, for a RocksDB table, the write's number, to
    hand to ``flush_when_delivered`` with the changelog batch that carries it.

    In the memory store the key object written is the one the dict keeps (an update replaces it),
    so that an index of keys (``streams.expiry``) and the store share one object per key."""
    store = table.data
    inner = getattr(store, "data", None)
    if isinstance(inner, dict):
        inner.pop(key, None)
        if value is not None:
            inner[key] = value
        return None
    if partition is not None and is_rocksdb(table):
        held = unflushed(table)
        number = next(held.numbers)
        held.latest[key] = (number, value)
        return number
    if value is None:
        store.pop(key, None)
    else:
        store[key] = value
    return None


def snapshot(table: Any, key: bytes) -> Any:
    """What ``restore`` needs to undo the writes of ``key`` that follow (``streams.outputs.TableJournal``)."""
    if is_rocksdb(table):
        return unflushed(table).latest.get(key)
    return contents(table).get(key)


def restore(table: Any, key: bytes, taken: Any, partition: int) -> None:
    """Put ``key`` back as ``snapshot`` found it. A RocksDB table gets its unacknowledged write
    back (or none: the database's value shows again); nothing was sent of the writes undone."""
    if is_rocksdb(table):
        latest = unflushed(table).latest
        if taken is None:
            latest.pop(key, None)
        else:
            latest[key] = taken
        return
    write(table, key, taken, partition)


def flush_when_delivered(table: Any, partition: int, writes: list[Write], delivered: Sequence[asyncio.Future]) -> None:
    """Once every future of ``delivered`` (the record batches carrying ``writes`` on the table's
    changelog ``partition``) is acknowledged, and every batch sent before it to that partition
    was flushed, write them to the partition's database with the first batch's base offset as the
    persisted offset (recovery reads from it: the batch's later records are read again, which
    changes nothing). A failed delivery flushes nothing more of the partition (the worker stops)."""
    held = unflushed(table)
    delivery = _Delivery(writes)
    queue = held.queues.setdefault(partition, deque())
    queue.append(delivery)
    left = set(delivered)
    if not left:
        delivery.acknowledged = True
        _drain(table, partition)
        return
    first = delivered[0]

    def done(future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        left.discard(future)
        if not left:
            metadata = first.result()
            delivery.offset = getattr(metadata, "offset", None)
            delivery.acknowledged = True
            _drain(table, partition)

    for future in delivered:
        future.add_done_callback(done)


def flush_acknowledged(table: Any, partition: int, writes: list[Write], offset: int | None = None) -> None:
    """``writes`` acknowledged at ``offset`` (the broker-less test driver's delivery)."""
    held = unflushed(table)
    held.queues.setdefault(partition, deque()).append(_Delivery(writes, offset, acknowledged=True))
    _drain(table, partition)


def _drain(table: Any, partition: int) -> None:
    held = unflushed(table)
    queue = held.queues.get(partition)
    while queue and queue[0].acknowledged:
        delivery = queue.popleft()
        _flush(table, partition, delivery)
        held.forget(delivery.writes)
    if queue is not None and not queue:
        del held.queues[partition]


def _flush(table: Any, partition: int, delivery: _Delivery) -> None:
    """Into the partition's open database; none for a partition revoked meanwhile (its database is
    closed and its persisted offset stays: the next owner reads these records back)."""
    from rocksdict import WriteBatch

    store = table.data
    db = store._dbs.get(partition)
    if db is None:
        return
    batch = WriteBatch(raw_mode=True)
    for key, value, _ in delivery.writes:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
            store._key_index[key] = partition
    offset = delivery.offset
    if offset is not None:
        persisted = db.get(store.offset_key)
        if persisted is None or int(persisted) < offset:
            batch.put(store.offset_key, str(offset).encode())
    db.write(batch)


def drop_unflushed(table: Any, kept: set[int]) -> None:
    """Forget the unacknowledged writes waiting for partitions other than ``kept`` (revoked): their
    deliveries, when they come, find the databases closed; the next owner reads the records back."""
    if not is_rocksdb(table):
        return
    held = unflushed(table)
    for partition in [p for p in held.queues if p not in kept]:
        for delivery in held.queues.pop(partition):
            held.forget(delivery.writes)


def estimated_keys(table: Any, partition: int | None = None) -> int:
    """RocksDB's estimate of the keys in the table's open databases, or in one partition's (0 for
    other stores): read from its memtables and file metadata, no walk."""
    if not is_rocksdb(table):
        return 0
    dbs = table.data._dbs
    chosen = [dbs[partition]] if partition is not None and partition in dbs else [] if partition is not None else list(dbs.values())
    return sum(int(db.property_int_value("rocksdb.estimate-num-keys") or 0) for db in chosen)


def forget_recovered_keys(table: Any) -> None:
    """Drop the memory store's record of which partition each recovered key came from (a dict
    entry per key, as large again as a retained declaration's fingerprint). Faust reads it once,
    when recovery completes, to drop keys of partitions no longer assigned; a table's
    ``on_recover`` callbacks run right after that."""
    recovered = getattr(table.data, "_key_partition", None)
    if isinstance(recovered, dict):
        recovered.clear()


def is_rocksdb(table: Any) -> bool:
    """Whether the table's local store is Faust's RocksDB store (one database per partition)."""
    return type(table.data).__module__ == "faust.stores.rocksdb"


def open_partitions(table: Any, partitions: set[int]) -> None:
    """Open a RocksDB table's databases of ``partitions``, as Faust does for the partitions a
    rebalance assigns (its reads look only in open databases); nothing for other stores."""
    if is_rocksdb(table):
        for partition in partitions:
            table.data._db_for_partition(partition)


def partition_items(table: Any, partition: int, after: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
    """Up to ``limit`` (key, value) pairs of a RocksDB table's partition database, in key order,
    starting after ``after`` (None: from the first): for walking a persisted store a bounded step
    at a time. Faust's own offset record is left out."""
    store = table.data
    db = store._db_for_partition(partition)
    it = db.iter()
    if after is None:
        it.seek_to_first()
    else:
        it.seek(after)
        if it.valid() and it.key() == after:
            it.next()
    out: list[tuple[bytes, bytes]] = []
    while it.valid() and len(out) < limit:
        key = it.key()
        if key != store.offset_key:
            out.append((key, it.value()))
        it.next()
    return out


def changelog_topic(table: Any) -> str:
    """The name of the table's changelog topic (``<app id>-<table name>-changelog``)."""
    name: str = table.changelog_topic.get_topic_name()
    return name


def is_changelog(topic: str) -> bool:
    """Whether ``topic`` is a table's changelog (Faust names them ``...-changelog``); the worker
    consumes every other topic as input."""
    return topic.endswith("-changelog")
