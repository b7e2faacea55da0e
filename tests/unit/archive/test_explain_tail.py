"""`riskctl explain` reads each topic only from the position the archive holds (fake consumer)."""

from __future__ import annotations

from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from audit import explain as ex
from clients import topics
from common.settings import Settings
from schemas.partitioning import partition_for
from tests.unit.archive import fakes


class TailConsumer:
    """Three topics of two partitions; records where the key is the declaration id."""

    def __init__(self, settings: Settings, logs: dict[tuple[str, int], list[tuple[bytes, bytes]]]) -> None:
        self.logs = logs
        self.assigned: list[TopicPartition] = [TopicPartition(settings.topic(lt), p, OFFSET_BEGINNING)
                                               for lt in ex.TAIL_TOPICS for p in (0, 1)]
        self.queue: list[fakes.FakeMessage] = []
        self.reads: list[tuple[str, int, int]] = []

    def assignment(self) -> list[TopicPartition]:
        return list(self.assigned)

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)
        self.queue = []
        for tp in tps:
            start = 0 if tp.offset == OFFSET_BEGINNING else tp.offset
            self.reads.append((tp.topic, tp.partition, start))
            log = self.logs.get((tp.topic, tp.partition), [])
            self.queue += [fakes.FakeMessage(tp.topic, tp.partition, o, k, v) for o, (k, v) in enumerate(log) if o >= start]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float | None = None) -> tuple[int, int]:
        return 0, len(self.logs.get((tp.topic, tp.partition), []))

    def consume(self, num_messages: int = 1, timeout: float | None = None) -> list[fakes.FakeMessage]:
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return out

    def close(self) -> None:
        pass


def test_each_topic_is_read_from_the_archived_position_of_the_home_partition(monkeypatch: Any) -> None:
    settings = Settings(partitions=2)
    did = "D1"
    home = partition_for(did.encode(), 2)
    key = did.encode()
    ins = [(key, orjson.dumps(fakes.instruction(did, revision=r))) for r in (1, 2, 3)]
    logs = {(settings.topic(topics.INSTRUCTIONS), home): ins,
            (settings.topic(topics.SCANS), home): [(key, orjson.dumps(fakes.scan(did)))],
            (settings.topic(topics.INSPECTION_RESULTS), home): [(b"D2", orjson.dumps(fakes.inspection("D2")))]}
    consumer = TailConsumer(settings, logs)
    monkeypatch.setattr(ex, "assigned_reader", lambda *a, **kw: consumer)
    starts = {topics.INSTRUCTIONS: {home: 2, 1 - home: 0}, topics.SCANS: {home: 0}, topics.INSPECTION_RESULTS: {home: 1}}
    found = ex.read_topics(settings, did, 5, starts)
    assert [i["revision"] for i in found[topics.INSTRUCTIONS]] == [3]  # the archive holds revisions 1 and 2
    assert [s["scan_id"] for s in found[topics.SCANS]] == ["S-D1"]
    assert found[topics.INSPECTION_RESULTS] == []
    assert (settings.topic(topics.INSTRUCTIONS), home, 2) in consumer.reads
    assert not any(topic == settings.topic(topics.INSPECTION_RESULTS) for topic, _, _ in consumer.reads), "nothing past the archive"
