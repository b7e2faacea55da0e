"""Direct access to a Faust table's local store, for the hot path.

Faust's table ``__setitem__`` writes the store and sends the changelog record through
``send_soon``, one message at a time. The handlers instead write the store here and put the
changelog record into the micro-batch's output (``streams.outputs.OutputBatch.set_table``), on the
partition of the input record: where Faust itself would write it and where its recovery reads it
back. Reads go to the plain dict inside Faust's memory store: its ``Store`` wrapper costs about a
microsecond per look-up through the generic ``Mapping`` methods.

With Faust's RocksDB store (one database per partition) a write through the store picks the
database from ``current_event()``: wrong in a micro-batch spanning partitions, absent in a timer.
``write`` therefore puts the value into the database of the partition it is given. Reads go
through the store, which finds a key's database by its key index or bloom filters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from faust.types import TP


def contents(table: Any) -> Mapping[bytes, bytes]:
    """A table's key -> value mapping for reads: the plain dict inside Faust's memory store, or
    the store itself for any other store. Read-only by convention: write through ``write``."""
    store = table.data
    inner = getattr(store, "data", None)
    return inner if isinstance(inner, dict) else store


def write(table: Any, key: bytes, value: bytes | None, partition: int | None = None) -> None:
    """Set (or delete, with None) a key in the table's local store only; the caller sends the
    changelog record (to ``changelog_topic(table)``). ``partition``: the key's changelog partition,
    required by a partitioned on-disk store.

    In the memory store the key object written is the one the dict keeps (an update replaces it),
    so that an index of keys (``streams.expiry``) and the store share one object per key."""
    store = table.data
    inner = getattr(store, "data", None)
    if isinstance(inner, dict):
        inner.pop(key, None)
        if value is not None:
            inner[key] = value
        return
    if partition is not None and is_rocksdb(table):
        db = store._db_for_partition(partition)
        if value is None:
            db.delete(key)
        else:
            db.put(key, value)
            store._key_index[key] = partition
        return
    if value is None:
        store.pop(key, None)
    else:
        store[key] = value


def forget_recovered_keys(table: Any) -> None:
    """Drop the memory store's record of which partition each recovered key came from (a dict
    entry per key, as large again as a retained declaration's fingerprint). Faust reads it once,
    when recovery completes, to drop keys of partitions no longer assigned; a table's
    ``on_recover`` callbacks run right after that."""
    recovered = getattr(table.data, "_key_partition", None)
    if isinstance(recovered, dict):
        recovered.clear()


def persist_offset_when_delivered(table: Any, topic: str, partition: int, delivered: asyncio.Future) -> None:
    """When ``delivered`` (a record batch on the table's changelog partition) is acknowledged, make
    its base offset the RocksDB store's persisted offset of that partition: recovery then starts
    after it. Conservative (the batch's later records are read again); nothing for a partition
    whose database is closed (revoked) or a failed delivery."""
    def done(future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        metadata = future.result()
        store = table.data
        if metadata is not None and metadata.offset is not None and partition in store._dbs:
            store.set_persisted_offset(TP(topic, partition), metadata.offset)

    delivered.add_done_callback(done)


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
