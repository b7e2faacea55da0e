"""The time index behind the expiry timers: coarse buckets per partition, bounded hand-outs."""

from __future__ import annotations

import pytest

from streams.expiry import TimeIndex


def test_a_bucket_is_handed_out_once_all_of_it_is_due() -> None:
    index = TimeIndex(10.0)
    a, b, c = b"A", b"B", b"C"
    index.add(0, 101.0, a)
    index.add(0, 109.0, b)
    index.add(0, 125.0, c)
    assert index.pop_due(0, 109.5, 100) == []  # bucket [100, 110) not over yet
    assert sorted(index.pop_due(0, 110.0, 100)) == [a, b]
    assert index.pop_due(0, 110.0, 100) == []  # removed once handed out
    popped = index.pop_due(0, 1000.0, 100)
    assert popped == [c] and popped[0] is c  # the very key object, not a copy
    assert index.size() == 0


def test_work_per_call_is_bounded_and_the_rest_waits() -> None:
    index = TimeIndex(1.0)
    for i in range(7):
        index.add(3, float(i), b"K%d" % i)
    first = index.pop_due(3, 100.0, 3)
    second = index.pop_due(3, 100.0, 3)
    third = index.pop_due(3, 100.0, 3)
    assert (len(first), len(second), len(third)) == (3, 3, 1)
    assert sorted(first + second + third) == sorted(b"K%d" % i for i in range(7))
    assert index.size(3) == 0


def test_partitions_are_separate_and_a_revoked_one_is_dropped() -> None:
    index = TimeIndex(1.0)
    index.add(0, 1.0, b"P0")
    index.add(1, 1.0, b"P1")
    assert index.partitions() == {0, 1}
    index.drop_partition(1)
    assert index.pop_due(1, 100.0, 10) == [] and index.pop_due(0, 100.0, 10) == [b"P0"]
    with pytest.raises(ValueError):
        TimeIndex(0)
