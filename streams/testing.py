"""A deterministic driver for the topology, without a broker (in the spirit of Kafka Streams'
TopologyTestDriver): feed records to the agents' handlers, read back what they would produce.

The Faust app is built but never started; handlers are the same synchronous functions the agents
call for every micro-batch, so this exercises parsing, dead-lettering, scoring, the policy, the
state machine and table writes exactly as the worker runs them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from clients import topics
from streams.outputs import OutputBatch
from schemas.partitioning import partition_for
from decision.services import Services
from common.settings import Settings
from streams.topology import Topology


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


class TopologyDriver:
    def __init__(self, services: Services, settings: Settings | None = None, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings or Settings(app_id="driver", partitions=4)
        self.topology = Topology(self.settings, services)
        if clock is not None:  # decided_at and deadlines come from it: the same clock replays the same bytes
            self.topology.clock = clock
        self._offsets = itertools.count()
        self.outputs: list[tuple[str, int, bytes | None, bytes | None]] = []
        self._forwarded: dict[str, int] = {}  # logical topic -> outputs already fed back

    def _event(self, logical_topic: str, key: bytes | None, value: bytes | None, partition: int | None) -> FakeEvent:
        if partition is None:
            partition = partition_for(key, self.settings.partitions) if key is not None else 0
        return FakeEvent(FakeMessage(self.settings.topic(logical_topic), partition, next(self._offsets), key, value))

    def _run(self, handler: Callable[[list[FakeEvent]], OutputBatch], events: list[FakeEvent]) -> None:
        out = handler(events)
        for (topic, partition), records in out._records.items():
            self.outputs += [(topic, partition, k, v) for k, v in records]

    def send(self, logical_topic: str, records: list[tuple[bytes | None, bytes | dict | None]], partition: int | None = None) -> None:
        """Deliver records (key, value) to the handler of ``logical_topic`` as one micro-batch."""
        handlers = {
            topics.DECLARATIONS: self.topology.handle_declarations,
            topics.DECLARATION_BATCHES: self.topology.handle_declarations,
            topics.CENTRALISED_DECLARATIONS: self.topology.handle_centralised_declarations,
            topics.SCANS: self.topology.handle_scans,
            topics.CREDIT_EVENTS: self.topology.handle_credit_events,
            topics.RISK_LISTS: self.topology.handle_risk_lists,
            topics.INSPECTION_RESULTS: self.topology.handle_inspection_results,
        }
        events = [self._event(logical_topic, k, v if not isinstance(v, dict) else orjson.dumps(v), partition) for k, v in records]
        self._run(handlers[logical_topic], events)
        if logical_topic == topics.RISK_LISTS:
            self.topology.risk_index.sync(self.topology.risk_lists.data)

    def send_together(self, records: list[tuple[str, bytes | None, bytes | dict | None]]) -> None:
        """Deliver (logical topic, key, value) records of declarations, gateway batches and scans as
        one micro-batch of the worker's decide_declarations agent, which reads all three topics."""
        events = [self._event(topic, k, v if not isinstance(v, dict) else orjson.dumps(v), None) for topic, k, v in records]
        self._run(self.topology.handle_declarations_and_scans, events)

    def forward(self, logical_topic: str) -> int:
        """Feed the records the topology wrote to ``logical_topic`` (since the last call) back to that
        topic's handler, one micro-batch per partition, as the broker would deliver them. Returns how many."""
        name = self.settings.topic(logical_topic)
        start = self._forwarded.get(logical_topic, 0)
        records = [(i, p, k, v) for i, (t, p, k, v) in enumerate(self.outputs) if t == name and i >= start]
        self._forwarded[logical_topic] = len(self.outputs)
        for partition in sorted({p for _, p, _, _ in records}):
            self.send(logical_topic, [(k, v) for _, p, k, v in records if p == partition], partition=partition)
        return len(records)

    def records(self, logical_topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
        """(partition, key, value) of everything the topology wrote to ``logical_topic``."""
        name = self.settings.topic(logical_topic)
        return [(p, k, v) for t, p, k, v in self.outputs if t == name]

    def expire(self, now: float) -> int:
        out = OutputBatch()
        expired = self.topology.expire_deadlines(now, out, actives=set(range(self.settings.partitions)))
        self._run(lambda _: out, [])
        return expired

    def instructions(self) -> list[dict[str, Any]]:
        name = self.settings.topic(topics.INSTRUCTIONS)
        return [orjson.loads(v) for t, _, _, v in self.outputs if t == name]

    def dead_letters(self) -> list[dict[str, Any]]:
        name = self.settings.topic(topics.DEAD_LETTERS)
        return [orjson.loads(v) for t, _, _, v in self.outputs if t == name]
