"""What the worker knows about itself from Faust: whether it is ready, which partitions it actively
owns, and how far its consumer has read them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from streams.runtime.tables import is_changelog


def ready(app: Any) -> bool:
    """Not in a rebalance, and every table recovered from its changelog (until then the local
    stores are not the truth)."""
    return not app.rebalancing and app.tables.recovery.completed.is_set()


def rebalances(app: Any) -> int:
    """How many rebalances this worker has started (Faust counts them as each one begins)."""
    count: int = app.rebalancing_count
    return count


def active_partitions(app: Any) -> set[Any]:
    """The topic partitions (``faust.types.TP``) this worker actively owns: not its standbys."""
    actives: set[Any] = app.assignor.assigned_actives()
    return actives


def standby_partitions(app: Any) -> set[Any]:
    """The changelog topic partitions (``faust.types.TP``) this worker keeps warm standby copies of."""
    standbys: set[Any] = app.assignor.assigned_standbys()
    return standbys


def fetches(app: Any) -> tuple[int, int]:
    """``(full, incremental)``: the fetches the worker's consumer has had answered, over all brokers
    (``streams.runtime.fetchsession``; both 0 without sessions)."""
    sessions = app.consumer.fetch_sessions
    return (sum(s.full_fetches for s in sessions.values()), sum(s.incremental_fetches for s in sessions.values()))


def input_lag(app: Any) -> Iterator[tuple[str, int, int]]:
    """``(topic, partition, records behind the high watermark)`` for each actively owned input
    partition whose high watermark and read position are known (on brokers that report
    watermarks correctly; the embedded Tansu does not)."""
    consumer = app.consumer
    read = getattr(consumer, "_read_offset", {})  # the offset of the last record it delivered
    for tp in app.assignor.assigned_actives():
        if is_changelog(tp.topic):
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - no fetch response yet
            continue
        position = read.get(tp)
        if highwater is not None and position is not None:
            yield tp.topic, tp.partition, max(0, highwater - position - 1)
