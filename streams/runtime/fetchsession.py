"""Incremental fetch sessions (Kafka's KIP-227) for the worker's aiokafka fetcher.

aiokafka sends every fetch as a full one: the request names every partition the worker reads (its
input topics and the global tables' changelogs, 30-40), and the broker answers for each of them,
records or not. Both sides encode and decode all of them on every fetch, so at moderate load, where
a fetch brings a gateway batch or two, that costs more than the records (docs/benchmark.md,
"Headroom"). With a session the broker keeps the partitions and their fetch offsets: a request names
only the partitions whose offset moved (and those to drop), and the answer only the partitions
with records or news (high watermark, error).

How it fits aiokafka: the fetcher still decides what to fetch (``_get_actions_per_node``, one fetch
in flight per broker) and still reads the answer (``_proc_fetch_request``, which finds each answered
partition's offset in ``request.topics``). Each request it builds becomes a ``SessionFetchRequest``
carrying the whole partition list as ``topics`` and its broker's session. The fetcher's client is
wrapped so that the session moves on only when the broker's answer is seen: a failed, cancelled or
refused request (``FETCH_SESSION_ID_NOT_FOUND``, ``INVALID_FETCH_SESSION_EPOCH``) starts a new
session with a full fetch. A broker that creates no session (one that speaks an older fetch
version, or answers with session id 0) keeps getting full fetches, as before.
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.protocol.fetch import FetchRequest

log = logging.getLogger(__name__)

TP = tuple[str, int]
INITIAL_EPOCH = 0  # with session id 0: a full fetch that asks the broker for a new session
MAX_EPOCH = 2**31 - 1


@dataclass(frozen=True)
class Plan:
    """What one request sends: the session it belongs to (0 for none), its epoch, the partitions
    with their fetch offsets (all of them on a full fetch) and those the broker should drop."""

    session_id: int
    epoch: int
    send: dict[TP, int]
    forgotten: list[TP]

    @property
    def full(self) -> bool:
        return self.epoch == INITIAL_EPOCH


class FetchSession:
    """One broker's fetch session, as this client knows it: the session id (0: none), the epoch of
    the next request and the fetch offset the broker holds for each partition."""

    def __init__(self, broker: int | str = "?") -> None:
        self.broker = broker
        self.id = 0
        self.epoch = INITIAL_EPOCH
        self.offsets: dict[TP, int] = {}
        self.full_fetches = 0
        self.incremental_fetches = 0

    def plan(self, wanted: dict[TP, int]) -> Plan:
        """The next request for ``wanted`` (partition -> fetch offset): everything if there is no
        session, else the partitions that are new or whose offset moved, and those no longer wanted."""
        if self.id == 0:
            # Shuffled, as aiokafka does, so that no partition is always first when an answer is
            # capped; within a session the broker takes turns over the partitions itself.
            return Plan(0, INITIAL_EPOCH, dict(random.sample(list(wanted.items()), len(wanted))), [])
        held = self.offsets
        send = {tp: offset for tp, offset in wanted.items() if held.get(tp) != offset}
        forgotten = [tp for tp in held if tp not in wanted]
        return Plan(self.id, self.epoch, send, forgotten)

    def settle(self, plan: Plan, wanted: dict[TP, int], error_code: int, session_id: int | None) -> None:
        """The broker answered ``plan`` with the top-level ``error_code`` and ``session_id`` (None:
        a fetch version without sessions)."""
        if plan.session_id != self.id or plan.epoch != self.epoch:
            self.reset()  # answered out of turn: the fetcher keeps one request in flight per broker
            return
        if error_code != 0 or session_id is None:
            if self.id:
                log.info("broker %s: fetch session %d ended (error code %d): fetching in full", self.broker, self.id, error_code)
            self.reset()
            return
        if plan.full:
            self.full_fetches += 1
            if session_id == 0:
                return  # the broker made no session: the next fetch is full again
            self.id = session_id
            log.info("broker %s: fetch session %d opened for %d partitions", self.broker, session_id, len(wanted))
        else:
            self.incremental_fetches += 1
            if session_id != self.id:
                self.reset()
                return
        self.epoch = 1 if self.epoch >= MAX_EPOCH else self.epoch + 1
        self.offsets = dict(wanted)

    def reset(self) -> None:
        """Forget the session: the next request is a full fetch asking for a new one."""
        self.id = 0
        self.epoch = INITIAL_EPOCH
        self.offsets = {}


def _by_topic(items: Iterable[tuple[TP, Any]]) -> list[tuple[str, list[Any]]]:
    grouped: dict[str, list[Any]] = {}
    for (topic, partition), value in items:
        grouped.setdefault(topic, []).append((partition, value))
    return list(grouped.items())


class SessionFetchRequest(FetchRequest):
    """aiokafka's fetch request in a session: ``topics`` is still every partition fetched (what
    the fetcher reads the answer against); what goes on the wire is the plan's."""

    def __init__(self, wanted: dict[TP, int], session: FetchSession, *, max_wait_ms: int, min_bytes: int,
                 max_bytes: int, isolation_level: int, partition_max_bytes: int, rack_id: str = "") -> None:
        plan = session.plan(wanted)
        # A full fetch names every partition, in the plan's shuffled order (the order it goes out in
        # without sessions too); the fetcher reads any answer against these.
        listed = plan.send if plan.full else wanted
        super().__init__(max_wait_ms, min_bytes, max_bytes, isolation_level,
                         [(topic, [(p, offset, partition_max_bytes) for p, offset in parts]) for topic, parts in _by_topic(listed.items())],
                         rack_id=rack_id)
        self.session = session
        self.wanted = wanted
        self.partition_max_bytes = partition_max_bytes
        self.plan = plan
        self.sent_version: int | None = None

    def build(self, request_struct_class: Any) -> Any:
        version = request_struct_class.API_VERSION
        self.sent_version = version
        if version < 7:
            return super().build(request_struct_class)  # no sessions: every partition
        most = self.partition_max_bytes
        fields = ((lambda p, offset: (p, -1, offset, -1, most)) if version >= 9  # v9 adds the leader epoch
                  else (lambda p, offset: (p, offset, -1, most)))
        topics = [(topic, [fields(p, offset) for p, offset in parts]) for topic, parts in _by_topic(self.plan.send.items())]
        forgotten = [(topic, [p for p, _ in parts]) for topic, parts in _by_topic((tp, None) for tp in self.plan.forgotten)]
        args: list[Any] = [-1, self._max_wait_ms, self._min_bytes, self._max_bytes, self._isolation_level,
                           self.plan.session_id, self.plan.epoch, topics, forgotten]
        if version >= 11:
            args.append(self._rack_id)
        return request_struct_class(*args)

    def settle(self, response: Any) -> None:
        session_id = getattr(response, "session_id", None) if (self.sent_version or 0) >= 7 else None
        self.session.settle(self.plan, self.wanted, getattr(response, "error_code", 0), session_id)


class _SessionClient:
    """The fetcher's view of aiokafka's client: a session request's answer (or failure) settles
    its session; everything else goes straight through."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.cluster = client.cluster  # read for every partition on every round; aiokafka sets it once

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def send(self, node_id: int, request: Any, **kwargs: Any) -> Any:
        if not isinstance(request, SessionFetchRequest):
            return await self._client.send(node_id, request, **kwargs)
        try:
            response = await self._client.send(node_id, request, **kwargs)
        except BaseException:
            request.session.reset()  # the broker may or may not have seen it
            raise
        request.settle(response)
        return response


class FetchBounds:
    """Topics whose partitions are not fetched while enough of their records wait to be handled.

    Faust reads ahead into an agent's stream buffer (its channel, up to ``stream_buffer_maxsize``
    records) as fast as the broker sends, and stops fetching a partition only when that buffer is
    nearly full; when it is full, the delivery of *every* partition waits for that agent. For an
    agent that works through a bulk load at a pace of its own (the credit fold during a reload:
    records of up to 1,000 events, about 100 KB each), that is the whole load in memory within
    seconds and the other agents' records delivered behind it (docs/benchmark.md, "The reload's
    first seconds"). A bound here keeps such a topic's partitions out of the fetch while ``waiting()``
    is at least ``most``: the broker keeps the rest, and nothing is paused or blocked in Faust.
    """

    def __init__(self) -> None:
        self._bounds: dict[str, tuple[Callable[[], int], int]] = {}
        self.holds: dict[str, int] = {}  # by topic: fetch rounds that left its partitions out

    def bound(self, topic: str, waiting: Callable[[], int], most: int) -> None:
        """Fetch ``topic``'s partitions only while ``waiting()`` (records buffered, not yet handled) is under ``most``."""
        if most < 1:
            raise ValueError(f"a fetch bound needs at least one record, got {most}")
        self._bounds[topic] = (waiting, most)

    def held(self, tp: Any) -> bool:
        bound = self._bounds.get(tp[0])
        if bound is None or bound[0]() < bound[1]:
            return False
        self.holds[tp[0]] = self.holds.get(tp[0], 0) + 1
        return True

    def __bool__(self) -> bool:
        return bool(self._bounds)


class _Rows:
    """The assignment's partitions with their state and leader, kept until the assignment or the
    cluster's metadata changes (aiokafka replaces both objects when they do)."""

    def __init__(self) -> None:
        self.assignment: Any = None
        self.metadata: Any = None
        self.rows: list[tuple[Any, Any, int | None]] = []

    def of(self, assignment: Any, cluster: Any) -> list[tuple[Any, Any, int | None]]:
        if assignment is not self.assignment or cluster._partitions is not self.metadata:
            leader_for = cluster.leader_for_partition
            self.rows = [(tp, assignment.state_value(tp), leader_for(tp)) for tp in assignment.tps]
            self.assignment, self.metadata = assignment, cluster._partitions
        return self.rows


def actions_per_node(fetcher: Any, assignment: Any, sessions: dict[int, FetchSession], rows: _Rows | None = None,
                     bounds: FetchBounds | None = None) -> tuple[Any, ...]:
    """aiokafka's ``Fetcher._get_actions_per_node`` (the same decisions, pinned in
    tests/unit/streams/runtime/test_faust_contract.py), with its fetch requests in sessions.

    It runs twice per fetch (once when the answer comes, once when its records are taken) over
    every partition the worker reads, so it does without aiokafka's per-partition debug log and
    method hops, and keeps each partition's state and leader until the assignment or the metadata
    changes. A full fetch's partitions are shuffled (``FetchSession.plan``); in a session the
    broker takes turns over them itself. A partition ``bounds`` holds is left out, as a paused one is."""
    fetchable: dict[int, list[tuple[Any, int]]] = {}
    awaiting_reset: dict[int, list[Any]] = collections.defaultdict(list)
    backoff_by_nodes: dict[int | None, list[float]] = {}  # aiokafka keys an unknown leader as None too
    resume_futures = []
    invalid_metadata = False
    records = fetcher._records
    in_flight = fetcher._in_flight
    select = fetcher._select_read_replica if fetcher._preferred_read_replica else None
    held = bounds.held if bounds else None
    for tp, tp_state, leader_id in (rows or _Rows()).of(assignment, fetcher._client.cluster):
        if held is not None and held(tp):
            continue
        node_id = select(tp) if select else leader_id
        if tp in records:
            # Records not yet taken hold back their node's next fetch, for at most the backoff.
            backoff = records[tp].calculate_backoff()
            if backoff:
                backoff_by_nodes.setdefault(node_id, []).append(backoff)
        elif node_id in in_flight:
            continue
        elif node_id is None or node_id == -1:
            invalid_metadata = True
        elif not tp_state.has_valid_position:
            if leader_id is None or leader_id == -1:  # offsets are listed by the leader only (KIP-392)
                invalid_metadata = True
            else:
                awaiting_reset[leader_id].append(tp)
        elif tp_state.paused:
            resume_futures.append(tp_state.resume_fut)
        else:
            fetchable.setdefault(node_id, []).append((tp, tp_state.position))

    fetch_requests = []
    for node_id, partition_data in fetchable.items():
        if node_id in backoff_by_nodes or node_id in awaiting_reset:
            continue
        session = sessions.get(node_id) or sessions.setdefault(node_id, FetchSession(node_id))
        fetch_requests.append((node_id, SessionFetchRequest(
            dict(partition_data), session, max_wait_ms=fetcher._fetch_max_wait_ms, min_bytes=fetcher._fetch_min_bytes,
            max_bytes=fetcher._fetch_max_bytes, isolation_level=fetcher._isolation_level,
            partition_max_bytes=fetcher._max_partition_fetch_bytes, rack_id=fetcher._client_rack or "")))
    backoff = min(map(max, backoff_by_nodes.values())) if backoff_by_nodes else fetcher._fetcher_timeout
    return fetch_requests, awaiting_reset, backoff, invalid_metadata, resume_futures


def install(fetcher: Any, bounds: FetchBounds | None = None) -> dict[int, FetchSession]:
    """Fetch through sessions from now on, not fetching what ``bounds`` holds; returns the
    sessions by broker id (for metrics)."""
    sessions: dict[int, FetchSession] = {}
    fetcher._client = _SessionClient(fetcher._client)
    rows = _Rows()
    fetcher._get_actions_per_node = lambda assignment: actions_per_node(fetcher, assignment, sessions, rows, bounds)
    return sessions
