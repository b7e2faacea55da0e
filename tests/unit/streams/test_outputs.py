"""Delivery tracking: the commit guard must see every sent batch and every failure."""

from __future__ import annotations

import asyncio

import pytest

from streams.outputs import Deliveries, DeliveryFailed


def test_wait_returns_once_every_tracked_batch_is_acknowledged() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        deliveries = Deliveries()
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

        waiter = asyncio.ensure_future(deliveries.wait())
        await asyncio.gather(acknowledge(), waiter)
        order.append("wait returned")
        assert deliveries.pending == 0
        return order

    assert asyncio.run(scenario()) == ["first acked", "second acked", "wait returned"]


@pytest.mark.parametrize("how", ["error", "cancelled"])
def test_a_lost_batch_makes_every_later_wait_fail(how: str) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deliveries = Deliveries()
        ok, lost = loop.create_future(), loop.create_future()
        deliveries.track([ok, lost])
        ok.set_result(None)
        if how == "error":
            lost.set_exception(ConnectionError("broker gone"))
        else:
            lost.cancel()
        with pytest.raises(DeliveryFailed):
            await deliveries.wait()
        later = loop.create_future()
        later.set_result(None)
        deliveries.track([later])  # the failure sticks: nothing after it may be committed either
        with pytest.raises(DeliveryFailed):
            await deliveries.wait()

    asyncio.run(scenario())
