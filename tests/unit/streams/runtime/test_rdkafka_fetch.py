"""librdkafka's fetches fed to aiokafka's fetcher (streams.runtime.rdkafka_fetch): the fetcher is
aiokafka's own, never started against a broker; librdkafka's consumer is a recording stand-in whose
control calls the test makes on "the thread" by hand. Real brokers: tests/integration/
test_rdkafka_fetch.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from streams.runtime.fetchsession import FetchBounds
from streams.runtime.rdkafka_fetch import RdkafkaFeed, to_records
from tests.unit.streams.runtime.test_fetchsession import fetcher_for

A0, A1 = TopicPartition("a", 0), TopicPartition("a", 1)


class Message:
    """confluent-kafka's Message as the feed reads it."""

    def __init__(self, tp: TopicPartition, offset: int, error: Any = None) -> None:
        self._topic: str = tp.topic
        self._partition: int = tp.partition
        self._offset, self._error = offset, error

    def error(self) -> Any:
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"v%d" % self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_700_000_000_000 + self._offset

    def headers(self) -> list[tuple[str, bytes]] | None:
        return [("h", b"1")]


class Rd:
    """librdkafka's consumer: what was asked of it, in order."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.calls: list[tuple[str, list[tuple[str, int, int]]]] = []

    def _log(self, name: str, partitions: Any) -> None:
        self.calls.append((name, [(p.topic, p.partition, p.offset) for p in partitions]))

    def incremental_assign(self, partitions: Any) -> None:
        self._log("assign", partitions)

    def incremental_unassign(self, partitions: Any) -> None:
        self._log("unassign", partitions)

    def seek(self, partition: Any) -> None:
        self._log("seek", [partition])

    def pause(self, partitions: Any) -> None:
        self._log("pause", partitions)

    def resume(self, partitions: Any) -> None:
        self._log("resume", partitions)

    def close(self) -> None:
        self.calls.append(("close", []))


def run(scenario: Callable[[RdkafkaFeed, Any, Rd], Any], tps: list[TopicPartition] | None = None,
        **feed_args: Any) -> Any:
    async def go() -> Any:
        fetcher, assignment = fetcher_for(dict.fromkeys(tps or [A0, A1], 1))
        feed = RdkafkaFeed(fetcher, {"bootstrap.servers": "x:9092"}, consumer=Rd, **feed_args)
        feed.attach()
        return await scenario(feed, assignment, feed.rk)
    return asyncio.run(go())


def control(feed: RdkafkaFeed) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """Make the control calls asked for, as the thread does between polls; return librdkafka's calls."""
    feed._apply_requests()
    calls = list(feed.rk.calls)
    feed.rk.calls.clear()
    return calls


def poll(feed: RdkafkaFeed, tp: TopicPartition, *offsets: int) -> None:
    """A poll made now (after every control call so far) bringing ``offsets`` of ``tp``."""
    feed.feed(feed.applied, [Message(tp, o) for o in offsets])


async def taken(feed: RdkafkaFeed, *tps: TopicPartition) -> dict[Any, list[int]]:
    records = await feed.fetcher.fetched_records(tps, timeout=0)
    return {tp: [r.offset for r in rs] for tp, rs in records.items()}


def test_librdkafka_fetches_aiokafka_s_assignment_from_its_positions_and_aiokafka_resets_the_rest() -> None:
    async def scenario(feed: RdkafkaFeed, assignment: Any, rk: Rd) -> None:
        assignment.state_value(A0).seek(5)  # A1 has no position yet: aiokafka resets it (committed offset)
        requests, resets, _, invalid, _ = feed.reconcile(assignment)
        assert requests == []  # aiokafka sends no fetch
        assert dict(resets) == {1: [A1]}
        assert not invalid
        assert control(feed) == [("assign", [("a", 0, 5)])]
        assignment.state_value(A1).seek(0)
        feed.reconcile(assignment)
        assert control(feed) == [("assign", [("a", 1, 0)])]
        feed.reconcile(assignment)
        assert control(feed) == []  # nothing moved
        assert rk.config["enable.auto.commit"] is False  # aiokafka commits; librdkafka joins no group
    run(scenario)


def test_records_reach_aiokafka_s_getmany_in_order_and_move_the_position() -> None:
    async def scenario(feed: RdkafkaFeed, assignment: Any, rk: Rd) -> None:
        assignment.state_value(A0).seek(5)
        feed.reconcile(assignment)
        control(feed)
        poll(feed, A0, 5, 6)
        poll(feed, A0, 7)  # joins the records not taken yet
        assert await taken(feed, A0) == {A0: [5, 6, 7]}
        assert assignment.state_value(A0).position == 8  # what aiokafka commits from
        assert assignment.state_value(A0).highwater == 8
        poll(feed, A0, 8)
        records = (await feed.fetcher.fetched_records((A0,), timeout=0))[A0]
        assert (records[0].key, records[0].value, records[0].timestamp, records[0].timestamp_type, records[0].headers) == (
            b"k", b"v8", 1_700_000_000_008, 0, (("h", b"1"),))
    run(scenario)


def test_a_seek_moves_librdkafka_and_records_polled_before_it_are_dropped() -> None:
    async def scenario(feed: RdkafkaFeed, assignment: Any, rk: Rd) -> None:
        assignment.state_value(A0).seek(5)
        feed.reconcile(assignment)
        control(feed)
        before = feed.applied
        poll(feed, A0, 5, 6)
        feed.fetcher.seek_to(A0, 2)  # Faust re-reads from 2 (aiokafka drops what it buffered)
        assert feed.dirty
        feed.reconcile(assignment)
        feed.feed(before, [Message(A0, 7)])  # a poll made before the seek took effect
        assert control(feed) == [("seek", [("a", 0, 2)])]
        feed.feed(before, [Message(A0, 2)])  # still from before: dropped
        assert await taken(feed, A0) == {}
        poll(feed, A0, 2, 3)
        assert await taken(feed, A0) == {A0: [2, 3]}
    run(scenario)


def test_records_aiokafka_dropped_while_a_partition_was_paused_are_fetched_again() -> None:
    async def scenario(feed: RdkafkaFeed, assignment: Any, rk: Rd) -> None:
        assignment.state_value(A0).seek(0)
        feed.reconcile(assignment)
        control(feed)
        poll(feed, A0, 0, 1, 2)
        assignment.state_value(A0).pause()
        assert await taken(feed) == {}  # aiokafka drops a paused partition's records
        feed.reconcile(assignment)
        assert control(feed) == [("seek", [("a", 0, 0)]), ("pause", [("a", 0, -1001)])]  # back to aiokafka's position
        assignment.state_value(A0).resume()
        feed.reconcile(assignment)
        assert control(feed) == [("resume", [("a", 0, -1001)])]
        poll(feed, A0, 0, 1, 2)
        assert await taken(feed, A0) == {A0: [0, 1, 2]}
    run(scenario)


@pytest.mark.parametrize("why", ["faust", "bound", "waiting"])
def test_a_partition_is_not_fetched_while_faust_does_not_read_it_its_bound_holds_or_enough_waits(why: str) -> None:
    reading = {"on": True}
    waiting = {"credit": 0}
    bounds = FetchBounds()
    bounds.bound("a", lambda: waiting["credit"], 64)

    async def scenario(feed: RdkafkaFeed, assignment: Any, rk: Rd) -> None:
        assignment.state_value(A0).seek(0)
        feed.reconcile(assignment)
        control(feed)
        if why == "faust":
            reading["on"] = False
            feed.reconcile(assignment)
        elif why == "bound":
            waiting["credit"] = 64
            poll(feed, A0, 0)  # the feed holds it at once, before the routine's next round
        else:
            poll(feed, A0, 0, 1, 2, 3)
        assert control(feed) == [("pause", [("a", 0, -1001)])]
        reading["on"], waiting["credit"] = True, 0
        await taken(feed, A0)
        feed.reconcile(assignment)
        assert control(feed) == [("resume", [("a", 0, -1001)])]
    run(scenario, [A0], bounds=bounds, wanted=lambda tp: reading["on"], waiting_most=4)


def test_a_revoked_partition_is_unassigned_and_its_late_records_are_dropped() -> None:
    async def scenario(feed: RdkafkaFeed, assignment: Any, rk: Rd) -> None:
        assignment.state_value(A0).seek(0)
        assignment.state_value(A1).seek(0)
        feed.reconcile(assignment)
        control(feed)
        feed.fetcher._subscriptions.assign_from_user([A1])
        kept = feed.fetcher._subscriptions.subscription.assignment
        kept.state_value(A1).seek(0)
        feed.reconcile(kept)
        assert control(feed) == [("unassign", [("a", 0, -1001)])]
        poll(feed, A0, 0)
        assert A0 not in feed.fetcher._records
    run(scenario)


def test_control_calls_wait_for_the_thread_and_a_refused_one_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from confluent_kafka import KafkaException

    async def scenario(feed: RdkafkaFeed, assignment: Any, rk: Rd) -> None:
        def refuse(partitions: Any) -> None:
            raise KafkaException("no")
        rk.pause = refuse  # type: ignore[method-assign]
        assignment.state_value(A0).seek(0)
        feed.reconcile(assignment)
        assert rk.calls == []  # asked for, not made: librdkafka's assign waits while another thread polls
        feed.wanted = lambda tp: False
        feed.reconcile(assignment)
        control(feed)
        assert feed.applied == feed.seq
    run(scenario, [A0])
    assert "refused" in caplog.text


def test_errors_are_counted_and_records_grouped_by_partition_in_order() -> None:
    by_partition, errors = to_records([Message(A0, 1), Message(A1, 4), Message(A0, 2), Message(A0, 3, error="boom")])
    assert {k: [r.offset for r in v] for k, v in by_partition.items()} == {("a", 0): [1, 2], ("a", 1): [4]}
    assert errors == ["boom"]
