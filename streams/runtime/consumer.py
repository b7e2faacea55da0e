"""The worker's Faust consumer: Faust's aiokafka consumer with these changes.

1. Fetch wait. Faust hard-codes aiokafka's ``fetch_max_wait_ms`` at 1500. A broker answers a fetch
   as soon as data arrives, but some (the embedded Tansu among them) hold it for the whole wait,
   which puts up to that wait into every decision at low traffic. The wait comes from settings.
   So does aiokafka's prefetch backoff (100 ms by default): while records fetched from a broker
   wait to be delivered, aiokafka sends that broker no fetch, for any partition, until that long
   after they came. When the event loop is busy (a credit reload's fold shares it) fetching and
   delivering take turns and the declarations wait for both; a shorter backoff fetches while they
   wait, but at moderate load it also sends fetches that are still in flight when the waiting
   partitions are ready for their next one (docs/benchmark.md, "Credit reload").

2. Input partitions are read strictly in order. Around a rebalance Faust's consumer can skip
   records and commit past them: on revoke ``getmany`` drops records it already fetched without
   moving the fetch position back; after the reassignment ``perform_seek`` goes to the committed
   offset, but the next record delivered can be further on; ``_add_gap`` then marks the skipped
   offsets as processed, and ``_new_offset`` commits past records nobody acknowledged (the
   kill -9 runs of tests/integration/test_faults.py catch it). Here the expected next offset of
   each input partition is set from the committed offset on seek; a record beyond it makes the
   consumer seek back to it; records fetched but not delivered (flow stopped, generation changed)
   are fetched again; gaps are never treated as processed; and nothing is committed while the
   record at the committed offset is unacknowledged. Input topics here are never compacted nor
   written transactionally, so their offsets are contiguous; changelog topics keep Faust's own
   handling.

3. Commit guard. ``_commit_offsets`` commits only once the ``Checkpoint``
   (``streams.runtime.checkpoint``) has every output sent so far on the broker, and crashes the
   worker instead if one was lost.

4. Nothing in flight across a rebalance. Once Faust has stopped the streams for a revocation, the
   consumer waits until the ``Checkpoint`` has every output on the broker before it rejoins the
   group (``Checkpoint.before_rebalance``), so the tables recovered after the assignment hold every
   decision made before it; the worker exits instead if they are not delivered in time. Faust's own
   producer flush there waits only for records not yet sent, not for requests on the wire.

5. One thread. Faust runs its aiokafka consumer in a thread of its own with its own event loop, and
   hands every fetch, seek and commit across: a future, ``call_soon_threadsafe`` and a self-pipe
   wake-up each way, per fetch. At moderate load a fetch brings a handful of declarations, so the
   hand-offs and the two threads taking turns with the interpreter lock cost more than the
   declarations (docs/benchmark.md, "Headroom"). With ``in_loop`` the consumer's service runs on the
   worker's own event loop and its calls are awaited directly: the same aiokafka consumer, fetcher,
   group coordinator and Faust bookkeeping, without the thread. A handler then holds up heartbeats
   while it runs, which micro-batches weighed in declarations (``streams.limits``) keep to a small
   fraction of the session timeout.

6. Fetch sessions. aiokafka names every partition the worker reads in every fetch, and the broker
   answers for each; in a Kafka fetch session (KIP-227) only the partitions that moved travel
   (``streams.runtime.fetchsession``). The same fetch loop leaves out the partitions of a topic whose
   agent already has enough of its records waiting (``FetchBounds``: the credit fold's batches).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service
from mode.utils.futures import maybe_async

from streams.runtime import fetchsession
from streams.runtime.checkpoint import Checkpoint
from streams.runtime.tables import is_changelog

log = logging.getLogger(__name__)


def is_input(tp: Any) -> bool:
    return not is_changelog(tp.topic)


def head_unacknowledged(acked: Sequence[int], committed: int | None) -> bool:
    """Whether the partition's first acknowledged offset lies beyond its committed offset (the
    next one to process): the record at the head is not acknowledged, so nothing may be committed."""
    return bool(acked) and committed is not None and min(acked) > committed


def in_order_consumer(max_wait_ms: int, checkpoint: Checkpoint | None = None, rebalance_delivery_s: float = 30.0,
                      min_bytes: int = 1, in_loop: bool = True, prefetch_backoff_ms: int = 100,
                      sessions: bool = True, bounds: fetchsession.FetchBounds | None = None) -> type:
    """The worker's Faust consumer class, for ``app.transport.Consumer``: fetches wait at most
    ``max_wait_ms`` for ``min_bytes`` of records, records waiting to be delivered hold up the next
    fetch from their broker for at most ``prefetch_backoff_ms``, input partitions are delivered and committed strictly in order, no offset
    is committed before ``checkpoint`` (if given) has every output sent so far delivered, and no
    rebalance proceeds before it has them all delivered (at most ``rebalance_delivery_s``, then
    the worker exits). With ``sessions`` fetches go through incremental fetch sessions (point 6),
    leaving out the partitions ``bounds`` holds."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = max_wait_ms  # read when the consumer starts its fetcher
            consumer._fetch_min_bytes = min_bytes
            return consumer

        async def on_start(self) -> None:
            await super().on_start()  # starts the aiokafka consumer, which builds its fetcher
            fetcher = self._ensure_consumer()._fetcher
            fetcher._prefetch_backoff = prefetch_backoff_ms / 1000
            if sessions:
                consumer: Any = self.consumer
                consumer.fetch_sessions = fetchsession.install(fetcher, bounds)

    class InLoopConsumerThread(ConsumerThread):
        """Faust's consumer thread as a plain service on the worker's event loop (point 5 above)."""

        wait_for_shutdown = False  # nothing in another thread to wait for

        def __init__(self, consumer: Any, *, loop: Any, beacon: Any) -> None:
            super().__init__(consumer, loop=loop, thread_loop=loop, beacon=beacon)

        async def start(self) -> None:
            self._thread_started.set()  # what ServiceThread.maybe_start looks at
            await Service.start(self)  # on_start creates and starts the aiokafka consumer on this loop

        async def call_thread(self, fun: Any, *args: Any, **kwargs: Any) -> Any:
            return await maybe_async(fun(*args, **kwargs))

        async def cast_thread(self, fun: Any, *args: Any, **kwargs: Any) -> None:
            await maybe_async(fun(*args, **kwargs))

        def _stopped_set(self) -> None:
            self._stopped.set()

        async def on_stop(self) -> None:
            await self.on_thread_stop()  # stops the aiokafka consumer (leaving the group)

        # ServiceThread leaves these to its thread; here Service's own run them.
        async def _stop_children(self) -> None:
            await self._default_stop_children()

        async def _stop_futures(self) -> None:
            await self._default_stop_futures()

        async def _stop_exit_stacks(self) -> None:
            await self._default_stop_exit_stacks()

    class Consumer(faust_aiokafka.Consumer):
        def __post_init__(self) -> None:
            super().__post_init__()
            self._expected: dict[Any, int] = {}  # input partition -> next offset to deliver
            self.fetch_sessions: dict[int, fetchsession.FetchSession] = {}  # by broker, once started (point 6)

        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            if in_loop:
                return InLoopConsumerThread(self, loop=self.loop, beacon=self.beacon)
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
            if not is_input(tp):
                await super()._add_gap(tp, offset_from, offset_to)
            # Input offsets are contiguous: a "gap" is records not delivered yet, never processed.

        def _new_offset(self, tp: Any) -> int | None:
            if is_input(tp) and head_unacknowledged(self._acked[tp], self._committed_offset[tp]):
                return None  # the head of the partition was not processed: commit nothing past it
            return super()._new_offset(tp)

        async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
            if checkpoint is not None and not await checkpoint.may_commit(self.crash):
                return False
            return await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)

        async def perform_seek(self) -> None:
            await super().perform_seek()
            for tp, offset in self._committed_offset.items():
                if offset is not None and is_input(tp):
                    self._expected[tp] = offset

        async def on_partitions_revoked(self, revoked: Any) -> None:
            for tp in revoked:
                self._expected.pop(tp, None)
            await super().on_partitions_revoked(revoked)  # Faust stops the streams and drains the agents
            if checkpoint is not None:
                await checkpoint.before_rebalance(rebalance_delivery_s)

        async def _seek_back(self, tp: Any, offset: int, why: str) -> None:
            try:
                await self.seek(tp, offset)
                self._expected[tp] = offset
                log.info("%s[%d]: %s, re-reading from offset %d", tp.topic, tp.partition, why, offset)
            except Exception as exc:  # noqa: BLE001 - the next fetch retries; nothing is committed past it
                log.warning("%s[%d]: %s, seek back to %d failed: %r", tp.topic, tp.partition, why, offset, exc)

        async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
            # Faust's getmany (faust/transport/consumer.py), with in-order delivery of input partitions.
            records, active_partitions = await self._wait_next_records(timeout)
            generation_id = self.app.consumer_generation_id
            if records is None or self.should_stop:
                return
            if not self.flow_active:
                try:
                    await self.perform_seek()
                except Exception as exc:  # noqa: BLE001 - as Faust's getmany: the next fetch seeks again
                    self.log.warning(f"exception performing seek when flow not active {exc}")
                return
            to_message = self._to_message
            last: dict[Any, int] = {}
            skip: set[Any] = set()
            why = "fetched records not delivered"
            for tp, record in self.scheduler.iterate(records):
                if not self.flow_active:
                    why = "flow stopped"
                    break
                if self.app.consumer_generation_id != generation_id:
                    why = "generation changed"
                    break
                if tp in skip:
                    continue
                if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
                    want = self._expected.get(tp)
                    if want is not None and is_input(tp):
                        if record.offset < want:
                            last[tp] = record.offset
                            continue  # already delivered
                        if record.offset > want:
                            skip.add(tp)
                            await self._seek_back(tp, want, f"offset jumped to {record.offset}")
                            continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    last[tp] = record.offset
                    if is_input(tp):
                        self._expected[tp] = record.offset + 1
                    yield tp, to_message(tp, record)
            # Records fetched but not delivered (flow stopped, rebalance): fetch them again.
            for tp, batch in records.items():
                if tp in skip or not is_input(tp):
                    continue
                seen = last.get(tp)
                dropped = [r.offset for r in batch if seen is None or r.offset > seen]
                if dropped and (active_partitions is None or tp in active_partitions or tp in self._buffered_partitions):
                    await self._seek_back(tp, dropped[0], why)

    return Consumer
