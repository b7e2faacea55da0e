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

from streams import topics
from streams.outputs import OutputBatch
from streams.partitioning import partition_for
from streams.services import Services
from streams.settings import Settings
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
    def __init__(self, services: Services, settings: Settings | None = None) -> None:
        self.settings = settings or Settings(app_id="driver", partitions=4)
        self.topology = Topology(self.settings, services)
        self._offsets = itertools.count()
        self.outputs: list[tuple[str, int, bytes | None, bytes | None]] = []

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
            topics.SCANS: self.topology.handle_scans,
            topics.CREDIT_EVENTS: self.topology.handle_credit_events,
            topics.RISK_LISTS: self.topology.handle_risk_lists,
            topics.INSPECTION_RESULTS: self.topology.handle_inspection_results,
        }
        events = [self._event(logical_topic, k, v if not isinstance(v, dict) else orjson.dumps(v), partition) for k, v in records]
        self._run(handlers[logical_topic], events)
        if logical_topic == topics.RISK_LISTS:
            self.topology.risk_index.sync(self.topology.risk_lists.data)

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
