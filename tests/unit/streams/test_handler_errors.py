"""A handler exception neither stalls a partition nor loses a declaration (issue 15, item 6): the
failed attempt is undone, the batch is handled record by record, a record that fails on its own is
dead-lettered (``handler-error``), and a failure that no record can be blamed for stops the worker.
The undecided-batch gauge goes back to 0 once the outputs are acknowledged."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from clients import topics
from common.settings import Settings
from decision.services import Services
from streams import metrics
from streams.isolation import HandlerFailed
from streams.outputs import OutputBatch
from streams.runtime import tables
from streams.runtime.checkpoint import Checkpoint
from streams.testing import TopologyDriver
from tests.unit.streams.helpers import FixedScorer, decl, policy

AGENT = "decide_declarations"


class Run:
    """A driver's topology with its agent's batch step run for real (``_run_batch``), the producer
    and the worker's crash replaced by recorders."""

    def __init__(self, poison: set[bytes], always_fail: bool = False, **settings: Any) -> None:
        over = Settings(app_id="driver", partitions=4, takeover_grace_s=0, table_store="memory", **settings)
        self.driver = TopologyDriver(Services(policy(), FixedScorer()), over)
        self.topology = t = self.driver.topology
        self.sent: list[OutputBatch] = []
        self.crashed: list[BaseException] = []
        real = t.handle_declarations_and_scans

        def handler(events: Sequence[Any]) -> OutputBatch:
            out = real(events)  # the tables are written first: the retry must undo them
            if always_fail or any(e.message.key in poison for e in events):
                raise ZeroDivisionError("injected")
            return out

        self.handler = handler

        async def produce(app: Any, out: OutputBatch, previous: Sequence[asyncio.Future]) -> list[asyncio.Future]:
            self.sent.append(out)
            return []

        t.checkpoint.produce = produce  # type: ignore[method-assign]
        t.exit_worker = self.crashed.append  # type: ignore[method-assign]

    def batch(self, ids: list[str]) -> None:
        events = [self.driver._event(topics.DECLARATIONS, d.encode(), decl(d), None) for d in ids]
        asyncio.run(self.topology._run_batch(AGENT, self.handler, events, []))

    def instructions(self) -> list[dict]:
        name = self.driver.settings.topic(topics.INSTRUCTIONS)
        return [orjson.loads(v) for out in self.sent for t, _, _, v in out.records() if t == name]

    def dead_letters(self) -> list[dict]:
        name = self.driver.settings.topic(topics.DEAD_LETTERS)
        return [orjson.loads(v) for out in self.sent for t, _, _, v in out.records() if t == name]

    def state_keys(self) -> set[bytes]:
        return set(tables.contents(self.topology.state))


def errors(outcome: str) -> float:
    return metrics.HANDLER_ERRORS.labels(AGENT, outcome)._value.get()


def test_a_record_that_fails_alone_is_dead_lettered_and_the_rest_decided_once() -> None:
    run = Run({b"POISON"})
    before = errors("dead-lettered")
    run.batch(["GOOD-1", "POISON", "GOOD-2"])
    assert sorted(i["declaration_id"] for i in run.instructions()) == ["GOOD-1", "GOOD-2"]  # once each
    (letter,) = run.dead_letters()
    assert letter["reason"] == "handler-error" and "ZeroDivisionError" in letter["error"]
    assert orjson.loads(base64.b64decode(letter["value_b64"]))["declaration_id"] == "POISON"
    assert run.state_keys() == {b"GOOD-1", b"GOOD-2"}  # the failed attempts' writes are undone
    assert errors("dead-lettered") == before + 1 and not run.crashed
    run.batch(["GOOD-1", "GOOD-3"])  # the agent goes on; a redelivery re-emits, it is not decided again
    assert [i["declaration_id"] for i in run.instructions()].count("GOOD-3") == 1


def test_undo_restores_what_the_failed_attempt_overwrote() -> None:
    run = Run({b"POISON"})
    run.batch(["D1"])
    stored = dict(tables.contents(run.topology.state))
    capacity = dict(tables.contents(run.topology.capacity))
    run.batch(["D1", "POISON"])  # D1 again: a redelivery; the capacity record is rewritten, then undone
    assert tables.contents(run.topology.state)[b"D1"] == stored[b"D1"]
    assert b"POISON" not in tables.contents(run.topology.state)
    assert dict(tables.contents(run.topology.capacity)) == capacity  # POISON's selection is not counted


def test_a_failure_no_record_can_be_blamed_for_stops_the_worker_without_dead_letters() -> None:
    run = Run(set(), always_fail=True, handler_failures_before_exit=3)
    with pytest.raises(HandlerFailed):
        run.batch(["A", "B", "C"])  # as many failing in a row as the limit, none handled
    assert len(run.crashed) == 1 and isinstance(run.crashed[0], HandlerFailed)
    assert "ZeroDivisionError" in str(run.crashed[0])
    assert not run.sent and not run.state_keys()  # nothing sent: the batch is read again after the restart


def test_a_lone_failing_record_is_dead_lettered_and_the_agent_goes_on() -> None:
    """A quiet partition hands records one at a time: a lone bad record, even the first one the
    worker reads, is dead-lettered instead of restarting the worker (which would read it again)."""
    run = Run({b"P1", b"P2"})
    run.batch(["P1"])  # the first record of this process
    assert [d["reason"] for d in run.dead_letters()] == ["handler-error"] and not run.crashed
    run.batch(["P2"])  # right after another lone failure
    run.batch(["OK-1"])
    run.batch(["P1"])
    assert len(run.dead_letters()) == 3 and not run.crashed
    assert [i["declaration_id"] for i in run.instructions()] == ["OK-1"]


def test_a_handler_failing_on_every_lone_record_stops_the_worker_after_the_limit() -> None:
    run = Run(set(), always_fail=True, handler_failures_before_exit=3)
    run.batch(["A"])
    run.batch(["B"])
    assert len(run.dead_letters()) == 2 and not run.crashed
    with pytest.raises(HandlerFailed):
        run.batch(["C"])  # the third in a row, none handled in between: not pinned on the records
    assert len(run.crashed) == 1 and len(run.dead_letters()) == 2


def test_a_few_bad_records_together_are_dead_lettered_not_a_crash_loop() -> None:
    run = Run({b"P1", b"P2"}, handler_failures_before_exit=3)
    run.batch(["P1", "P2"])  # fewer than the limit, nothing handled: dead-lettered, the agent goes on
    assert len(run.dead_letters()) == 2 and not run.crashed
    run.batch(["OK-1"])
    assert [i["declaration_id"] for i in run.instructions()] == ["OK-1"]


def test_a_record_handled_between_lone_failures_starts_the_count_again() -> None:
    run = Run({b"P1", b"P2", b"P3"}, handler_failures_before_exit=2)
    run.batch(["P1"])
    run.batch(["OK-1", "P2"])  # OK-1 is handled alone after the batch fails: only P2 is in the row
    run.batch(["OK-2"])
    run.batch(["P3"])
    assert len(run.dead_letters()) == 3 and not run.crashed


def test_a_retried_batch_counts_its_metrics_once() -> None:
    run = Run({b"POISON"})
    port, topic = "HAK-SEA", run.driver.settings.topic(topics.DECLARATIONS)
    events_in = metrics.EVENTS_IN.labels("declaration", port)
    dead = metrics.DEAD_LETTERS.labels(topic, "handler-error")
    before = events_in._value.get(), dead._value.get(), _count(metrics.BATCH_SIZE)
    run.batch(["GOOD-1", "POISON", "GOOD-2"])
    assert events_in._value.get() - before[0] == 2  # the two decided declarations; not the undone attempts
    assert dead._value.get() - before[1] == 1
    assert _count(metrics.BATCH_SIZE) - before[2] == 2  # one batch-size observation per record handled alone


def _count(histogram: Any) -> float:
    return next(s.value for s in histogram.collect()[0].samples if s.name.endswith("_count"))


def test_the_undecided_age_grows_until_the_outputs_are_acknowledged() -> None:
    async def scenario() -> None:
        checkpoint = Checkpoint()
        assert checkpoint.oldest_undecided_s() == 0.0
        first = checkpoint.handed()
        second = checkpoint.handed()
        delivery = asyncio.get_running_loop().create_future()
        checkpoint.settle(second, [])  # nothing to send: decided at once
        checkpoint.settle(first, [delivery])
        await asyncio.sleep(0.02)  # the age under test, not a synchronisation
        assert checkpoint.oldest_undecided_s() >= 0.02
        delivery.set_result(None)
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
        assert checkpoint.oldest_undecided_s() == 0.0
        lost = checkpoint.handed()
        failed = asyncio.get_running_loop().create_future()
        checkpoint.settle(lost, [failed])
        failed.set_exception(ConnectionError("broker gone"))
        await asyncio.sleep(0)
        assert checkpoint.oldest_undecided_s() > 0.0  # a lost delivery stays undecided: the gauge keeps growing

    asyncio.run(scenario())


def test_exit_hard_leaves_with_the_code_and_commits_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.runtime import checkpoint

    codes: list[int] = []
    monkeypatch.setattr(checkpoint.os, "_exit", codes.append)
    checkpoint.exit_hard(HandlerFailed("ZeroDivisionError in decide_declarations: x"))
    assert codes == [1]


def test_an_agent_that_stops_on_an_exception_takes_the_worker_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a silent agent restart by Faust (which acknowledges records nobody handled)."""
    run = Run(set())

    async def one_batch(stream: Any, max_: int, within: float, weight: Any, waiting: Any = None) -> Any:
        yield ["an event"]

    async def broken(*args: Any) -> list[asyncio.Future]:
        raise ConnectionError("delivery failed")

    monkeypatch.setattr("streams.topology.take_batches", one_batch)
    run.topology._run_batch = broken  # type: ignore[method-assign]
    agent = run.topology._batch_agent(AGENT, run.handler)
    with pytest.raises(ConnectionError):
        asyncio.run(agent(object()))
    assert [type(e) for e in run.crashed] == [ConnectionError]


def test_the_journal_restores_writes_and_deletes_latest_first_and_merging_keeps_order() -> None:
    from types import SimpleNamespace

    from streams.outputs import recording

    table = SimpleNamespace(data={b"kept": b"v0", b"gone": b"g0"}, changelog_topic=SimpleNamespace(get_topic_name=lambda: "t-changelog"))
    out = OutputBatch()
    with recording() as journal:
        out.set_table(table, 0, b"kept", b"v1")
        out.set_table(table, 0, b"kept", b"v2")
        out.set_table(table, 0, b"gone", None)
        out.set_table(table, 0, b"new", b"n1")
        journal.rollback()
    assert table.data == {b"kept": b"v0", b"gone": b"g0"}
    out.set_table(table, 0, b"outside", b"x")  # no journal: nothing recorded, nothing to undo
    merged = OutputBatch()
    merged.add("t", 0, b"a", b"1")
    merged.extend(out)
    assert [k for _, _, k, _ in merged.records()] == [b"a", b"kept", b"kept", b"gone", b"new", b"outside"]
    assert merged.count == 6


@pytest.mark.parametrize(("loop_share", "pauses"), [(1.0, []), (0.5, [0.02, 0.02]), (0.25, [0.06, 0.06])])
def test_an_agent_with_a_loop_share_pauses_after_each_micro_batch_in_proportion(monkeypatch: pytest.MonkeyPatch, loop_share: float,
                                                                                 pauses: list[float]) -> None:
    """A fold given half the loop pauses as long as it worked; a quarter, three times as long."""
    run = Run(set())
    clock = [100.0]
    slept: list[float] = []

    async def two_batches(stream: Any, max_: int, within: float, weight: Any, waiting: Any = None) -> Any:
        yield ["an event"]
        yield ["another"]

    async def works_20_ms(*args: Any) -> list[asyncio.Future]:
        clock[0] += 0.02
        return []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 9))

    monkeypatch.setattr("streams.topology.take_batches", two_batches)
    monkeypatch.setattr("streams.topology.time.perf_counter", lambda: clock[0])
    monkeypatch.setattr("streams.topology.asyncio.sleep", sleep)
    run.topology._run_batch = works_20_ms  # type: ignore[method-assign]
    asyncio.run(run.topology._batch_agent(AGENT, run.handler, loop_share)(object()))
    assert slept == pauses
