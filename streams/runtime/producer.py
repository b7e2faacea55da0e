"""Records handed to Faust's own aiokafka producer, one record batch per topic partition.

Faust's ``send_soon`` and ``Topic.send`` pay Faust's per-message machinery (a future, a buffer hop
and an aiokafka ``send`` each), which profiles as the worker's largest cost. Here the records a
micro-batch produced go to the aiokafka producer Faust started -- same connection, same settings
(``streams.runtime.app``: no linger, batches up to 1 MB), same flush on shutdown -- as one aiokafka
``BatchBuilder`` per topic partition (``create_batch`` / ``send_batch``). A partition whose records
exceed one batch is split over several.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

Record = tuple[bytes | None, bytes | None]  # (key, value); a None value is a tombstone


async def send_records(app: Any, by_partition: Iterable[tuple[tuple[str, int], Sequence[Record]]]) -> list[asyncio.Future]:
    """Hand ``((topic, partition), [(key, value), ...])`` groups to the producer; returns one
    delivery future per record batch, not awaited (``streams.runtime.checkpoint`` tracks them).
    Raises Faust's ``NotReady`` before the producer has started. An empty batch takes any one
    record (the broker enforces the size limit, and a refusal fails that delivery); should it
    refuse one, ``ValueError``."""
    producer: Any = app.producer._ensure_producer()  # Faust's aiokafka.AIOKafkaProducer
    futures = []
    for (topic, partition), records in by_partition:
        batch = producer.create_batch()
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:  # batch full
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"record for {topic}[{partition}] exceeds the maximum batch size")
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures
