"""Our murmur2 must agree with the Kafka clients' on every key, or scans miss their declarations."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.partitioning import murmur2, partition_for


@settings(max_examples=2000)
@given(st.binary(max_size=64))
def test_murmur2_matches_aiokafka(key: bytes) -> None:
    assert murmur2(key) & 0xFFFFFFFF == aiokafka_murmur2(key) & 0xFFFFFFFF


def test_partitions_match_the_java_client() -> None:
    # Partitions of Kafka's Java DefaultPartitioner for 1000 partitions (kafka-python's compatibility vectors).
    keys = (b"", b"a", b"ab", b"abc", b"123456789", b"\x00 ")
    assert [partition_for(k, 1000) for k in keys] == [681, 524, 434, 107, 566, 742]
