"""Stand-ins for the broker side of the adapter: a worker consumer that is built but never started,
and an aiokafka producer whose deliveries the test completes by hand."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from common.settings import Settings
from streams.runtime.app import faust_app
from streams.runtime.checkpoint import Checkpoint

# Must be called inside a running event loop (Faust binds its services to it).


def worker_consumer(tmp_path: Path, checkpoint: Checkpoint | None = None, **settings: Any) -> Any:
    """The consumer ``faust_app`` gives a worker: the real class, never started (no broker)."""
    app = faust_app(Settings(app_id="runtime-test", partitions=4, data_dir=tmp_path / "data", **settings), checkpoint)
    return app.consumer


def record(tp: TP, offset: int) -> ConsumerRecord:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v%d" % offset, None, 1, 2, ())


class RecordingBatchBuilder(BatchBuilder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.values: list[bytes | None] = []

    def append(self, *, timestamp: int | None, key: Any, value: Any, headers: Any = ()) -> Any:
        metadata = super().append(timestamp=timestamp, key=key, value=value, headers=list(headers))
        if metadata is not None:
            self.values.append(value)
        return metadata


class FakeProducer:
    """aiokafka's producer surface that ``streams.runtime.producer`` uses, with real BatchBuilders.
    ``send_batch`` records (topic, partition, values) and returns a future the test resolves."""

    def __init__(self, batch_size: int = 16_384) -> None:
        self.batch_size = batch_size
        self.sent: list[tuple[str, int, list[bytes | None]]] = []
        self.futures: list[asyncio.Future] = []

    def create_batch(self) -> RecordingBatchBuilder:
        return RecordingBatchBuilder(self.batch_size, 0)

    async def send_batch(self, batch: RecordingBatchBuilder, topic: str, *, partition: int) -> asyncio.Future:
        self.sent.append((topic, partition, list(batch.values)))
        future = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


class FakeApp:
    """Just enough of a Faust app for ``OutputBatch.send``: ``app.producer._ensure_producer()``."""

    def __init__(self, producer: FakeProducer) -> None:
        self.producer = self
        self._producer = producer

    def _ensure_producer(self) -> FakeProducer:
        return self._producer
