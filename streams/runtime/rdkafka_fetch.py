"""The worker's records fetched by librdkafka (confluent-kafka's consumer) instead of aiokafka's fetcher.

aiokafka fetches in Python: every fetch request is built, sent, answered and decoded by the
interpreter, about 400-500 µs of CPU a fetch at moderate load, where a fetch brings a gateway batch
or two; librdkafka makes the same fetches in C for about a quarter of that (docs/benchmark.md,
"Cold caches"). Only the fetching moves: aiokafka's consumer keeps the group membership, Faust's
partition assignment, the committed offsets, offset resets and look-ups, and Faust reads records
through it as before.

How it fits aiokafka's ``Fetcher``: its background routine still runs and still resets positions
(committed offsets, ``auto_offset_reset``), but ``_get_actions_per_node`` is replaced by
``RdkafkaFeed.reconcile``, which sends no fetch; it makes librdkafka's assignment follow aiokafka's
(explicit assignment at aiokafka's positions, no group in librdkafka), seeks librdkafka where
aiokafka's position moved (a seek, or records dropped when paused or revoked), and pauses a
partition that Faust paused, that ``FetchBounds`` holds, or that has enough records waiting. A
thread waits on librdkafka (``poll`` releases the interpreter lock) and hands what it got to the
event loop, where ``RdkafkaFeed.feed`` adds each partition's records to the fetcher's buffer as
aiokafka's own ``FetchResult``: ``getmany`` then finds them as if aiokafka had fetched them, and moves
the positions it commits from.

The control calls (assign, seek, pause) are made on that thread between two polls: librdkafka's
consumer holds a call from another thread (``assign``) while one is in ``poll``. So records fetched
before a seek are never delivered after it: librdkafka drops those it still holds when it seeks, and
the feed drops those of a poll made before the partition's last assignment or seek took effect.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from aiokafka.consumer.fetcher import FetchResult
from aiokafka.structs import ConsumerRecord, TopicPartition
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import KafkaException
from confluent_kafka import TopicPartition as RdPartition
from confluent_kafka import libversion as librdkafka_version

from streams.runtime.fetchsession import FetchBounds

log = logging.getLogger(__name__)

Key = tuple[str, int]
POLL_S = 0.02  # the thread's longest wait in librdkafka: how soon it makes a control call
DRAIN = 1000  # records taken from librdkafka's queue at once, after the first
TIMESTAMP_TYPES = {1: 0, 2: 1}  # librdkafka's create / log-append time -> aiokafka's


class _Records:
    """One partition's records handed to aiokafka, iterated as its ``PartitionRecords``:
    ``next_fetch_offset`` is the position the records start at, then the offset after the last one
    taken (what aiokafka moves the partition's position to)."""

    __slots__ = ("_at", "_records", "end", "next_fetch_offset")

    def __init__(self, start: int, records: list[ConsumerRecord]) -> None:
        self.next_fetch_offset = start
        self._records = records
        self._at = 0
        self.end = records[-1].offset + 1

    def extend(self, records: list[ConsumerRecord]) -> None:
        self._records.extend(records)
        self.end = records[-1].offset + 1

    def waiting(self) -> int:
        return len(self._records) - self._at

    def __iter__(self) -> Iterator[ConsumerRecord]:
        return self

    def __next__(self) -> ConsumerRecord:
        if self._at >= len(self._records):
            raise StopIteration
        record = self._records[self._at]
        self._at += 1
        self.next_fetch_offset = record.offset + 1
        return record


def to_records(messages: list[Any]) -> tuple[dict[Key, list[ConsumerRecord]], list[Any]]:
    """librdkafka's messages as aiokafka's records, by partition in offset order, and the errors among them."""
    by_partition: dict[Key, list[ConsumerRecord]] = {}
    errors = []
    for m in messages:
        error = m.error()
        if error is not None:
            errors.append(error)
            continue
        key, value = m.key(), m.value()
        kind, timestamp = m.timestamp()
        topic, partition = m.topic(), m.partition()
        record = ConsumerRecord(topic, partition, m.offset(), timestamp, TIMESTAMP_TYPES.get(kind, 0), key, value, None,
                                len(key) if key is not None else -1, len(value) if value is not None else -1,
                                tuple(m.headers() or ()))
        found = by_partition.get((topic, partition))
        if found is None:
            by_partition[(topic, partition)] = [record]
        else:
            found.append(record)
    return by_partition, errors


class RdkafkaFeed:
    """librdkafka's fetches into an aiokafka ``Fetcher``'s buffer (see the module's docstring)."""

    def __init__(self, fetcher: Any, config: dict[str, Any], bounds: FetchBounds | None = None,
                 wanted: Callable[[Any], bool] = lambda tp: True, waiting_most: int = 4096,
                 consumer: Callable[[dict[str, Any]], Any] = RdConsumer) -> None:
        self.fetcher = fetcher
        self.bounds = bounds
        self.wanted = wanted  # whether Faust reads a partition now (it pauses some without telling aiokafka)
        self.waiting_most = waiting_most  # records of one partition handed over and not delivered, past which it is paused
        self.rk = consumer({
            **config,
            "group.id": config.get("group.id", "unused-assigned-partitions-only"),  # no group is joined: assign() only
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",  # aiokafka resets positions; librdkafka only if one goes out of range
            "fetch.wait.max.ms": fetcher._fetch_max_wait_ms,
            "fetch.min.bytes": fetcher._fetch_min_bytes,
            "fetch.max.bytes": fetcher._fetch_max_bytes,
            "max.partition.fetch.bytes": fetcher._max_partition_fetch_bytes,
            # librdkafka stops fetching a partition while this much waits in its own queue, for the
            # backoff below; the feed empties that queue as fast as it fills, and bounds what it hands on itself.
            "queued.min.messages": 10_000,
            "queued.max.messages.kbytes": 16_384,
            "fetch.queue.backoff.ms": 5,
        })
        self.fed: dict[Key, int] = {}  # assigned in librdkafka -> the offset the next record handed over must have at least
        self.paused: set[Key] = set()
        self.reseek: set[Key] = set()  # records were dropped: seek librdkafka back to aiokafka's position
        self.moved: dict[Key, int] = {}  # the control call (assign, seek) last made for a partition, by sequence number
        self.dirty = True  # aiokafka's positions moved, or records were dropped: reconcile at once
        self.seq = 0  # control calls asked for
        self.applied = 0  # control calls made (on the thread)
        self._requests: collections.deque[tuple[int, Callable[[Any, list[Any]], Any], list[Any]]] = collections.deque()
        self.polls = 0  # the thread's polls that brought records (for metrics and tests)
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rdkafka-fetch", daemon=True)

    def attach(self) -> None:
        """Take the fetcher's routine over: it reconciles instead of fetching, and runs when a
        position moved (a seek, an offset reset, records dropped) or its timeout passes (Faust's
        pauses, the bounds), not whenever a partition's records have all been taken (aiokafka's
        cue to fetch more: librdkafka fetches on its own)."""
        fetcher = self.fetcher
        notify, seek_to, request_offset_reset = fetcher._notify, fetcher.seek_to, fetcher.request_offset_reset

        def notify_moved(future: Any) -> None:
            if future is not fetcher._wait_consume_future or self.dirty:
                notify(future)

        def seek_and_reconcile(tp: Any, offset: int) -> None:
            self.dirty = True
            seek_to(tp, offset)

        def reset_and_reconcile(tps: Any, strategy: Any) -> Any:
            self.dirty = True
            return request_offset_reset(tps, strategy)

        fetcher._get_actions_per_node = self.reconcile
        fetcher._notify, fetcher.seek_to, fetcher.request_offset_reset = notify_moved, seek_and_reconcile, reset_and_reconcile

    # --- the thread -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        rk, loop, stop = self.rk, self.fetcher._loop, self._stop
        while not stop.is_set():
            applied = self._apply_requests()  # the polls below see their effect
            try:
                first = rk.poll(POLL_S)
                if first is None:
                    continue
                messages = [first, *rk.consume(DRAIN, 0)]
            except RuntimeError:  # the consumer was closed under us: stopping
                return
            try:  # converted on the event loop: this thread holds the interpreter lock as little as it can
                loop.call_soon_threadsafe(self.feed, applied, messages)
            except RuntimeError:  # the event loop closed
                return

    def _apply_requests(self) -> int:
        """Make the control calls the event loop asked for, in order; the last one's number."""
        rk, requests = self.rk, self._requests
        while requests:
            seq, call, partitions = requests.popleft()
            try:
                call(rk, partitions)
            except KafkaException as exc:
                log.warning("librdkafka %s %s refused: %s", call.__name__, partitions, exc)
            self.applied = seq
        return self.applied

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5 * POLL_S + 5)
        self.rk.close()

    # --- on the event loop ------------------------------------------------------------------
    def feed(self, applied: int, messages: list[Any]) -> None:
        """Add what one poll (made after control call ``applied``) brought to the fetcher's buffer
        and wake whoever waits for records."""
        by_partition, errors = to_records(messages)
        for error in errors:
            self.errors += 1
            log.warning("librdkafka fetch: %s", error)
        subscription = self.fetcher._subscriptions.subscription
        assignment = subscription.assignment if subscription is not None else None
        if assignment is None or not assignment.active:
            self.reseek.update(k for k in by_partition if k in self.fed)
            return
        buffered = self.fetcher._records
        added = False
        hold: list[Key] = []
        for key, records in by_partition.items():
            fed = self.fed.get(key)
            if fed is None:
                continue  # no longer assigned
            if self.moved.get(key, 0) > applied or key in self.reseek:
                continue  # polled before a seek or an assignment took effect, or to be fetched again
            if records[0].offset < fed:
                records = [r for r in records if r.offset >= fed]
                if not records:
                    continue
            tp = TopicPartition(*key)
            result = buffered.get(tp)
            ours = result._partition_records if type(result) is FetchResult else None
            state = assignment.state_value(tp)
            if isinstance(ours, _Records) and ours.end == fed:
                ours.extend(records)
            elif result is None:
                if state.paused or not state.has_valid_position or state.position != fed:
                    self.reseek.add(key)  # aiokafka's position moved since: fetch from it
                    continue
                ours = _Records(fed, records)
                buffered[tp] = FetchResult(tp, assignment=assignment, partition_records=ours, backoff=0)
            else:
                self.reseek.add(key)  # something else is buffered for it: fetch again once it is gone
                continue
            self.fed[key] = high = records[-1].offset + 1
            if state.highwater is None or state.highwater < high:
                state.highwater = high
            if key not in self.paused and self._hold(tp, state, ours.waiting()):
                hold.append(key)  # at once: the fetcher's routine reconciles only now and then
            added = True
        self.polls += 1
        if hold:
            self._request(_pause, [RdPartition(*key) for key in hold])
            self.paused.update(hold)
        if added:
            for waiter in self.fetcher._fetch_waiters:
                self.fetcher._notify(waiter)
        if self.reseek:
            self.dirty = True
            self.fetcher._notify(self.fetcher._wait_consume_future)

    def _hold(self, tp: Any, state: Any, waiting: int) -> bool:
        """Whether librdkafka should not fetch ``tp`` now."""
        return (state.paused or waiting >= self.waiting_most or not self.wanted(tp)
                or (self.bounds is not None and self.bounds.held(tp)))

    def reconcile(self, assignment: Any) -> tuple[Any, ...]:
        """The fetcher routine's ``_get_actions_per_node``: no fetch requests, the offset resets
        aiokafka's own would make, and librdkafka's assignment, positions and pauses brought in line."""
        fetcher = self.fetcher
        self.dirty = False
        awaiting_reset: dict[int, list[Any]] = collections.defaultdict(list)
        resume_futures = []
        invalid_metadata = False
        buffered = fetcher._records
        cluster = fetcher._client.cluster
        wanted: set[Key] = set()
        assign, seek, pause, resume = [], [], [], []
        for tp in assignment.tps:
            state = assignment.state_value(tp)
            key = (tp.topic, tp.partition)
            if not state.has_valid_position:
                leader = cluster.leader_for_partition(tp)
                if leader is None or leader == -1:
                    invalid_metadata = True
                elif leader not in fetcher._in_flight:
                    awaiting_reset[leader].append(tp)
                continue
            wanted.add(key)
            position = state.position
            if key not in self.fed:
                assign.append((key, position))
            elif tp not in buffered and (key in self.reseek or self.fed[key] != position):
                seek.append((key, position))
            if state.paused:
                resume_futures.append(state.resume_fut)
            result = buffered.get(tp)
            waiting = result._partition_records.waiting() if type(result) is FetchResult and isinstance(
                result._partition_records, _Records) else 0
            hold = self._hold(tp, state, waiting)
            if hold and key not in self.paused:
                pause.append(key)
            elif not hold and key in self.paused:
                resume.append(key)
        gone = [key for key in self.fed if key not in wanted]
        self._apply(gone, assign, seek, pause, resume)
        return [], awaiting_reset, fetcher._fetcher_timeout, invalid_metadata, resume_futures

    def _request(self, call: Callable[[Any, list[Any]], Any], partitions: list[Any]) -> int:
        self.seq += 1
        self._requests.append((self.seq, call, partitions))
        return self.seq

    def _apply(self, gone: list[Key], assign: list[tuple[Key, int]], seek: list[tuple[Key, int]],
               pause: list[Key], resume: list[Key]) -> None:
        if gone:
            self._request(_unassign, [RdPartition(*key) for key in gone])
            for key in gone:
                self.fed.pop(key, None)
                self.paused.discard(key)
                self.reseek.discard(key)
                self.moved.pop(key, None)
        if assign:
            seq = self._request(_assign, [RdPartition(topic, partition, offset) for (topic, partition), offset in assign])
            for key, offset in assign:
                self.fed[key] = offset
                self.moved[key] = seq
        for key, offset in seek:
            self.moved[key] = self._request(_seek, [RdPartition(*key, offset)])
            self.fed[key] = offset
            self.reseek.discard(key)
        if pause:
            self._request(_pause, [RdPartition(*key) for key in pause])
            self.paused.update(pause)
        if resume:
            self._request(_resume, [RdPartition(*key) for key in resume])
            self.paused.difference_update(resume)


# The control calls, made on the feed's thread: librdkafka's consumer waits in a call from one
# thread (assign) while another thread is in ``poll``.
def _assign(rk: Any, partitions: list[Any]) -> None:
    rk.incremental_assign(partitions)


def _unassign(rk: Any, partitions: list[Any]) -> None:
    rk.incremental_unassign(partitions)


def _seek(rk: Any, partitions: list[Any]) -> None:
    try:
        rk.seek(partitions[0])
    except KafkaException:  # not fetching yet: assign it afresh at the offset
        rk.incremental_unassign([RdPartition(partitions[0].topic, partitions[0].partition)])
        rk.incremental_assign(partitions)


def _pause(rk: Any, partitions: list[Any]) -> None:
    rk.pause(partitions)


def _resume(rk: Any, partitions: list[Any]) -> None:
    rk.resume(partitions)


def install(fetcher: Any, config: dict[str, Any], bounds: FetchBounds | None = None,
            wanted: Callable[[Any], bool] = lambda tp: True) -> RdkafkaFeed:
    """Fetch ``fetcher``'s records with librdkafka from now on (``config``: its connection
    settings), only of the partitions ``wanted`` and not what ``bounds`` holds; the feed stops
    when the fetcher closes."""
    feed = RdkafkaFeed(fetcher, config, bounds, wanted)
    feed.attach()
    close = fetcher.close

    async def close_both() -> None:
        try:
            await close()
        finally:
            feed.stop()

    fetcher.close = close_both
    feed.start()
    log.info("fetching with librdkafka %s", librdkafka_version()[0])
    return feed
