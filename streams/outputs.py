"""Everything one micro-batch produces: the records, bound for their topic partitions, and a tally
of what was decided.

Handlers collect their output here instead of sending record by record: instructions, dead
letters, and for each table write the changelog record (``set_table``, which also updates the
table's local store at once). The whole batch is then sent, one Kafka record batch per topic
partition (``streams.runtime.producer``): an agent's through the worker's ``Checkpoint``
(``streams.runtime.checkpoint``), which holds the offset commit back until it is delivered; a
timer's with ``send``, awaited by the timer.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from streams.runtime import tables
from streams.runtime.producer import Record, send_records


class OutputBatch:
    def __init__(self) -> None:
        self._records: dict[tuple[str, int], list[Record]] = defaultdict(list)
        self.count = 0
        # What the batch decided, for the worker's metrics: (action, stage, port, credit class)
        # counts and (stage, seconds from event time) latencies.
        self.tally: Counter[tuple[str, str, str, str]] = Counter()
        self.latencies: list[tuple[str, float]] = []
        # Every other metric the batch moves (a Prometheus counter child -> amount, a histogram
        # child -> values), published with the batch: the output of an attempt that raised is
        # dropped with its counts, so a batch retried record by record counts each record once.
        self.counted: dict[Any, float] = {}
        self.observed: list[tuple[Any, list[float]]] = []
        self.warned: Counter[tuple[str, str]] = Counter()  # early warnings raised: (severity, rule) counts
        # RocksDB changelog partitions written -> their table and the writes to flush once delivered
        self._on_disk: dict[tuple[str, int], tuple[Any, list[tables.Write]]] = {}

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        self._records[(topic, partition)].append((key, value))
        self.count += 1

    def inc(self, counter: Any, amount: float = 1) -> None:
        """Add ``amount`` to ``counter`` (a labelled counter) when the batch is published."""
        self.counted[counter] = self.counted.get(counter, 0) + amount

    def observe(self, histogram: Any, values: list[float]) -> None:
        """Observe ``values`` in ``histogram`` (a labelled histogram) when the batch is published."""
        self.observed.append((histogram, values))

    def records(self) -> Iterator[tuple[str, int, bytes | None, bytes | None]]:
        """Every record added so far: (topic, partition, key, value), in order per partition."""
        for (topic, partition), records in self._records.items():
            for key, value in records:
                yield topic, partition, key, value

    def table_writes(self) -> Iterable[tuple[int, Any, list[tables.Write]]]:
        """(changelog partition, table, writes) of the RocksDB tables written: what
        ``tables.flush_when_delivered`` flushes once the changelog records are delivered."""
        for (_, partition), (table, writes) in self._on_disk.items():
            yield partition, table, writes

    def by_partition(self) -> Iterable[tuple[tuple[str, int], list[Record]]]:
        """The records grouped by destination: ((topic, partition), [(key, value), ...])."""
        return self._records.items()

    def set_table(self, table: Any, partition: int, key: bytes, value: bytes | None) -> None:
        """Write (or delete, with None) a table key and record the change on its changelog (and,
        while a ``TableJournal`` records, the key's previous value, to undo the write)."""
        if _journal is not None:
            _journal.record(table, key, partition)
        number = tables.write(table, key, value, partition)
        topic = tables.changelog_topic(table)
        self.add(topic, partition, key, value)
        if number is not None:
            self._on_disk.setdefault((topic, partition), (table, []))[1].append((key, value, number))

    def extend(self, other: OutputBatch) -> None:
        """Append everything ``other`` holds (records in order per partition, tally, latencies)."""
        for (topic, partition), records in other.by_partition():
            self._records[(topic, partition)].extend(records)
            self.count += len(records)
        for destination, (table, writes) in other._on_disk.items():
            self._on_disk.setdefault(destination, (table, []))[1].extend(writes)
        self.tally.update(other.tally)
        self.latencies.extend(other.latencies)
        for counter, amount in other.counted.items():
            self.inc(counter, amount)
        self.observed.extend(other.observed)
        self.warned.update(other.warned)

    async def send(self, app: Any) -> list[asyncio.Future]:
        """Hand every record to Faust's producer and empty the batch; returns the delivery futures
        (not awaited here). Agents send through ``Checkpoint.produce``, which tracks them."""
        if not self.count:
            return []
        futures: list[asyncio.Future] = []
        for item in self.by_partition():
            sent = await send_records(app, [item])
            futures += sent
            on_disk = self._on_disk.get(item[0])
            if on_disk is not None:
                # Once delivered, the writes go to the RocksDB database with the persisted offset,
                # so a restart reads only what comes after (streams.runtime.tables).
                tables.flush_when_delivered(on_disk[0], item[0][1], on_disk[1], sent)
        self._records.clear()
        self._on_disk.clear()
        self.count = 0
        return futures


class TableJournal:
    """The previous values of the table keys written while it records, so that a handler that
    raised can be undone: a handler writes the tables' local stores at once (``set_table``), and a
    retry must read them as they were before the failed attempt. Handlers are synchronous, so
    nothing else writes between ``recording`` and ``rollback``."""

    def __init__(self) -> None:
        self._previous: list[tuple[Any, bytes, Any, int]] = []

    def record(self, table: Any, key: bytes, partition: int) -> None:
        self._previous.append((table, key, tables.snapshot(table, key), partition))

    def rollback(self) -> None:
        """Restore every recorded key, latest write first; the journal is empty afterwards."""
        for table, key, taken, partition in reversed(self._previous):
            tables.restore(table, key, taken, partition)
        self._previous.clear()


_journal: TableJournal | None = None  # the journal that set_table records into, if any


@contextmanager
def recording() -> Iterator[TableJournal]:
    """Record the table writes made inside the block (by the synchronous handler it calls)."""
    global _journal
    journal, previous = TableJournal(), _journal
    _journal = journal
    try:
        yield journal
    finally:
        _journal = previous
