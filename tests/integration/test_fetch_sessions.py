"""Incremental fetch sessions (streams.runtime.fetchsession) against real brokers: aiokafka's own
consumer, with its fetcher in sessions, reads several topics' partitions while records arrive in
waves, is sought back and has a partition paused and resumed: every record arrives once, in order,
and on Apache Kafka the fetches after the first are incremental."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devkit.brokers import Broker, create_topics
from streams.runtime import fetchsession

pytestmark = pytest.mark.integration

TOPICS = 8  # partitions the consumer names in every full fetch: TOPICS x 2
WAVES = 6
PER_WAVE = 40


async def _send(producer: AIOKafkaProducer, tp: TopicPartition, values: range) -> int:
    sent = [await producer.send(tp.topic, str(v).encode(), partition=tp.partition) for v in values]
    await asyncio.gather(*sent)
    return len(sent)


async def _read(consumer: AIOKafkaConsumer, want: int, got: dict[tuple[str, int], list[int]], deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while sum(len(v) for v in got.values()) < want:
        assert time.monotonic() < deadline, f"read {sum(len(v) for v in got.values())} of {want} records"
        for tp, records in (await consumer.getmany(timeout_ms=200)).items():
            got[(tp.topic, tp.partition)].extend(int(r.value) for r in records)


def test_a_consumer_in_fetch_sessions_reads_every_record_once_in_order(broker: Broker) -> None:
    prefix = f"fs-{uuid.uuid4().hex[:8]}"
    topics = [f"{prefix}-{i}" for i in range(TOPICS)]
    create_topics(broker.bootstrap_servers, dict.fromkeys(topics, 2))
    # Records go to these; the others stay quiet, as a worker's global tables mostly do.
    busy = [TopicPartition(topics[0], 0), TopicPartition(topics[1], 1)]
    quiet = TopicPartition(topics[-1], 1)

    async def run() -> tuple[dict[tuple[str, int], list[int]], dict[int, fetchsession.FetchSession]]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=5)
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=50, fetch_min_bytes=1)
        await producer.start()
        await consumer.start()
        try:
            consumer.assign([TopicPartition(t, p) for t in topics for p in (0, 1)])
            sessions = fetchsession.install(consumer._fetcher)
            got: dict[tuple[str, int], list[int]] = defaultdict(list)
            sent = 0
            for wave in range(WAVES):
                for tp in busy:
                    sent += await _send(producer, tp, range(wave * PER_WAVE, (wave + 1) * PER_WAVE))
                await _read(consumer, sent, got)
            # Sought back: the partition's moved offset must reach the broker's session.
            consumer.seek(busy[0], 0)
            await _read(consumer, sent + WAVES * PER_WAVE, got)
            # Paused (dropped from the session) and resumed (added back) while records arrive for it.
            consumer.pause(quiet)
            await _send(producer, quiet, range(PER_WAVE))
            await _send(producer, busy[1], range(WAVES * PER_WAVE, (WAVES + 1) * PER_WAVE))
            await _read(consumer, sent + (WAVES + 1) * PER_WAVE, got)
            assert not got.get((quiet.topic, quiet.partition)), "a paused partition's records were delivered"
            consumer.resume(quiet)
            await _read(consumer, sent + (WAVES + 2) * PER_WAVE, got)
            return got, sessions
        finally:
            await consumer.stop()
            await producer.stop()

    got, sessions = asyncio.run(run())
    once = list(range(WAVES * PER_WAVE))
    assert got[(busy[0].topic, busy[0].partition)] == once + once, "the read after the seek back differs from the first"
    assert got[(busy[1].topic, busy[1].partition)] == list(range((WAVES + 1) * PER_WAVE))
    assert got[(quiet.topic, quiet.partition)] == list(range(PER_WAVE))
    assert set(got) == {(tp.topic, tp.partition) for tp in (*busy, quiet)}
    full = sum(s.full_fetches for s in sessions.values())
    incremental = sum(s.incremental_fetches for s in sessions.values())
    assert full + incremental > 0
    if broker.kind == "kafka":
        assert incremental > full, f"Apache Kafka keeps fetch sessions: {full} full and {incremental} incremental fetches"
