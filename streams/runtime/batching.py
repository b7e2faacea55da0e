"""Micro-batches from a Faust stream, without polling while the stream is quiet.

Faust's ``Stream.take_events(max_, within)`` wakes every ``within`` seconds whether or not an
event came: with five agents and a 5 ms window that is 1,000 wake-ups a second, each a few asyncio
futures and a timer, which is most of an idle worker's CPU (docs/benchmark.md).
Under load the quiet agents (risk lists, inspection results, centralised declarations, mostly
credit events too) keep paying it beside the busy one.

``take_batches`` is Faust's ``Stream.take_events`` (faust/streams.py) with one change:
when its buffer is empty it waits for the first event without a timeout, and only then gives the
batch ``within`` seconds to fill. While events keep arriving the two behave the same: the window
starts when the agent comes back for the next batch.

A batch is bounded by weight, not by count: ``weight(event)`` says how much an event counts
against ``max_`` (default 1 each). An agent whose records carry many declarations (a gateway batch
record, a centralised declaration) weighs each by the declarations it may carry, so one micro-batch
holds at most ``max_`` declarations; an event heavier than ``max_`` on its own is a batch by itself.

The events of a batch are acknowledged when the agent comes back for the next batch, as in
``take_events``, but not when the agent crashed or was stopped while handling it: ``take_events``
acks them on the way out too, which lets the consumer commit past a batch whose outputs were never
sent. Here that batch stays unacknowledged, nothing is committed past it, and it is read again
(step 4 of the protocol in ``streams.runtime.checkpoint``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust
from mode.utils.futures import notify


class Waiting:
    """How many records wait in the stream buffer ``take_batches`` reads (0 until it starts): the
    channel Faust delivers an agent's records to, which they leave as the agent takes them."""

    def __init__(self) -> None:
        self._queue: Any = None

    def __call__(self) -> int:
        return 0 if self._queue is None else int(self._queue.qsize())


async def take_batches(stream: faust.StreamT, max_: int, within: float,
                       weight: Callable[[faust.EventT], int] | None = None,
                       waiting: Waiting | None = None) -> AsyncIterator[list[faust.EventT]]:
    """Lists of events weighing up to ``max_`` together (``weight``: 1 per event by default; a
    single heavier event makes a list of its own); a list is yielded ``within`` seconds after the
    agent asked for it (or after its first event, when none was waiting), or as soon as it is full.
    ``waiting``, if given, counts the records buffered for the stream from then on."""
    s: Any = stream  # Faust's Stream: the buffering hooks below are its own (see take_events)
    events: list[faust.EventT] = []
    total = 0  # the weight of ``events``
    arrived = asyncio.Event()  # the buffer holds at least one event
    full = asyncio.Event()
    consumed = asyncio.Event()
    consuming: asyncio.Future | None = None  # set while the agent handles a batch: hold new events

    async def hand_over() -> None:
        full.set()
        consumed.clear()
        await s.wait(consumed)

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming, total
        if consuming is not None:
            try:
                await consuming
            finally:
                consuming = None
        event = s.current_event
        if event is None:
            raise RuntimeError("take_batches found current_event is None")
        w = 1 if weight is None else max(1, weight(event))
        if events and total + w > max_:
            await hand_over()  # the buffer goes first: this event would take it past max_
        events.append(event)
        total += w
        arrived.set()
        if total >= max_:
            await hand_over()  # never more than max_ in one batch (or one event heavier than that)
        return value

    enable_acks = s.enable_acks
    s.enable_acks = False  # acked below, once the agent has handled the batch
    s.add_processor(add_to_buffer)
    channel = aiter(s.channel)  # the channel Faust's conductor delivers to (Topic.__aiter__)
    if waiting is not None:
        waiting._queue = channel.queue
    s._enable_passive(channel)
    try:
        while not s.should_stop:
            deadline = s.loop.time() + within
            if not events and await s.wait_for_stopped(arrived):  # quiet: sleep until an event comes
                break
            remaining = deadline - s.loop.time()
            if remaining > 0:
                await s.wait_for_stopped(full, timeout=remaining)
            if not events:
                continue
            consuming = s.loop.create_future()
            handled = False
            try:
                yield list(events)
                handled = True  # the agent came back for the next batch
            finally:
                batch = list(events)
                events.clear()
                total = 0
                arrived.clear()
                if handled:  # not when the agent crashed or was stopped: its batch is read again
                    for event in batch:
                        await s.ack(event)
                notify(consuming)
                full.clear()
                consumed.set()
    finally:
        s.enable_acks = enable_acks
        s._processors.remove(add_to_buffer)
