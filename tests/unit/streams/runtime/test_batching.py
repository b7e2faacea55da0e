"""take_batches on a real Faust stream (an in-process channel: no broker is contacted)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import faust

from streams.runtime.batching import Waiting, take_batches

QUIET_S = 0.1


async def _stream() -> tuple[faust.ChannelT, Any]:
    app = faust.App("test-batching", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    app.flow_control.resume()  # a worker resumes it once partitions are assigned
    channel = app.channel()
    stream = app.stream(channel)
    await stream.maybe_start()
    return channel, stream


def _count_waits(stream: Any) -> list[int]:
    """Count the stream's timed waits (each one a wake-up of the batching loop)."""
    calls = [0]
    original = stream.wait_for_stopped

    async def counting(*args: Any, **kwargs: Any) -> bool:
        calls[0] += 1
        return await original(*args, **kwargs)

    stream.wait_for_stopped = counting
    return calls


async def _quiet_then_send(batcher: Callable[[Any], AsyncIterator[Any]], values: list[int],
                           on_batch: Callable[[Any, list[Any]], None] = lambda stream, events: None) -> tuple[list[list[int]], int]:
    """Consume with ``batcher`` through a quiet spell, then send ``values``: the batches and the
    number of waits the batcher made while nothing arrived."""
    channel, stream = await _stream()
    waits = _count_waits(stream)
    batches: list[list[int]] = []

    async def consume() -> None:
        async for events in batcher(stream):
            on_batch(stream, events)
            batches.append([e.value for e in events])
            if sum(map(len, batches)) >= len(values):
                break

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(QUIET_S)  # the quiet spell under test, not a synchronisation
    quiet_waits = waits[0]
    for value in values:
        await channel.send(value=value)
    await asyncio.wait_for(task, timeout=10)
    await stream.stop()
    return batches, quiet_waits


def test_batches_keep_order_never_exceed_max_and_a_partial_batch_is_not_held() -> None:
    batches, _ = asyncio.run(_quiet_then_send(lambda s: take_batches(s, 3, 0.05), list(range(7))))
    assert [v for batch in batches for v in batch] == list(range(7))
    assert all(1 <= len(batch) <= 3 for batch in batches)


def test_a_quiet_stream_is_not_polled() -> None:
    _, waits = asyncio.run(_quiet_then_send(lambda s: take_batches(s, 100, 0.001), [1]))
    assert waits <= 1  # one wait for the first event, however long the stream stays quiet


def test_faust_take_events_polls_a_quiet_stream_which_is_why_take_batches_exists() -> None:
    # If this starts failing, Faust stopped polling and take_batches can go.
    _, waits = asyncio.run(_quiet_then_send(lambda s: s.take_events(100, 0.001), [1]))
    assert waits >= 10


def test_events_are_acknowledged_only_after_their_batch_is_handled() -> None:
    acked: list[int] = []
    seen: list[tuple[list[int], list[int]]] = []  # (batch, acked while it was being handled)

    def during(stream: Any, events: list[Any]) -> None:
        if not hasattr(stream, "_acks_counted"):
            original = stream.ack

            async def counting(event: Any) -> bool:
                acked.append(event.value)
                return await original(event)

            stream.ack = counting
            stream._acks_counted = True
        seen.append(([e.value for e in events], list(acked)))

    batches, _ = asyncio.run(_quiet_then_send(lambda s: take_batches(s, 2, 0.05), [1, 2, 3, 4, 5], during))
    assert [v for batch in batches for v in batch] == [1, 2, 3, 4, 5]
    for i, (batch, acked_then) in enumerate(seen):
        assert not set(batch) & set(acked_then)  # none of a batch is acked while it is handled
        assert acked_then == [v for earlier, _ in seen[:i] for v in earlier]  # every earlier one is


def test_a_batch_the_agent_crashed_on_is_not_acknowledged() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        channel, stream = await _stream()
        acked: list[int] = []
        original = stream.ack

        async def counting(event: Any) -> bool:
            acked.append(event.value)
            return await original(event)

        stream.ack = counting
        handled: list[int] = []

        async def agent() -> None:
            async for events in take_batches(stream, 2, 0.05):
                values = [e.value for e in events]
                if 3 in values:
                    raise RuntimeError("handler bug")
                handled.extend(values)

        task = asyncio.ensure_future(agent())
        for value in (1, 2, 3, 4):
            await channel.send(value=value)
        try:
            await asyncio.wait_for(task, timeout=10)
        except RuntimeError:
            pass
        await stream.stop()
        return handled, acked

    handled, acked = asyncio.run(scenario())
    assert handled == [1, 2]
    assert acked == [1, 2]  # 3 and 4 stay unacknowledged: the consumer commits nothing past them


def test_a_batch_is_bounded_by_the_weight_of_its_events() -> None:
    # Each value is its own weight (as a gateway batch record weighs the declarations it carries).
    values = [3, 3, 1, 5, 9, 2, 2]
    batches, _ = asyncio.run(_quiet_then_send(lambda s: take_batches(s, 6, 0.05, weight=lambda e: e.value), values))
    assert [v for batch in batches for v in batch] == values
    for batch in batches:
        assert sum(batch) <= 6 or len(batch) == 1, batches  # only an event heavier than the bound stands alone
    assert [9] in batches


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def test_waiting_counts_the_records_buffered_for_the_stream_until_the_agent_takes_them() -> None:
    async def scenario() -> list[int]:
        channel, stream = await _stream()
        waiting = Waiting()
        seen = [waiting()]  # 0 before the stream is read
        batches = take_batches(stream, 1, 0.001, waiting=waiting)
        first = asyncio.ensure_future(batches.__anext__())
        await channel.send(value=0)
        await asyncio.wait_for(first, timeout=5)
        for value in range(1, 6):  # the agent is busy with its first batch meanwhile
            await channel.send(value=value)
        await _until(lambda: waiting() == 5)  # nothing is taken while the agent is busy
        seen.append(waiting())
        for _ in range(5):
            await asyncio.wait_for(batches.__anext__(), timeout=5)
        seen.append(waiting())
        await batches.aclose()
        await stream.stop()
        return seen

    assert asyncio.run(scenario()) == [0, 5, 0]
