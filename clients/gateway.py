"""The reference port-gateway publisher: declarations packed per partition into batch records.

A Faust worker pays a fixed cost of CPU for every Kafka record it consumes, whatever the record
holds (docs/benchmark.md, "Fixed costs"). A gateway that transmits many declarations per
second therefore packs the declarations bound for each partition into one ``DeclarationBatch``
record every few milliseconds, the way Kafka's own producer batches on the wire, but visible to
the application. Each declaration goes to the murmur2 partition of its id, exactly where it
would go as a single record, so it stays co-partitioned with its scans. Gateways that cannot batch
publish single records to the ``declarations`` topic; the worker reads both. Centralised declarations
(white-list enterprises' many-item declarations) are one record each on their own topic.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from confluent_kafka import Producer

from clients import topics
from common.settings import Settings
from schemas.partitioning import partition_for


class DeclarationPublisher:
    def __init__(
        self, producer: Producer, settings: Settings, gateway: str = "GW1",
        batching: bool = True, linger_s: float = 0.005, max_batch: int = 500,
    ) -> None:
        self.producer = producer
        self.settings = settings
        self.gateway = gateway
        self.batching = batching
        self.linger_s = linger_s
        self.max_batch = max_batch
        self.partitions = settings.partitions
        self._single_topic = settings.topic(topics.DECLARATIONS)
        self._batch_topic = settings.topic(topics.DECLARATION_BATCHES)
        self._centralised_topic = settings.topic(topics.CENTRALISED_DECLARATIONS)
        self._pending: dict[int, list[dict[str, Any]]] = {}
        self._opened: dict[int, float] = {}
        self._seq = 0
        self.records_sent = 0

    def publish(self, declaration: dict[str, Any]) -> None:
        """Queue one JSON-ready declaration (as ``Declaration.model_dump(mode="json")`` gives it)."""
        key = declaration["declaration_id"].encode()
        if not self.batching:
            self.produce(self._single_topic, key, orjson.dumps(declaration))
            self.records_sent += 1
            return
        partition = partition_for(key, self.partitions)
        pending = self._pending.setdefault(partition, [])
        if not pending:
            self._opened[partition] = time.monotonic()
        pending.append(declaration)
        if len(pending) >= self.max_batch:
            self._send(partition)

    def publish_centralised(self, centralised: dict[str, Any]) -> None:
        """Send one JSON-ready ``CentralisedDeclaration``, keyed by its id. It is never batched: the
        worker splits it into one declaration per goods item, each on its own murmur2 partition."""
        key = centralised["centralised_id"].encode()
        self.produce(self._centralised_topic, key, orjson.dumps(centralised))
        self.records_sent += 1

    def produce(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        """Send one record through the publisher's producer (declarations, or the gateway's other
        traffic); while the producer's local queue is full, wait for it to drain."""
        while True:
            try:
                if partition is None:
                    self.producer.produce(topic, key=key, value=value)
                else:
                    self.producer.produce(topic, key=key, value=value, partition=partition)
                return
            except BufferError:
                self.producer.poll(0.05)

    def poll(self) -> None:
        """Send batches whose linger time has passed; call this often (it is cheap)."""
        if self._pending:
            deadline = time.monotonic() - self.linger_s
            for partition in [p for p, opened in self._opened.items() if opened <= deadline]:
                self._send(partition)
        self.producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> int:
        for partition in list(self._pending):
            self._send(partition)
        return self.producer.flush(timeout_s)

    def _send(self, partition: int) -> None:
        declarations = self._pending.pop(partition)
        self._opened.pop(partition, None)
        self._seq += 1
        batch_id = f"{self.gateway}-{partition}-{self._seq}"
        value = orjson.dumps({"schema_version": 1, "batch_id": batch_id, "gateway": self.gateway, "declarations": declarations})
        self.produce(self._batch_topic, batch_id.encode(), value, partition)
        self.records_sent += 1
