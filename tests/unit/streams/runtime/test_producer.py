"""Output records handed to the producer as one record batch per topic partition."""

from __future__ import annotations

import asyncio

from streams.outputs import OutputBatch
from tests.unit.streams.runtime.fakes import FakeApp, FakeProducer


def test_one_record_batch_per_topic_partition_in_order() -> None:
    async def scenario() -> tuple[FakeProducer, OutputBatch, int]:
        producer = FakeProducer()
        out = OutputBatch()
        out.add("instructions", 1, b"a", b"1")
        out.add("dead-letters", 0, b"t", b"x")
        out.add("instructions", 1, b"b", b"2")
        out.add("instructions", 0, b"c", None)  # a tombstone
        futures = await out.send(FakeApp(producer))
        return producer, out, len(futures)

    producer, out, futures = asyncio.run(scenario())
    assert producer.sent == [("instructions", 1, [b"1", b"2"]), ("dead-letters", 0, [b"x"]), ("instructions", 0, [None])]
    assert futures == 3
    assert out.count == 0 and list(out.records()) == []  # sent: the batch is empty


def test_a_partition_larger_than_one_batch_is_split_in_order() -> None:
    async def scenario() -> FakeProducer:
        producer = FakeProducer(batch_size=200)
        out = OutputBatch()
        for i in range(10):
            out.add("instructions", 0, b"k", b"%02d" % i + b"." * 40)
        await out.send(FakeApp(producer))
        return producer

    producer = asyncio.run(scenario())
    assert len(producer.sent) > 1
    assert all(topic == "instructions" and partition == 0 for topic, partition, _ in producer.sent)
    values = [v for _, _, batch in producer.sent for v in batch]
    assert [v[:2] for v in values if v is not None] == [b"%02d" % i for i in range(10)]


def test_records_lists_every_record_in_order_per_partition() -> None:
    out = OutputBatch()
    out.add("a", 0, b"1", b"x")
    out.add("b", 1, None, b"y")
    out.add("a", 0, b"2", None)
    assert list(out.records()) == [("a", 0, b"1", b"x"), ("a", 0, b"2", None), ("b", 1, None, b"y")]
    assert out.count == 3
