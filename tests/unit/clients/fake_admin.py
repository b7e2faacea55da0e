"""An in-memory stand-in for confluent-kafka's AdminClient: a cluster of N brokers holding topics."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.admin import ConfigResource, NewTopic


@dataclass
class FakePartition:
    replicas: list[int]


@dataclass
class FakeTopic:
    partitions: dict[int, FakePartition]
    config: dict[str, str]
    error: Any = None


@dataclass
class FakeMetadata:
    brokers: dict[int, object]
    topics: dict[str, FakeTopic]


@dataclass
class FakeEntry:
    value: str | None


@dataclass
class FakeAdmin:
    """``brokers`` in the cluster; ``topics`` as created (by the code under test or by ``add``)."""

    brokers: int = 1
    topics: dict[str, FakeTopic] = field(default_factory=dict)
    #: Broker-wide defaults a real Kafka reports for every topic (Tansu reports only what was set).
    defaults: dict[str, str] = field(default_factory=lambda: {"cleanup.policy": "delete", "retention.ms": "604800000",
                                                               "min.insync.replicas": "1"})
    created: list[NewTopic] = field(default_factory=list)

    def add(self, name: str, partitions: int, replication: int, config: dict[str, str] | None = None) -> None:
        self.topics[name] = FakeTopic({p: FakePartition(list(range(replication))) for p in range(partitions)}, dict(config or {}))

    def list_topics(self, timeout: float = -1) -> FakeMetadata:
        return FakeMetadata({b: object() for b in range(self.brokers)}, dict(self.topics))

    def describe_configs(self, resources: list[ConfigResource], request_timeout: float = -1) -> dict[ConfigResource, Future]:
        out = {}
        for r in resources:
            future: Future = Future()
            future.set_result({k: FakeEntry(v) for k, v in {**self.defaults, **self.topics[r.name].config}.items()})
            out[r] = future
        return out

    def create_topics(self, new: list[NewTopic], operation_timeout: float = -1, request_timeout: float = -1) -> dict[str, Future]:
        out = {}
        for t in new:
            self.created.append(t)
            self.add(t.topic, t.num_partitions, t.replication_factor, t.config)
            future: Future = Future()
            future.set_result(None)
            out[t.topic] = future
        return out
