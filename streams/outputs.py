"""Everything one micro-batch produces, sent as one Kafka record batch per topic partition.

Faust's ``send_soon`` and table ``__setitem__`` pay Faust's per-message machinery (a future, a
buffer hop and an aiokafka ``send`` each), which profiles as the worker's largest cost. Instead the
handlers collect their output here and the agent sends it with Faust's own aiokafka producer,
``create_batch`` / ``send_batch`` per partition, and awaits delivery *before* it asks the stream
for the next batch: Faust acks (and later commits) the input offsets only after that, so delivery
stays at-least-once. Table writes update the table's local store directly and put the changelog
record into the same batch, on the partition of the input record, exactly where Faust itself would
write it and where its recovery reads it back.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from typing import Any

import faust

Record = tuple[bytes | None, bytes | None]


class OutputBatch:
    def __init__(self) -> None:
        self._records: dict[tuple[str, int], list[Record]] = defaultdict(list)
        self.count = 0
        # What the batch decided, for the worker's metrics: (action, stage, port, credit class)
        # counts and (stage, seconds from event time) latencies.
        self.tally: Counter[tuple[str, str, str, str]] = Counter()
        self.latencies: list[tuple[str, float]] = []

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        self._records[(topic, partition)].append((key, value))
        self.count += 1

    def set_table(self, table: faust.Table, partition: int, key: bytes, value: bytes | None) -> None:
        """Write (or delete, with None) a table key and record the change on its changelog."""
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value
        self.add(table.changelog_topic.get_topic_name(), partition, key, value)

    async def send(self, app: faust.App) -> None:
        if not self.count:
            return
        producer: Any = app.producer._ensure_producer()  # Faust's own aiokafka producer
        futures = []
        for (topic, partition), records in self._records.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:  # batch full
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"record for {topic}[{partition}] exceeds the maximum batch size")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
        self._records.clear()
        self.count = 0
