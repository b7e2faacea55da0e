"""The worker's at-least-once protocol, in one object: nothing is committed whose outputs are not
on the broker (in the spirit of Quix Streams' ``checkpointing/checkpoint.py``)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.outputs import OutputBatch

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    """The broker did not acknowledge an output batch: offsets must not be committed past it."""


class Checkpoint:
    """Output batches handed to the producer and not yet acknowledged, across all agents, and the
    guard that holds Faust's offset commit back until they are.

    Order of operations for micro-batch N of one agent (``Topology._run_batch``):

    1. Handle. ``take_batches`` (``streams.runtime.batching``) yields N's events, and the handler
       turns them, synchronously, into an ``OutputBatch``: instructions, dead letters, and the
       changelog record of every table write. A table write updates the table's local store at
       once (``streams.runtime.tables``), so N+1 reads what N wrote.
    2. Wait for N-1. ``produce`` first awaits the deliveries of the agent's previous batch: one
       batch in flight per agent, so memory stays bounded, and a failed delivery raises in the
       agent before it sends anything after it (the agent crashes on N, see 4).
    3. Produce. N's records go to Faust's producer as one record batch per topic partition
       (``streams.runtime.producer``); the delivery futures are tracked here and returned to the
       agent, which passes them back in at step 2 of N+1. N+1 is handled while N is on the wire.
    4. Acknowledge. When the agent asks for N+1, ``take_batches`` acks N's events to Faust. A batch
       whose agent crashed or was stopped is never acked. (A handler that raises is first undone
       and its batch handled record by record, ``streams.isolation``; when the failure cannot be
       pinned on records the worker exits with ``exit_hard``, acking and committing nothing.)
    5. Commit. Every commit Faust makes (its commit timer, on stop, after an agent error) ends in
       the consumer's ``_commit_offsets`` (``streams.runtime.consumer``), which first calls
       ``may_commit``: it awaits every delivery tracked so far, of every agent; if one failed (an
       error or a cancellation) it crashes the worker and commits nothing, then or later.
       Otherwise Faust commits, per input partition, the acknowledged offsets up to the first
       unacknowledged one; the in-order consumer commits nothing while the record at the
       committed offset is unacknowledged.
    6. Rebalance. When the group revokes the partitions, the consumer rejoins only once every
       batch handed to ``produce`` so far is acknowledged (``before_rebalance``), so the tables
       recovered after the assignment hold every decision made before it.

    Faust acks N's events (4) before the broker acknowledges N's outputs, so the commit, not the
    ack, is where the protocol waits; and N's deliveries are tracked (3) before its events are
    acked (4), so a commit that covers N's offsets always waits for N's outputs. After a crash the
    inputs past the last commit are read again, and ``decision.flow`` makes a re-delivered input
    re-emit the same bytes. Timers send their output through ``produce`` too and await it, so a
    commit also waits for a scan timeout's instruction and its table writes.
    """

    def __init__(self, exit: Callable[[BaseException], None] | None = None) -> None:
        # How the worker leaves when its outputs cannot be delivered before a rebalance (tests replace it).
        self.exit: Callable[[BaseException], None] = exit or exit_hard
        self._pending: set[asyncio.Future] = set()
        self.failure: BaseException | None = None  # the first failed delivery; it sticks
        # Micro-batches handed to a handler and not yet decided and delivered: batch number -> when
        # it was handed (monotonic seconds). At most two per agent (one handled, one in flight).
        self._undecided: dict[int, float] = {}
        self._handed = itertools.count()

    async def produce(self, app: Any, out: OutputBatch, previous: Sequence[asyncio.Future]) -> list[asyncio.Future]:
        """Steps 2 and 3: await ``previous`` (the agent's last batch: raises if it was not
        delivered), then hand ``out`` to the producer and track its deliveries; returns them,
        not awaited. Until ``out`` is handed over it counts as pending too (``drain``): a batch
        decided and waiting behind its predecessor, or held up by a full producer queue, is as
        much in flight as one on the wire."""
        handing: asyncio.Future = asyncio.get_running_loop().create_future()
        self.track([handing])
        try:
            if previous:
                await asyncio.gather(*previous)
            futures = await out.send(app)
            self.track(futures)
            return futures
        finally:
            # A batch that never reached the producer leaves nothing in flight; its events are not
            # acknowledged (the agent stops), so no commit covers them.
            handing.set_result(None)
            self._pending.discard(handing)

    def track(self, futures: Sequence[asyncio.Future]) -> None:
        for future in futures:
            if not future.done():
                self._pending.add(future)
                future.add_done_callback(self._done)
            else:
                self._done(future)

    def _done(self, future: asyncio.Future) -> None:
        self._pending.discard(future)
        if self.failure is None:
            if future.cancelled():
                self.failure = asyncio.CancelledError("delivery cancelled")
            elif future.exception() is not None:
                self.failure = future.exception()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def wait_delivered(self) -> None:
        """Until every batch tracked so far is acknowledged; raises DeliveryFailed if one (now or
        before) was not."""
        if self._pending:
            await asyncio.wait(list(self._pending))
        if self.failure is not None:
            raise DeliveryFailed(f"an output batch was not delivered: {self.failure!r}") from self.failure

    async def drain(self, timeout_s: float) -> None:
        """Until nothing is in flight: every batch produced so far, and every batch handed to
        ``produce`` meanwhile, acknowledged. Raises DeliveryFailed if one was not, or if some are
        still unacknowledged after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            for future in [f for f in self._pending if f.done()]:
                self._done(future)  # its callback may not have run yet
            if not self._pending:
                break
            left = deadline - loop.time()
            if left <= 0:
                raise DeliveryFailed(f"{len(self._pending)} output batches still unacknowledged after {timeout_s:g} s")
            await asyncio.wait(list(self._pending), timeout=left)
        if self.failure is not None:
            raise DeliveryFailed(f"an output batch was not delivered: {self.failure!r}") from self.failure

    async def before_rebalance(self, timeout_s: float) -> None:
        """Called once Faust has stopped the streams for a rebalance, before the worker rejoins the
        group: every output is on the broker before any partition is assigned and its tables are
        recovered, or the worker exits (``exit``, the supervisor restarts it).

        A rebalance revokes every partition and recovers the tables of those assigned from their
        changelogs, and the inputs past the last commit are read again. An output still in flight
        then is missing from what recovery reads: a scan's final instruction and its state on the
        way to a frozen leader, say. The owner after the rebalance (this worker or another) finds
        the machine-check still awaiting its scan, its deadline fires before the scan is read again
        and a timeout is decided -- and then the first final lands too: two outcomes for one
        declaration."""
        in_flight, started = len(self._pending), time.monotonic()
        try:
            await self.drain(timeout_s)
        except DeliveryFailed as exc:
            log.critical("rebalance: outputs not on the broker, the worker leaves rather than rejoin: %s", exc)
            self.exit(exc)
            return
        if in_flight:
            log.info("rebalance: %d output batches were in flight, all acknowledged %.2f s after the revocation",
                     in_flight, time.monotonic() - started)

    async def may_commit(self, crash: Callable[[BaseException], Awaitable[Any]]) -> bool:
        """Step 5's guard: True once every tracked delivery is on the broker; if one failed, logs,
        calls ``crash`` (the consumer's) with the error and returns False."""
        try:
            await self.wait_delivered()
        except Exception as exc:  # noqa: BLE001 - DeliveryFailed: never commit past lost outputs
            log.error("not committing offsets: %s", exc)
            await crash(exc)
            return False
        return True

    # ---- the oldest undecided micro-batch (gauge customs_oldest_undecided_seconds) ----------------
    # A batch is undecided from when it is handed to its handler until the broker has acknowledged
    # its outputs. One that never gets there (its agent stopped on it, its delivery hangs) keeps the
    # age growing, so a stall cannot stay silent.

    def handed(self) -> int:
        """A micro-batch goes to its handler; returns its number for ``settle``."""
        number = next(self._handed)
        self._undecided[number] = time.monotonic()
        return number

    def settle(self, number: int, futures: Sequence[asyncio.Future]) -> None:
        """Batch ``number`` is decided once ``futures`` (its deliveries) have all succeeded; a failed
        one keeps it undecided (the worker stops on a failed delivery anyway)."""
        if not futures:
            self._undecided.pop(number, None)
            return
        left = set(futures)

        def done(future: asyncio.Future) -> None:
            left.discard(future)
            if not left and all(not f.cancelled() and f.exception() is None for f in futures):
                self._undecided.pop(number, None)

        for future in futures:
            future.add_done_callback(done)

    def oldest_undecided_s(self) -> float:
        """Seconds since the oldest undecided micro-batch was handed to its handler (0: none).
        Safe from the metrics server's thread: one C-level copy of the values."""
        started = list(self._undecided.values())
        return time.monotonic() - min(started) if started else 0.0


def exit_hard(reason: BaseException, code: int = 1) -> None:
    """Leave the process at once, as ``kill -9`` would, but with exit code ``code`` and the log
    flushed: no stream is stopped, no event acknowledged and no offset committed on the way out
    (Faust's own stop would restart the agent, acknowledge records nobody handled and commit
    them). The supervisor restarts the worker, which reads everything past the last commit again
    (the at-least-once protocol above; ``decision.flow`` re-emits what was already decided)."""
    log.critical("worker exits with code %d, committing nothing more: %s", code, reason)
    logging.shutdown()
    os._exit(code)
