"""Consumers that read whole topics without joining a consumer group (tools, demo, tests).

Group membership costs a rebalance round (up to the rebalance timeout on some brokers) and is not
needed by a reader that wants every record from the beginning: assign all partitions directly.
"""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from common.settings import Settings


def assigned_reader(settings: Settings, logical_topics: list[str], timeout_s: float = 30.0) -> Consumer:
    consumer = Consumer({**settings.confluent_config(), "group.id": "unused-no-commit", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": False,
                         "fetch.wait.max.ms": 10})  # some brokers hold a fetch for the whole wait
    # On a cluster a topic just created reaches every broker's metadata a moment later: ask again
    # (list_topics waits for the broker's answer) until the deadline before calling it missing.
    deadline = time.monotonic() + timeout_s
    assignment = []
    for name in logical_topics:
        full = settings.topic(name)
        while True:
            topic = consumer.list_topics(full, timeout=max(deadline - time.monotonic(), 1.0)).topics.get(full)
            if topic is not None and topic.error is None and topic.partitions:
                break
            if time.monotonic() >= deadline:
                consumer.close()
                raise RuntimeError(f"topic {full} does not exist: run `riskctl topics create`")
            time.sleep(0.2)  # metadata propagation; the deadline bounds the wait
        assignment += [TopicPartition(full, p, OFFSET_BEGINNING) for p in topic.partitions]
    consumer.assign(assignment)
    return consumer
