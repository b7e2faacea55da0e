"""Kafka's default key partitioning (murmur2, as the Java client, aiokafka and librdkafka's
``murmur2_random`` do it). Co-partitioning of declarations and scans rests on it."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
