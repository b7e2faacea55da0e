"""A deterministic driver for the topology, without a broker (in the spirit of Kafka Streams'
TopologyTestDriver): feed records to the agents, advance a clock that fires the timers, read back
what they produced.

The Faust app is built but never started. A record sent to a topic goes, as a one-record-per-event
micro-batch, to the handler of the agent that subscribes to that topic (``Topology.agents``): the
very function the agent runs, so parsing, dead-lettering, scoring, the policy, the state machine
and table writes run exactly as in the worker. ``advance`` moves the driver's clock and fires every
timer (``Topology.timers``) whose interval has elapsed, as Kafka Streams' ``advanceWallClockTime``
fires punctuators. The driver owns every partition and takes over none (no takeover grace).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from clients import topics
from common.settings import Settings
from decision.services import Services
from schemas.partitioning import partition_for
from streams.outputs import OutputBatch
from streams.runtime import tables
from streams.topology import Topology, publish_metrics


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class FakeEvent:
    message: FakeMessage


@dataclass
class _ChangelogEvent:
    """A changelog record as Faust's recovery hands it to a table (key and value not deserialised: raw)."""

    key: bytes | None
    value: bytes | None
    message: FakeMessage


class ManualClock:
    """The driver's wall clock: it moves only when the test says so."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


Value = bytes | dict[str, Any] | None


class TopologyDriver:
    def __init__(self, services: Services, settings: Settings | None = None, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings or Settings(app_id="driver", partitions=4, takeover_grace_s=0, table_store="memory")
        self.topology = Topology(self.settings, services)
        # decided_at and deadlines come from the clock: the same clock replays the same bytes.
        self.clock: Callable[[], float] = clock or ManualClock()
        self.topology.clock = self.clock
        every = set(range(self.settings.partitions))
        self.topology.owned_partitions = lambda: every  # type: ignore[method-assign]  # the driver owns every partition
        self.topology.zero_tariff.owned_partitions = lambda: every  # type: ignore[method-assign]
        for table in (self.topology.state, self.topology.deadlines):
            tables.open_partitions(table, every)  # as an assignment does (an on-disk store reads only open partitions)
        start = self.clock()
        self._next_fire = {name: start + interval for name, (interval, _) in self.topology.timers.items()}
        self._offsets = itertools.count()
        self.outputs: list[tuple[str, int, bytes | None, bytes | None]] = []
        self._forwarded: dict[str, int] = {}  # logical topic -> outputs already fed back

    # ---- input -----------------------------------------------------------------------------------
    def _event(self, logical_topic: str, key: bytes | None, value: Value, partition: int | None) -> FakeEvent:
        if partition is None:
            partition = partition_for(key, self.settings.partitions) if key is not None else 0
        raw = orjson.dumps(value) if isinstance(value, dict) else value
        return FakeEvent(FakeMessage(self.settings.topic(logical_topic), partition, next(self._offsets), key, raw))

    def _handler(self, topic_name: str) -> Callable[[list[Any]], OutputBatch]:
        for source, handler in self.topology.agents.values():
            if topic_name in source.topics:
                return handler
        raise KeyError(f"no agent reads {topic_name}")

    def _collect(self, out: OutputBatch | None) -> None:
        """What a worker does with a batch's output: its metrics published, its records delivered
        (here: kept in ``outputs``), then its RocksDB table writes flushed to disk."""
        if out is not None:
            publish_metrics(out)
            self.outputs += [(topic, partition, k, v) for topic, partition, k, v in out.records()]
            for partition, table, writes in out.table_writes():
                tables.flush_acknowledged(table, partition, writes)

    def send(self, logical_topic: str, records: list[tuple[bytes | None, Value]], partition: int | None = None) -> None:
        """Deliver records (key, value) on ``logical_topic`` to the agent that reads it, as one micro-batch."""
        self.send_together([(logical_topic, k, v) for k, v in records], partition)

    def send_together(self, records: list[tuple[str, bytes | None, Value]], partition: int | None = None) -> None:
        """Deliver (logical topic, key, value) records as one micro-batch of the agent that reads
        all their topics (declarations, gateway batches and scans share ``decide_declarations``)."""
        if not records:
            return
        events = [self._event(topic, k, v, partition) for topic, k, v in records]
        handlers = {self._handler(e.message.topic) for e in events}
        if len(handlers) != 1:
            raise ValueError("records of one micro-batch must all be read by one agent")
        self._collect(handlers.pop()(events))

    def forward(self, logical_topic: str) -> int:
        """Feed the records the topology wrote to ``logical_topic`` (since the last call) back to the
        agent that reads it, one micro-batch per partition, as the broker would deliver them.
        Returns how many."""
        name = self.settings.topic(logical_topic)
        start = self._forwarded.get(logical_topic, 0)
        records = [(p, k, v) for i, (t, p, k, v) in enumerate(self.outputs) if t == name and i >= start]
        self._forwarded[logical_topic] = len(self.outputs)
        for partition in sorted({p for p, _, _ in records}):
            self.send(logical_topic, [(k, v) for p, k, v in records if p == partition], partition=partition)
        return len(records)

    # ---- recovery ----------------------------------------------------------------------------------
    def recover(self, changelog: list[tuple[str, int, bytes | None, bytes | None]]) -> int:
        """Recover the per-partition tables from changelog records (topic, partition, key, value),
        e.g. another driver's ``outputs``, as Faust does when a worker starts: each record goes to
        the table's ``on_changelog_event``, then into its store. Returns the records applied."""
        by_topic = {tables.changelog_topic(t): t for t in (self.topology.state, self.topology.deadlines, self.topology.capacity)}
        events = [(by_topic[topic], _ChangelogEvent(key, value, FakeMessage(topic, partition, next(self._offsets), key, value)))
                  for topic, partition, key, value in changelog if topic in by_topic]

        async def apply() -> None:
            for table, event in events:
                recovered: Any = event  # duck-typed: what Faust's recovery reads of an event
                await table.on_changelog_event(recovered)
                table.apply_changelog_batch([recovered])

        asyncio.run(apply())
        return len(events)

    # ---- time ------------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Move the clock forward (a ManualClock only) and fire every timer that falls due."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("advance() needs the driver's ManualClock; with another clock, move it and call fire_timers()")
        self.clock.now += seconds
        self.fire_timers()

    def fire_timers(self) -> None:
        """Fire every timer due at the clock's current reading, once (a worker that was busy for
        several intervals also fires a timer once when it gets to it), in the order they fell due."""
        now = self.clock()
        for name in sorted((n for n, t in self._next_fire.items() if t <= now), key=self._next_fire.__getitem__):
            interval, tick = self.topology.timers[name]
            missed = (now - self._next_fire[name]) // interval + 1
            self._next_fire[name] += missed * interval
            self._collect(tick())

    def expire(self, now: float) -> int:
        """Set the clock to ``now``, fire the due timers; returns the scan timeouts they emitted."""
        before = len(self.outputs)
        if isinstance(self.clock, ManualClock):
            self.clock.now = max(self.clock.now, now)
        self.fire_timers()
        name = self.settings.topic(topics.INSTRUCTIONS)
        return sum(1 for t, _, _, v in self.outputs[before:] if t == name and v is not None and orjson.loads(v)["stage"] == "timeout")

    # ---- output ----------------------------------------------------------------------------------
    def records(self, logical_topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
        """(partition, key, value) of everything the topology wrote to ``logical_topic``."""
        name = self.settings.topic(logical_topic)
        return [(p, k, v) for t, p, k, v in self.outputs if t == name]

    def instructions(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, _, v in self.records(topics.INSTRUCTIONS) if v is not None]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, _, v in self.records(topics.DEAD_LETTERS) if v is not None]
