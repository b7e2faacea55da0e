"""An index of table keys by the time they are due, per partition: what the expiry timers read
instead of walking a whole table on the event loop.

Keys sit in coarse time buckets (``width_s``), each bucket a list of the very key ``bytes`` objects
the table writes (an entry costs a pointer). An entry is a hint: the timer re-reads the stored value
and acts only if it is really due. Every write that gives a key a new due time adds an entry, so a
hint whose value turns out not to be due is simply dropped (a later one exists). A bucket is handed
out only once all of it is due (its end has passed), at most ``limit`` keys a call; the rest stays.
"""

from __future__ import annotations

import heapq
import math


class _Partition:
    __slots__ = ("buckets", "heap", "size")

    def __init__(self) -> None:
        self.buckets: dict[int, list[bytes]] = {}
        self.heap: list[int] = []  # bucket numbers, each once
        self.size = 0


class TimeIndex:
    def __init__(self, width_s: float) -> None:
        if width_s <= 0:
            raise ValueError("bucket width must be positive")
        self.width_s = width_s
        self._partitions: dict[int, _Partition] = {}

    def add(self, partition: int, due: float, key: bytes) -> None:
        part = self._partitions.get(partition)
        if part is None:
            part = self._partitions[partition] = _Partition()
        number = math.floor(due / self.width_s)
        bucket = part.buckets.get(number)
        if bucket is None:
            part.buckets[number] = [key]
            heapq.heappush(part.heap, number)
        else:
            bucket.append(key)
        part.size += 1

    def pop_due(self, partition: int, now: float, limit: int) -> list[bytes]:
        """Up to ``limit`` keys of ``partition`` whose bucket has entirely passed at ``now``, removed."""
        part = self._partitions.get(partition)
        out: list[bytes] = []
        if part is None:
            return out
        last = math.floor(now / self.width_s) - 1  # the latest bucket whose end is <= now
        heap = part.heap
        while heap and heap[0] <= last and len(out) < limit:
            bucket = part.buckets[heap[0]]
            take = limit - len(out)
            if len(bucket) <= take:
                out += bucket
                del part.buckets[heapq.heappop(heap)]
            else:
                out += bucket[-take:]
                del bucket[-take:]
        part.size -= len(out)
        return out

    def drop_partition(self, partition: int) -> None:
        """Forget a partition (revoked: its keys are another worker's to expire)."""
        self._partitions.pop(partition, None)

    def keys(self, partition: int) -> list[bytes]:
        """Every key with an entry in ``partition`` (a key once per entry)."""
        part = self._partitions.get(partition)
        return [key for bucket in part.buckets.values() for key in bucket] if part is not None else []

    def partitions(self) -> set[int]:
        return set(self._partitions)

    def size(self, partition: int | None = None) -> int:
        """Entries held (stale hints included), of one partition or of all."""
        if partition is not None:
            part = self._partitions.get(partition)
            return part.size if part is not None else 0
        return sum(p.size for p in self._partitions.values())
