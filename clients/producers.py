"""The producer configuration every simulated gateway, scanner and station publishes with."""

from __future__ import annotations

from typing import Any

from common.settings import Settings


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """librdkafka producer settings: Java-compatible key hashing, so keyed topics are co-partitioned;
    acks=all with idempotence, so that a record acknowledged is on ``min.insync.replicas`` brokers and
    a retry after a leader failover neither duplicates nor reorders it."""
    return {
        **settings.confluent_config(),
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "acks": "all",
        "enable.idempotence": True,
        **extra,
    }
