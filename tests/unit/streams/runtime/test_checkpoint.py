"""The commit guard (``streams.runtime.checkpoint``): it must see every sent batch and every
failure, hold the agent's next batch until the previous one is delivered, and stop the consumer's
commit -- crashing the worker -- when an output was lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport import consumer as faust_consumer
from faust.types import TP

from streams.outputs import OutputBatch
from streams.runtime.batching import take_batches
from streams.runtime.checkpoint import Checkpoint, DeliveryFailed
from tests.unit.streams.runtime.fakes import FakeApp, FakeProducer, worker_consumer


def test_wait_returns_once_every_tracked_batch_is_acknowledged() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        deliveries = Checkpoint()
        first, second = loop.create_future(), loop.create_future()
        deliveries.track([first, second])
        assert deliveries.pending == 2
        order: list[str] = []

        async def acknowledge() -> None:
            first.set_result(None)
            order.append("first acked")
            await asyncio.sleep(0)
            second.set_result(None)
            order.append("second acked")

        waiter = asyncio.ensure_future(deliveries.wait_delivered())
        await asyncio.gather(acknowledge(), waiter)
        order.append("wait returned")
        assert deliveries.pending == 0
        return order

    assert asyncio.run(scenario()) == ["first acked", "second acked", "wait returned"]


@pytest.mark.parametrize("how", ["error", "cancelled"])
def test_a_lost_batch_makes_every_later_wait_fail(how: str) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deliveries = Checkpoint()
        ok, lost = loop.create_future(), loop.create_future()
        deliveries.track([ok, lost])
        ok.set_result(None)
        if how == "error":
            lost.set_exception(ConnectionError("broker gone"))
        else:
            lost.cancel()
        with pytest.raises(DeliveryFailed):
            await deliveries.wait_delivered()
        later = loop.create_future()
        later.set_result(None)
        deliveries.track([later])  # the failure sticks: nothing after it may be committed either
        with pytest.raises(DeliveryFailed):
            await deliveries.wait_delivered()

    asyncio.run(scenario())


def test_wait_blocks_while_a_delivery_is_pending() -> None:
    async def scenario() -> None:
        checkpoint = Checkpoint()
        pending = asyncio.get_running_loop().create_future()
        checkpoint.track([pending])
        waiter = asyncio.ensure_future(checkpoint.wait_delivered())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()
        pending.set_result(None)
        await asyncio.wait_for(waiter, timeout=1)

    asyncio.run(scenario())


class Crashes:
    def __init__(self) -> None:
        self.reasons: list[BaseException] = []

    async def __call__(self, reason: BaseException) -> None:
        self.reasons.append(reason)


@pytest.mark.parametrize("how", ["error", "cancelled"])
def test_may_commit_crashes_instead_of_committing_past_a_lost_batch(how: str) -> None:
    async def scenario() -> tuple[bool, Crashes]:
        checkpoint = Checkpoint()
        lost = asyncio.get_running_loop().create_future()
        checkpoint.track([lost])
        if how == "error":
            lost.set_exception(ConnectionError("broker gone"))
        else:
            lost.cancel()
        crash = Crashes()
        return await checkpoint.may_commit(crash), crash

    allowed, crash = asyncio.run(scenario())
    assert allowed is False
    assert len(crash.reasons) == 1 and isinstance(crash.reasons[0], DeliveryFailed)


def test_may_commit_once_everything_is_delivered() -> None:
    async def scenario() -> tuple[bool, Crashes]:
        checkpoint = Checkpoint()
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        checkpoint.track([done])
        crash = Crashes()
        return await checkpoint.may_commit(crash), crash

    allowed, crash = asyncio.run(scenario())
    assert allowed is True and crash.reasons == []


# ---- produce: one batch in flight per agent ------------------------------------------------------
def _batch(*values: bytes) -> OutputBatch:
    out = OutputBatch()
    for value in values:
        out.add("instructions", 0, b"k", value)
    return out


def test_batch_n_plus_1_is_not_sent_before_batch_n_is_acknowledged() -> None:
    async def scenario() -> None:
        producer = FakeProducer()
        app = FakeApp(producer)
        checkpoint = Checkpoint()
        first = await checkpoint.produce(app, _batch(b"n"), [])
        assert [values for _, _, values in producer.sent] == [[b"n"]]
        assert checkpoint.pending == 1
        second = asyncio.ensure_future(checkpoint.produce(app, _batch(b"n+1"), first))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not second.done()
        assert len(producer.sent) == 1  # n+1 was decided, but waits for n's acknowledgement
        producer.futures[0].set_result(None)
        futures = await asyncio.wait_for(second, timeout=1)
        assert [values for _, _, values in producer.sent] == [[b"n"], [b"n+1"]]
        assert futures == producer.futures[1:] and checkpoint.pending == 1

    asyncio.run(scenario())


def test_a_failed_batch_n_stops_the_agent_before_it_sends_batch_n_plus_1() -> None:
    async def scenario() -> None:
        producer = FakeProducer()
        app = FakeApp(producer)
        checkpoint = Checkpoint()
        first = await checkpoint.produce(app, _batch(b"n"), [])
        producer.futures[0].set_exception(ConnectionError("broker gone"))
        with pytest.raises(ConnectionError):
            await checkpoint.produce(app, _batch(b"n+1"), first)
        assert len(producer.sent) == 1
        with pytest.raises(DeliveryFailed):
            await checkpoint.wait_delivered()

    asyncio.run(scenario())


def test_an_empty_batch_never_touches_the_producer() -> None:
    class NoProducer:
        @property
        def producer(self) -> Any:
            raise AssertionError("an empty batch reached for the producer")

    async def scenario() -> list[asyncio.Future]:
        return await Checkpoint().produce(NoProducer(), OutputBatch(), [])

    assert asyncio.run(scenario()) == []


def test_an_event_is_acknowledged_only_after_its_output_is_tracked() -> None:
    """Steps 1-4 together, on a real stream: when Faust is told an event is processed, its output
    is already with the producer and tracked, so the commit guard waits for it."""

    async def scenario() -> list[tuple[int, bool]]:
        app_ = faust.App("test-checkpoint", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
        app_.flow_control.resume()
        channel = app_.channel()
        stream: Any = app_.stream(channel)
        await stream.maybe_start()
        producer = FakeProducer()
        checkpoint = Checkpoint()
        acks: list[tuple[int, bool]] = []  # (value, its output was sent and tracked when acked)
        tracked: set[int] = set()
        track = checkpoint.track

        def tracking(futures: Any) -> None:
            tracked.update(id(f) for f in futures)
            track(futures)

        checkpoint.track = tracking  # type: ignore[method-assign]  # records the order of calls
        original = stream.ack

        async def ack(event: Any) -> bool:
            batches = [i for i, (_, _, values) in enumerate(producer.sent) if b"%d" % event.value in values]
            acks.append((event.value, len(batches) == 1 and id(producer.futures[batches[0]]) in tracked))
            return await original(event)

        stream.ack = ack

        async def agent() -> None:
            in_flight: list[asyncio.Future] = []
            async for events in take_batches(stream, 2, 0.01):
                in_flight = await checkpoint.produce(FakeApp(producer), _batch(*(b"%d" % e.value for e in events)), in_flight)
                for future in producer.futures:  # the broker acknowledges a little later
                    if not future.done():
                        asyncio.get_running_loop().call_later(0.005, future.set_result, None)
                if sum(len(v) for _, _, v in producer.sent) >= 6:
                    break

        task = asyncio.ensure_future(agent())
        for value in range(6):
            await channel.send(value=value)
        await asyncio.wait_for(task, timeout=10)
        await stream.stop()
        return acks

    acks = asyncio.run(scenario())
    assert len(acks) >= 2 and [value for value, _ in acks] == list(range(len(acks)))  # in order, earlier batches
    assert all(tracked for _, tracked in acks)


# ---- the consumer's _commit_offsets, guarded by the checkpoint -----------------------------------
TP0 = TP("customs.declarations", 0)


class FaustCommit:
    """Records the calls to Faust's own ``Consumer._commit_offsets`` (what the override calls last)."""

    def __init__(self) -> None:
        self.calls: list[dict[Any, int]] = []


@pytest.fixture
def faust_commit(monkeypatch: pytest.MonkeyPatch) -> FaustCommit:
    recorded = FaustCommit()

    async def _commit_offsets(consumer: Any, offsets: Any, start_new_transaction: bool = True) -> bool:
        recorded.calls.append(dict(offsets))
        return True

    monkeypatch.setattr(faust_consumer.Consumer, "_commit_offsets", _commit_offsets)
    return recorded


def test_the_consumer_does_not_commit_past_a_lost_batch_and_crashes(tmp_path: Path, faust_commit: FaustCommit) -> None:
    async def scenario() -> tuple[bool, Crashes]:
        checkpoint = Checkpoint()
        consumer = worker_consumer(tmp_path, checkpoint)
        crash = Crashes()
        consumer.crash = crash
        lost = asyncio.get_running_loop().create_future()
        checkpoint.track([lost])
        lost.set_exception(ConnectionError("broker gone"))
        return await consumer._commit_offsets({TP0: 5}), crash

    committed, crash = asyncio.run(scenario())
    assert committed is False
    assert faust_commit.calls == []  # Faust's commit never ran
    assert len(crash.reasons) == 1 and isinstance(crash.reasons[0], DeliveryFailed)


def test_the_consumer_commits_once_pending_deliveries_are_acknowledged(tmp_path: Path, faust_commit: FaustCommit) -> None:
    async def scenario() -> bool:
        checkpoint = Checkpoint()
        consumer = worker_consumer(tmp_path, checkpoint)
        consumer.crash = Crashes()
        pending = asyncio.get_running_loop().create_future()
        checkpoint.track([pending])
        commit = asyncio.ensure_future(consumer._commit_offsets({TP0: 5}))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not commit.done() and faust_commit.calls == []
        pending.set_result(None)
        return await asyncio.wait_for(commit, timeout=1)

    assert asyncio.run(scenario()) is True
    assert faust_commit.calls == [{TP0: 5}]


def test_without_a_checkpoint_the_consumer_commits_as_faust_does(tmp_path: Path, faust_commit: FaustCommit) -> None:
    async def scenario() -> bool:
        return await worker_consumer(tmp_path)._commit_offsets({TP0: 5})

    assert asyncio.run(scenario()) is True
    assert faust_commit.calls == [{TP0: 5}]


@pytest.mark.parametrize("delivered", [True, False])
def test_faust_commit_goes_through_the_guard(tmp_path: Path, faust_commit: FaustCommit, delivered: bool) -> None:
    """``Consumer.commit()`` -- what Faust's commit timer, its stop and its agent-error handler
    call -- reaches the guarded ``_commit_offsets`` with the contiguous acknowledged offsets."""

    async def scenario() -> tuple[bool, Crashes]:
        checkpoint = Checkpoint()
        consumer = worker_consumer(tmp_path, checkpoint)
        crash = Crashes()
        consumer.crash = crash
        consumer._committed_offset[TP0] = 5
        consumer._acked[TP0] = [5, 6, 8]
        delivery = asyncio.get_running_loop().create_future()
        checkpoint.track([delivery])
        if delivered:
            delivery.set_result(None)
        else:
            delivery.set_exception(ConnectionError("broker gone"))
        return await consumer.commit(), crash

    committed, crash = asyncio.run(scenario())
    if delivered:
        assert committed is True and faust_commit.calls == [{TP0: 7}] and crash.reasons == []
    else:
        assert committed is False and faust_commit.calls == [] and len(crash.reasons) == 1
