"""Everything one micro-batch produces, sent as one Kafka record batch per topic partition.

Faust's ``send_soon`` and table ``__setitem__`` pay Faust's per-message machinery (a future, a
buffer hop and an aiokafka ``send`` each), which profiles as the worker's largest cost. Instead the
handlers collect their output here and the agent sends it with Faust's own aiokafka producer,
``create_batch`` / ``send_batch`` per partition. Table writes update the table's local store
directly and put the changelog record into the same batch, on the partition of the input record,
exactly where Faust itself would write it and where its recovery reads it back.

Delivery is pipelined one micro-batch deep: an agent sends batch N, decides batch N+1 while N is
on the wire, and waits for N's acknowledgement before it sends N+1. Faust acks N's input events
when the agent moves on, before N is acknowledged, so ``Deliveries`` guards the commit instead:
the worker's consumer (streams/runtime/consumer.py) waits for every batch sent so far before it
commits any offset, and a failed delivery stops the commit and crashes the worker. Delivery stays
at-least-once: nothing is committed whose outputs are not on the broker.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterator
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

    def records(self) -> Iterator[tuple[str, int, bytes | None, bytes | None]]:
        """Every record added so far: (topic, partition, key, value), in order per partition."""
        for (topic, partition), records in self._records.items():
            for key, value in records:
                yield topic, partition, key, value

    def set_table(self, table: faust.Table, partition: int, key: bytes, value: bytes | None) -> None:
        """Write (or delete, with None) a table key and record the change on its changelog."""
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value
        self.add(table.changelog_topic.get_topic_name(), partition, key, value)

    async def send(self, app: faust.App) -> list[asyncio.Future]:
        """Hand every record to the producer; returns the delivery futures (not awaited here)."""
        if not self.count:
            return []
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
        self._records.clear()
        self.count = 0
        return futures


class DeliveryFailed(RuntimeError):
    """The broker did not acknowledge an output batch: offsets must not be committed past it."""


class Deliveries:
    """Output batches handed to the producer and not yet acknowledged, across all agents."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Future] = set()
        self.failure: BaseException | None = None

    def track(self, futures: list[asyncio.Future]) -> None:
        for future in futures:
            if not future.done():
                self._pending.add(future)
                future.add_done_callback(self._done)
            else:
                self._done(future)

    def _done(self, future: asyncio.Future) -> None:
        self._pending.discard(future)
        if self.failure is None:
            if future.cancelled():
                self.failure = asyncio.CancelledError("delivery cancelled")
            elif future.exception() is not None:
                self.failure = future.exception()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def wait(self) -> None:
        """Until every batch sent so far is acknowledged; raises DeliveryFailed if one was not."""
        if self._pending:
            await asyncio.wait(list(self._pending))
        if self.failure is not None:
            raise DeliveryFailed(f"an output batch was not delivered: {self.failure!r}") from self.failure
