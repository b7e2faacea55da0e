"""A KRaft cluster of Apache Kafka nodes on loopback, for fault tests and ``riskctl kafka --nodes 3``.

Every node is an :class:`devkit.brokers.ApacheKafkaBroker` in combined mode (broker and controller in
one JVM) on its own ports, all voters of one static controller quorum, sharing a cluster id. The
nodes are launched together and then waited for, since a node can serve only once a quorum of
controllers has elected a leader. Internal topics get min(3, nodes) replicas, and the broker
defaults are what ``clients.topic_checks.durability`` gives the pipeline's topics, so a fault test
sees what a production cluster of that size would do.

Small on purpose: ``heap`` per node (384 MB by default), serial GC, and broker failure detection
tuned for tests (``broker.session.timeout.ms`` 4 s from the template, a follower that stops fetching
leaves the ISR after 10 s instead of 30 s).

Faults act on one node: :meth:`KafkaCluster.node` gives it (``kill()``, ``restart()``,
``suspend()``/``resume()``); :meth:`KafkaCluster.leaders` says which node leads which partition, and
:meth:`KafkaCluster.wait_replicated` waits until every partition has its full ISR again.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from devkit.brokers import LOOPBACK, ApacheKafkaBroker, BrokerError, BrokerStartError, _random_cluster_id, free_port

__all__ = ["KafkaCluster"]

MAX_NODES = 9


class KafkaCluster:
    """``nodes`` combined KRaft nodes on loopback (node ids 1..nodes). ``first_port``: the first
    node's listener port (default: a free one); ``data_dir``: a parent for the nodes' persistent log
    dirs (``node-<id>``; default: temp dirs removed by :meth:`stop`)."""

    kind = "kafka"

    def __init__(
        self,
        nodes: int = 3,
        *,
        host: str = LOOPBACK,
        first_port: int | None = None,
        data_dir: str | Path | None = None,
        heap: str = "384m",
        startup_timeout: float = 180.0,
        properties: Mapping[str, Any] | None = None,
        lib_dir: str | Path | None = None,
        repo_root: str | Path | None = None,
    ) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise BrokerError(f"a cluster has 1 to {MAX_NODES} nodes, not {nodes}")
        taken: set[int] = set()

        def port() -> int:
            while (p := free_port(host)) in taken:
                pass
            taken.add(p)
            return p

        listeners = [first_port if i == 0 and first_port is not None else port() for i in range(nodes)]
        taken.update(listeners)
        controllers = [port() for _ in range(nodes)]
        voters = ",".join(f"{i + 1}@{host}:{c}" for i, c in enumerate(controllers))
        replicas = min(3, nodes)
        isr = max(1, min(2, replicas - 1))
        shared = {
            "controller.quorum.voters": voters,
            "default.replication.factor": replicas,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": isr,
            "replica.lag.time.max.ms": 10_000,
            **(properties or {}),
        }
        self.cluster_id = _random_cluster_id()
        self.nodes: list[ApacheKafkaBroker] = []
        for i in range(nodes):
            node = ApacheKafkaBroker(
                port=listeners[i], controller_port=controllers[i], host=host,
                data_dir=Path(data_dir) / f"node-{i + 1}" if data_dir is not None else None,
                properties={"node.id": i + 1, **shared}, heap=heap, startup_timeout=startup_timeout,
                lib_dir=lib_dir, repo_root=repo_root,
            )
            node.cluster_id = self.cluster_id  # formatted with the cluster's id, not one of its own
            self.nodes.append(node)
        #: Seconds the last start() took until every node answered metadata requests.
        self.startup_seconds: float | None = None

    # -- the interface devkit.brokers.run_foreground and the tests use --------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(n.bootstrap_servers for n in self.nodes)

    @property
    def pid(self) -> int | None:
        return self.nodes[0].pid

    @property
    def log_file(self) -> Path | None:
        return self.nodes[0].log_file

    def describe(self) -> str:
        return ", ".join(f"node {i} pid {n.pid} log {n.log_file}" for i, n in enumerate(self.nodes, 1))

    def is_running(self) -> bool:
        return all(n.is_running() for n in self.nodes)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(f"--- node {i} ({n.log_file}):\n{n.log_tail(lines)}" for i, n in enumerate(self.nodes, 1))

    def start(self) -> KafkaCluster:
        """Launch every node, then wait until each answers metadata requests as a registered broker."""
        t0 = time.monotonic()
        try:
            launched = [n._spawn() for n in self.nodes]
            for node, t in zip(self.nodes, launched):
                node._await_ready(t)
        except BrokerError:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """SIGTERM every node at once, then wait for each: stopped one by one, the last nodes would
        wait for a controller quorum that is already gone before they give up their shutdown."""
        for node in self.nodes:
            if node.is_running():
                try:
                    node._signal_group(signal.SIGCONT)  # a suspended node cannot handle SIGTERM
                    node._signal_group(signal.SIGTERM)
                except (BrokerError, ProcessLookupError):
                    pass
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ---------------------------------------------------------------------------------------

    def node(self, node_id: int) -> ApacheKafkaBroker:
        """The node with this ``node.id`` (1-based)."""
        if not 1 <= node_id <= len(self.nodes):
            raise BrokerError(f"no node {node_id} in a {len(self.nodes)}-node cluster")
        return self.nodes[node_id - 1]

    def _admin(self) -> Any:
        from confluent_kafka.admin import AdminClient  # heavy import, only when needed

        return AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0, "socket.connection.setup.timeout.ms": 2000})

    def leaders(self, topics: Iterable[str], timeout_s: float = 5.0) -> dict[tuple[str, int], int]:
        """(topic, partition) -> node id of its leader (-1: none), from the cluster's metadata."""
        md = self._admin().list_topics(timeout=timeout_s)
        return {(t, p.id): p.leader for t in topics if t in md.topics for p in md.topics[t].partitions.values()}

    def under_replicated(self, timeout_s: float = 5.0) -> list[tuple[str, int]]:
        """Partitions (internal topics included) without a leader or with fewer in-sync replicas than replicas."""
        md = self._admin().list_topics(timeout=timeout_s)
        return [(name, p.id) for name, t in md.topics.items() for p in t.partitions.values()
                if p.leader < 0 or set(p.isrs) != set(p.replicas)]

    def wait_replicated(self, timeout_s: float = 120.0) -> float:
        """Wait until every node is registered and every partition has its full ISR (a rolling restart
        takes the next node down only then). Returns the seconds waited."""
        t0 = time.monotonic()
        last: object = None
        while True:
            try:
                md = self._admin().list_topics(timeout=2.0)
                lagging = self.under_replicated(2.0) if len(md.brokers) == len(self.nodes) else f"{len(md.brokers)} brokers registered"
                if not lagging:
                    return time.monotonic() - t0
                last = lagging if isinstance(lagging, str) else f"{len(lagging)} partitions under-replicated, e.g. {lagging[:3]}"
            except Exception as exc:  # noqa: BLE001 - a KafkaException while nodes come back; retried until the deadline
                last = exc
            if time.monotonic() - t0 > timeout_s:
                raise BrokerStartError(f"cluster not fully replicated after {timeout_s:.0f}s: {last}\n{self.log_tail(15)}")
            time.sleep(0.2)  # polling interval of a condition with a deadline
