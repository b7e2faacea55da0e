"""Nothing in flight across a rebalance (``Checkpoint.before_rebalance``, called by the worker's
consumer once Faust has stopped the streams for a revocation): the consumer rejoins the group only
when every output produced so far -- and every batch decided and still waiting to be handed to the
producer -- is acknowledged, or the worker exits. Otherwise the tables recovered after the
assignment miss the outputs still on the wire (a scan's final instruction and state, say, on their
way to a frozen leader), and the machine-check's deadline decides it a second time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.transport import consumer as faust_consumer
from faust.types import TP

from streams.outputs import OutputBatch
from streams.runtime.checkpoint import Checkpoint, DeliveryFailed
from tests.unit.streams.runtime.fakes import FakeApp, FakeProducer, worker_consumer

TP0 = TP("customs.declarations", 0)


class Exits:
    def __init__(self) -> None:
        self.reasons: list[BaseException] = []

    def __call__(self, reason: BaseException) -> None:
        self.reasons.append(reason)


def _batch(value: bytes) -> OutputBatch:
    out = OutputBatch()
    out.add("instructions", 0, b"Z000391", value)
    return out


async def _spin(turns: int = 10) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


def test_drain_waits_for_a_batch_decided_but_not_yet_handed_to_the_producer() -> None:
    async def scenario() -> list[str]:
        producer, checkpoint, order = FakeProducer(), Checkpoint(), []
        loop = asyncio.get_running_loop()
        # The scan's final is decided; it waits (behind its agent's previous batch, or for room in
        # the producer's queue) before it is handed over.
        ahead = loop.create_future()
        scan_final = asyncio.ensure_future(checkpoint.produce(FakeApp(producer), _batch(b"scan final"), [ahead]))
        drained = asyncio.ensure_future(checkpoint.drain(5.0))
        await _spin()
        assert not drained.done(), "drained with a decided batch not yet handed to the producer"
        ahead.set_result(None)
        await asyncio.wait_for(scan_final, 1)
        order.append("handed over")
        await _spin()
        assert not drained.done(), "the scan's final is on the wire: not drained yet"
        producer.futures[0].set_result(None)
        order.append("acknowledged")
        await asyncio.wait_for(drained, 1)
        order.append("drained")
        return order

    assert asyncio.run(scenario()) == ["handed over", "acknowledged", "drained"]


def test_drain_fails_when_a_delivery_is_not_acknowledged_in_time() -> None:
    async def scenario() -> None:
        producer, checkpoint = FakeProducer(), Checkpoint()
        await checkpoint.produce(FakeApp(producer), _batch(b"scan final"), [])
        with pytest.raises(DeliveryFailed, match=r"still unacknowledged after 0\.05 s"):
            await checkpoint.drain(0.05)

    asyncio.run(scenario())


def test_drain_fails_on_a_lost_delivery() -> None:
    async def scenario() -> None:
        producer, checkpoint = FakeProducer(), Checkpoint()
        await checkpoint.produce(FakeApp(producer), _batch(b"scan final"), [])
        producer.futures[0].set_exception(ConnectionError("broker gone"))
        with pytest.raises(DeliveryFailed, match="broker gone"):
            await checkpoint.drain(1.0)

    asyncio.run(scenario())


def test_a_batch_that_never_reaches_the_producer_leaves_nothing_pending() -> None:
    class Refusing(FakeProducer):
        async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future:
            raise ConnectionError("producer closed")

    async def scenario() -> int:
        checkpoint = Checkpoint()
        with pytest.raises(ConnectionError):
            await checkpoint.produce(FakeApp(Refusing()), _batch(b"n"), [])
        await checkpoint.drain(1.0)  # nothing in flight: its events are never acknowledged
        return checkpoint.pending

    assert asyncio.run(scenario()) == 0


# ---- the worker's consumer: Faust's revocation first, then the drain -----------------------------
@pytest.fixture
def faust_revocation(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Faust's own ``Consumer.on_partitions_revoked`` (streams stopped, agents drained), recorded."""
    calls: list[str] = []

    async def on_partitions_revoked(consumer: Any, revoked: Any) -> None:
        calls.append("faust revoked")

    monkeypatch.setattr(faust_consumer.Consumer, "on_partitions_revoked", on_partitions_revoked)
    return calls


def test_the_consumer_rejoins_only_once_every_output_is_acknowledged(tmp_path: Path, faust_revocation: list[str]) -> None:
    async def scenario() -> Exits:
        exits = Exits()
        checkpoint = Checkpoint(exit=exits)
        consumer = worker_consumer(tmp_path, checkpoint)
        in_flight = asyncio.get_running_loop().create_future()
        checkpoint.track([in_flight])  # a scan's final, on its way to a frozen leader
        revocation = asyncio.ensure_future(consumer.on_partitions_revoked({TP0}))
        await _spin()
        assert faust_revocation == ["faust revoked"]
        assert not revocation.done(), "the consumer rejoined with an output in flight"
        in_flight.set_result(None)
        await asyncio.wait_for(revocation, 1)
        return exits

    assert asyncio.run(scenario()).reasons == []


def test_the_worker_exits_rather_than_rejoin_without_its_outputs(tmp_path: Path, faust_revocation: list[str]) -> None:
    async def scenario() -> Exits:
        exits = Exits()
        checkpoint = Checkpoint(exit=exits)
        consumer = worker_consumer(tmp_path, checkpoint, rebalance_delivery_timeout_s=0.05)
        checkpoint.track([asyncio.get_running_loop().create_future()])  # never acknowledged
        await asyncio.wait_for(consumer.on_partitions_revoked({TP0}), 5)
        return exits

    reasons = asyncio.run(scenario()).reasons
    assert len(reasons) == 1 and isinstance(reasons[0], DeliveryFailed)
