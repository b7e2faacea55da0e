"""The in-order consumer (``streams.runtime.consumer``) on the real consumer class a worker gets,
never started: fetches are handed in by the test, seeks recorded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport import consumer as faust_consumer
from faust.types import TP

from streams.runtime import fetchsession
from streams.runtime.consumer import head_unacknowledged, in_order_consumer, is_input
from tests.unit.streams.runtime.fakes import record, worker_consumer

DECL0, DECL1 = TP("customs.declarations", 0), TP("customs.declarations", 1)
CHANGELOG = TP("runtime-test-declaration-state-changelog", 0)


class Fetches:
    """A worker consumer whose fetches return what the test queued and whose seeks are recorded."""

    def __init__(self, tmp_path: Path) -> None:
        self.consumer = c = worker_consumer(tmp_path)
        self.seeks: list[tuple[TP, int]] = []
        self.fetch: dict[TP, list[Any]] = {}

        async def _wait_next_records(timeout: float) -> tuple[dict[TP, list[Any]], set[TP]]:
            return self.fetch, set(self.fetch)

        async def _seek(tp: TP, offset: int) -> None:
            self.seeks.append((tp, offset))

        async def seek_to_committed() -> dict[TP, int]:
            return dict(self.committed)

        self.committed: dict[TP, int] = {}
        c._wait_next_records = _wait_next_records
        c._seek = _seek
        c.seek_to_committed = seek_to_committed
        c.highwater = lambda tp: 1_000

    async def start_at(self, committed: dict[TP, int]) -> None:
        """As after an assignment: Faust seeks every partition to its committed offset."""
        self.committed = committed
        await self.consumer.perform_seek()

    async def getmany(self, fetch: dict[TP, list[int]], on_message: Callable[[Any], None] = lambda m: None) -> list[tuple[TP, int]]:
        self.fetch = {tp: [record(tp, o) for o in offsets] for tp, offsets in fetch.items()}
        delivered = []
        async for tp, message in self.consumer.getmany(timeout=1.0):
            delivered.append((tp, message.offset))
            on_message(message)
        return delivered


def _run(tmp_path: Path, scenario: Callable[[Fetches], Any]) -> Any:
    async def main() -> Any:
        return await scenario(Fetches(tmp_path))

    return asyncio.run(main())


def test_input_partitions_are_delivered_in_order_from_the_committed_offset(tmp_path: Path) -> None:
    async def scenario(f: Fetches) -> Any:
        await f.start_at({DECL0: 5})
        first = await f.getmany({DECL0: [3, 4, 5, 6]})  # 3 and 4 are before the committed offset
        second = await f.getmany({DECL0: [6, 7]})  # 6 again (a re-fetch): already delivered
        return first, second, f.seeks, f.consumer._expected[DECL0]

    first, second, seeks, expected = _run(tmp_path, scenario)
    assert first == [(DECL0, 5), (DECL0, 6)]
    assert second == [(DECL0, 7)]
    assert seeks == [] and expected == 8


def test_a_record_beyond_the_expected_offset_makes_the_consumer_seek_back(tmp_path: Path) -> None:
    async def scenario(f: Fetches) -> Any:
        await f.start_at({DECL0: 5, DECL1: 0})
        delivered = await f.getmany({DECL0: [7, 8], DECL1: [0, 1]})
        return delivered, f.seeks, f.consumer._expected[DECL0]

    delivered, seeks, expected = _run(tmp_path, scenario)
    assert delivered == [(DECL1, 0), (DECL1, 1)]  # 5 and 6 never came: nothing of DECL0 is delivered
    assert seeks == [(DECL0, 5)] and expected == 5


@pytest.mark.parametrize("stop", ["flow", "generation"])
def test_records_fetched_but_not_delivered_are_fetched_again(tmp_path: Path, stop: str) -> None:
    async def scenario(f: Fetches) -> Any:
        await f.start_at({DECL0: 0, DECL1: 10})
        seen = []

        def on_message(message: Any) -> None:
            seen.append(message)
            if len(seen) == 3:  # e.g. a rebalance starts here
                if stop == "flow":
                    f.consumer.flow_active = False
                else:
                    f.consumer.app.consumer_generation_id += 1

        delivered = await f.getmany({DECL0: [0, 1, 2, 3], DECL1: [10, 11]}, on_message)
        return delivered, f.seeks, dict(f.consumer._expected)

    delivered, seeks, expected = _run(tmp_path, scenario)
    assert len(delivered) == 3
    next_offset = {DECL0: 0, DECL1: 10}
    for tp, offset in delivered:  # in order per partition, from the committed offset
        assert offset == next_offset[tp]
        next_offset[tp] += 1
    # Every partition re-reads from its first record not delivered.
    assert sorted(seeks) == sorted(next_offset.items())
    assert expected == next_offset


def test_changelog_partitions_keep_faust_s_handling(tmp_path: Path) -> None:
    async def scenario(f: Fetches) -> Any:
        await f.start_at({CHANGELOG: 5})
        delivered = await f.getmany({CHANGELOG: [9, 12]})  # compacted: gaps are normal
        return delivered, f.seeks, f.consumer._expected

    delivered, seeks, expected = _run(tmp_path, scenario)
    assert delivered == [(CHANGELOG, 9), (CHANGELOG, 12)]
    assert seeks == [] and expected == {}


def test_a_fetch_while_the_flow_is_stopped_only_seeks_to_the_committed_offsets(tmp_path: Path) -> None:
    async def scenario(f: Fetches) -> Any:
        f.committed = {DECL0: 5}
        f.consumer.flow_active = False
        delivered = await f.getmany({DECL0: [5, 6]})
        return delivered, f.consumer._expected

    delivered, expected = _run(tmp_path, scenario)
    assert delivered == [] and expected == {DECL0: 5}


def test_revoked_partitions_are_forgotten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    revoked_by_faust: list[set[TP]] = []

    async def on_partitions_revoked(consumer: Any, revoked: set[TP]) -> None:
        revoked_by_faust.append(set(revoked))

    monkeypatch.setattr(faust_consumer.Consumer, "on_partitions_revoked", on_partitions_revoked)

    async def scenario(f: Fetches) -> Any:
        await f.start_at({DECL0: 5, DECL1: 7})
        await f.consumer.on_partitions_revoked({DECL0})
        return f.consumer._expected

    assert _run(tmp_path, scenario) == {DECL1: 7}
    assert revoked_by_faust == [{DECL0}]


# ---- what gets committed -------------------------------------------------------------------------
def test_nothing_is_committed_while_the_head_of_an_input_partition_is_unacknowledged(tmp_path: Path) -> None:
    async def scenario() -> tuple[Any, Any, Any]:
        consumer = worker_consumer(tmp_path)
        consumer._committed_offset[DECL0] = 5
        consumer._acked[DECL0] = [6, 7]  # 5 is not acknowledged
        held = consumer._new_offset(DECL0)
        consumer._acked[DECL0] = [5, 6, 7]
        moved = consumer._new_offset(DECL0)
        # A changelog partition keeps Faust's rule, which lets 6, 7 through after committed 5.
        consumer._committed_offset[CHANGELOG] = 5
        consumer._acked[CHANGELOG] = [6, 7]
        return held, moved, consumer._new_offset(CHANGELOG)

    assert asyncio.run(scenario()) == (None, 8, 8)


def test_head_unacknowledged() -> None:
    assert head_unacknowledged([6, 7], 5)
    assert not head_unacknowledged([5, 6], 5)
    assert not head_unacknowledged([], 5)
    assert not head_unacknowledged([6], None)  # nothing committed yet: Faust's own rule decides


def test_gaps_in_input_partitions_are_never_marked_processed(tmp_path: Path) -> None:
    async def scenario() -> tuple[Any, Any]:
        consumer = worker_consumer(tmp_path)
        await consumer._add_gap(DECL0, 3, 9)
        await consumer._add_gap(CHANGELOG, 3, 9)
        return consumer._gap[DECL0], consumer._gap[CHANGELOG]

    input_gap, changelog_gap = asyncio.run(scenario())
    assert not input_gap
    assert sorted((i.begin, i.end) for i in changelog_gap) == [(3, 10)]


def test_is_input() -> None:
    assert is_input(DECL0) and not is_input(CHANGELOG)


def test_the_fetch_wait_comes_from_settings(tmp_path: Path) -> None:
    async def scenario() -> int:
        consumer = worker_consumer(tmp_path, fetch_max_wait_ms=37)
        aiokafka_consumer = consumer._thread._create_worker_consumer(consumer.transport)
        wait: int = aiokafka_consumer._fetch_max_wait_ms
        return wait

    assert asyncio.run(scenario()) == 37


def test_the_fetch_minimum_comes_from_settings(tmp_path: Path) -> None:
    async def scenario(**settings: int) -> int:
        consumer = worker_consumer(tmp_path, **settings)
        aiokafka_consumer = consumer._thread._create_worker_consumer(consumer.transport)
        least: int = aiokafka_consumer._fetch_min_bytes
        return least

    assert asyncio.run(scenario(fetch_min_bytes=65536)) == 65536
    assert asyncio.run(scenario()) == 1  # by default the broker answers as soon as any record is there


def test_in_order_consumer_is_a_faust_aiokafka_consumer() -> None:
    from faust.transport.drivers import aiokafka as faust_aiokafka

    cls = in_order_consumer(20)
    assert issubclass(cls, faust_aiokafka.Consumer)


class FakeAIOKafkaConsumer:
    """Stands in for aiokafka's consumer: records the thread each call runs on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self._fetcher: Any = None

    async def start(self) -> None:
        self.calls.append(("start", threading.get_ident()))
        # aiokafka builds its fetcher here, with its default backoff.
        self._fetcher = SimpleNamespace(_prefetch_backoff=0.1, _client=SimpleNamespace(cluster=None),
                                        _get_actions_per_node=lambda assignment: ([], {}, 0.1, False, []))

    async def stop(self) -> None:
        self.calls.append(("stop", threading.get_ident()))

    async def position(self, tp: TP) -> int:
        self.calls.append(("position", threading.get_ident()))
        return 42


def test_the_consumer_runs_on_the_worker_s_event_loop_without_a_thread(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[tuple[str, int]], int, int, bool, bool]:
        consumer = worker_consumer(tmp_path)
        fake = FakeAIOKafkaConsumer()
        consumer._thread._create_consumer = lambda loop: fake
        threads_before = threading.active_count()
        await consumer._thread.maybe_start()
        threads_running = threading.active_count()
        position = await consumer.position(DECL0)  # a call Faust hands to its consumer thread
        started = consumer._thread._started.is_set()
        await consumer._thread.stop()
        assert position == 42
        return fake.calls, threads_before, threads_running, started, consumer._thread.should_stop

    calls, before, running, started, stopped = asyncio.run(scenario())
    here = threading.get_ident()
    assert [name for name, _ in calls] == ["start", "position", "stop"]  # stopping leaves the group
    assert {thread for _, thread in calls} == {here}
    assert running == before  # no consumer thread was started
    assert started and stopped


@pytest.mark.parametrize("in_loop", [True, False])
def test_records_waiting_to_be_consumed_hold_other_fetches_back_only_as_long_as_the_settings_say(tmp_path: Path,
                                                                                                  in_loop: bool) -> None:
    async def scenario(**settings: Any) -> float:
        consumer = worker_consumer(tmp_path, consumer_in_loop=in_loop, **settings)
        fake = FakeAIOKafkaConsumer()
        consumer._thread._create_consumer = lambda loop: fake
        await consumer._thread.on_start()  # what the thread (or the in-loop service) runs to start the consumer
        backoff: float = fake._fetcher._prefetch_backoff
        return backoff

    assert asyncio.run(scenario(prefetch_backoff_ms=5)) == 0.005
    assert asyncio.run(scenario()) == 0.1  # aiokafka's own default unless the settings say otherwise


@pytest.mark.parametrize("sessions", [True, False])
def test_the_fetcher_fetches_in_sessions_unless_the_settings_say_otherwise(tmp_path: Path, sessions: bool) -> None:
    async def scenario() -> tuple[Any, Any]:
        consumer = worker_consumer(tmp_path, fetch_sessions=sessions)
        fake = FakeAIOKafkaConsumer()
        consumer._thread._create_consumer = lambda loop: fake
        await consumer._thread.on_start()
        return fake._fetcher, consumer.fetch_sessions

    fetcher, installed = asyncio.run(scenario())
    assert isinstance(fetcher._client, fetchsession._SessionClient) is sessions
    assert installed == {}  # none until the first fetch


def test_the_threaded_consumer_is_still_there_when_asked_for(tmp_path: Path) -> None:
    from faust.transport.drivers import aiokafka as faust_aiokafka

    async def scenario() -> tuple[type, type]:
        return type(worker_consumer(tmp_path)._thread), type(worker_consumer(tmp_path, consumer_in_loop=False)._thread)

    in_loop, threaded = asyncio.run(scenario())
    assert in_loop is not threaded
    assert issubclass(threaded, faust_aiokafka.AIOKafkaConsumerThread) and threaded.start is faust_aiokafka.AIOKafkaConsumerThread.start
    assert in_loop.start is not threaded.start and in_loop.call_thread is not threaded.call_thread
