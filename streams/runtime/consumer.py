"""Adjustments to Faust's aiokafka consumer, found by measurement and fault injection.

1. Fetch wait. Faust hard-codes ``fetch_max_wait_ms=1500``. A broker answers a fetch as soon as data
   arrives, but some (the embedded Tansu among them) hold it for the whole wait, which put 0.5-1.5 s
   of pure waiting into every decision at low traffic. The wait comes from settings.

2. Contiguous consumption of input topics. faust-streaming 0.15.3 loses records around rebalances
   (seen in about half of the kill -9 runs on Apache Kafka, tests/integration/test_faults.py): on
   revoke ``getmany`` drops records it already fetched without moving the fetch position back; after
   the reassignment ``perform_seek`` goes to the committed offset but the next record delivered can
   be further on; ``_add_gap`` then marks the skipped offsets as processed and ``_new_offset``
   commits past records nobody acknowledged. Here every input partition is read strictly in order:
   the expected next offset is set from the committed offset on seek, a record beyond it makes the
   consumer seek back, records dropped by a flow stop are re-fetched, gaps are not treated as
   processed, and nothing is committed while the first unacknowledged offset is not the committed
   one. (Input topics here are never compacted nor written transactionally, so their offsets are
   contiguous; changelog topics keep Faust's own handling.)
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)


def _is_input(tp: Any) -> bool:
    return not tp.topic.endswith("-changelog")


def with_fetch_wait(max_wait_ms: int, deliveries: Any = None) -> type:
    """The worker's Faust consumer class (``deliveries``: a ``streams.outputs.Deliveries`` that must
    be acknowledged before any offset is committed)."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = max_wait_ms  # read when the consumer starts its fetcher
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def __post_init__(self) -> None:
            super().__post_init__()
            self._expected: dict[Any, int] = {}  # input partition -> next offset to deliver

        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
            if not _is_input(tp):
                await super()._add_gap(tp, offset_from, offset_to)
            # Input offsets are contiguous: a "gap" is records not delivered yet, never processed.

        def _new_offset(self, tp: Any) -> int | None:
            acked = self._acked[tp]
            committed = self._committed_offset[tp]
            if _is_input(tp) and acked and committed is not None and min(acked) > committed:
                return None  # the head of the partition was not processed: commit nothing past it
            return super()._new_offset(tp)

        async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
            # Agents send outputs without waiting (one micro-batch in flight) and Faust has acked
            # those inputs already: commit only once everything sent so far is on the broker.
            if deliveries is not None:
                try:
                    await deliveries.wait()
                except Exception as exc:  # noqa: BLE001 - DeliveryFailed: never commit past lost outputs
                    log.error("not committing offsets: %s", exc)
                    await self.crash(exc)
                    return False
            return await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)

        async def perform_seek(self) -> None:
            await super().perform_seek()
            for tp, offset in self._committed_offset.items():
                if offset is not None and _is_input(tp):
                    self._expected[tp] = offset

        async def on_partitions_revoked(self, revoked: Any) -> None:
            for tp in revoked:
                self._expected.pop(tp, None)
            await super().on_partitions_revoked(revoked)

        async def _seek_back(self, tp: Any, offset: int, why: str) -> None:
            try:
                await self.seek(tp, offset)
                self._expected[tp] = offset
                log.info("%s[%d]: %s, re-reading from offset %d", tp.topic, tp.partition, why, offset)
            except Exception as exc:  # noqa: BLE001 - the next fetch retries; nothing is committed past it
                log.warning("%s[%d]: %s, seek back to %d failed: %r", tp.topic, tp.partition, why, offset, exc)

        async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:  # type: ignore[override]
            # Faust's getmany (faust/transport/consumer.py), with in-order delivery of input partitions.
            records, active_partitions = await self._wait_next_records(timeout)
            generation_id = self.app.consumer_generation_id
            if records is None or self.should_stop:
                return
            if not self.flow_active:
                try:
                    await self.perform_seek()
                except Exception as exc:  # noqa: BLE001
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
                    if want is not None and _is_input(tp):
                        if record.offset < want:
                            last[tp] = record.offset
                            continue  # already delivered
                        if record.offset > want:
                            skip.add(tp)
                            await self._seek_back(tp, want, f"offset jumped to {record.offset}")
                            continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    last[tp] = record.offset
                    if _is_input(tp):
                        self._expected[tp] = record.offset + 1
                    yield tp, to_message(tp, record)
            # Records fetched but not delivered (flow stopped, rebalance): fetch them again.
            for tp, batch in records.items():
                if tp in skip or not _is_input(tp):
                    continue
                seen = last.get(tp)
                dropped = [r.offset for r in batch if seen is None or r.offset > seen]
                if dropped and (active_partitions is None or tp in active_partitions or tp in self._buffered_partitions):
                    await self._seek_back(tp, dropped[0], why)

    return Consumer
