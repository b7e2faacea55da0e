"""Fetch sessions (streams.runtime.fetchsession): what each request sends, how an answer moves the
session on, and what goes on the wire for each fetch version. Real brokers: tests/integration/
test_fetch_sessions.py."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.protocol.fetch import FetchRequest_v4, FetchRequest_v7, FetchRequest_v9, FetchRequest_v11
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.runtime.fetchsession import (
    INITIAL_EPOCH,
    MAX_EPOCH,
    FetchBounds,
    FetchSession,
    SessionFetchRequest,
    _Rows,
    actions_per_node,
    install,
)

A0, A1, B0 = ("a", 0), ("a", 1), ("b", 0)
FETCH_SESSION_ID_NOT_FOUND = 70


def started(session: FetchSession, wanted: dict[Any, int], session_id: int = 7) -> None:
    session.settle(session.plan(wanted), wanted, 0, session_id)


def test_without_a_session_every_partition_is_sent_and_a_session_is_asked_for() -> None:
    plan = FetchSession().plan({A0: 5, B0: 9})
    assert (plan.session_id, plan.epoch, plan.send, plan.forgotten) == (0, INITIAL_EPOCH, {A0: 5, B0: 9}, [])
    assert plan.full


def test_a_session_sends_only_the_partitions_that_moved_were_added_or_left() -> None:
    session = FetchSession()
    started(session, {A0: 5, A1: 3, B0: 9})
    assert (session.id, session.epoch, session.full_fetches) == (7, 1, 1)
    plan = session.plan({A0: 8, A1: 3, ("c", 0): 0})
    assert (plan.session_id, plan.epoch) == (7, 1)
    assert plan.send == {A0: 8, ("c", 0): 0}
    assert plan.forgotten == [B0]
    session.settle(plan, {A0: 8, A1: 3, ("c", 0): 0}, 0, 7)
    assert (session.epoch, session.incremental_fetches) == (2, 1)
    assert session.plan({A0: 8, A1: 3, ("c", 0): 0}).send == {}  # nothing moved: an empty request


@pytest.mark.parametrize("how", ["refused", "old version", "another session", "out of turn"])
def test_a_refused_or_unexpected_answer_starts_again_with_a_full_fetch(how: str) -> None:
    session = FetchSession()
    started(session, {A0: 5, B0: 9})
    plan = session.plan({A0: 6, B0: 9})
    if how == "refused":
        session.settle(plan, {A0: 6, B0: 9}, FETCH_SESSION_ID_NOT_FOUND, 0)
    elif how == "old version":
        session.settle(plan, {A0: 6, B0: 9}, 0, None)
    elif how == "another session":
        session.settle(plan, {A0: 6, B0: 9}, 0, 8)
    else:
        session.settle(plan, {A0: 6, B0: 9}, 0, 7)
        session.settle(plan, {A0: 6, B0: 9}, 0, 7)  # the same plan answered twice
    assert (session.id, session.epoch, session.offsets) == (0, INITIAL_EPOCH, {})
    assert session.plan({A0: 6, B0: 9}).send == {A0: 6, B0: 9}


def test_a_broker_that_makes_no_session_keeps_getting_full_fetches() -> None:
    session = FetchSession()
    for _ in range(3):
        plan = session.plan({A0: 1, B0: 2})
        assert plan.full and plan.send == {A0: 1, B0: 2}
        session.settle(plan, {A0: 1, B0: 2}, 0, 0)
    assert (session.id, session.full_fetches, session.incremental_fetches) == (0, 3, 0)


def test_the_epoch_wraps_to_one() -> None:
    session = FetchSession()
    started(session, {A0: 1})
    session.epoch = MAX_EPOCH
    session.settle(session.plan({A0: 2}), {A0: 2}, 0, 7)
    assert session.epoch == 1


def request(wanted: dict[Any, int], session: FetchSession) -> SessionFetchRequest:
    return SessionFetchRequest(wanted, session, max_wait_ms=20, min_bytes=1, max_bytes=50_000_000, isolation_level=0,
                               partition_max_bytes=1000, rack_id="r1")


def wire(req: SessionFetchRequest, struct: Any) -> Any:
    return struct.decode(io.BytesIO(req.build(struct).encode()))


def test_a_full_fetch_in_sessions_names_every_partition_and_asks_for_a_session() -> None:
    req = request({A0: 5, A1: 3, B0: 9}, FetchSession())
    got = wire(req, FetchRequest_v11)
    assert (got.session_id, got.session_epoch, got.forgotten_topics_data, got.rack_id) == (0, 0, [], "r1")
    assert sorted((t, p[0], p[2], p[4]) for t, parts in got.topics for p in parts) == [
        ("a", 0, 5, 1000), ("a", 1, 3, 1000), ("b", 0, 9, 1000)]
    assert sorted((t, p, o, m) for t, parts in req.topics for p, o, m in parts) == [
        ("a", 0, 5, 1000), ("a", 1, 3, 1000), ("b", 0, 9, 1000)]


@pytest.mark.parametrize("struct", [FetchRequest_v7, FetchRequest_v9, FetchRequest_v11])
def test_an_incremental_fetch_carries_the_session_the_moved_partitions_and_the_forgotten(struct: Any) -> None:
    session = FetchSession()
    started(session, {A0: 5, A1: 3, B0: 9})
    req = request({A0: 8, A1: 3}, session)
    got = wire(req, struct)
    assert (got.session_id, got.session_epoch) == (7, 1)
    offset_at = 2 if struct.API_VERSION >= 9 else 1  # v9 adds the leader epoch before the offset
    assert [(t, [(p[0], p[offset_at]) for p in parts]) for t, parts in got.topics] == [("a", [(0, 8)])]
    assert got.forgotten_topics_data == [("b", [0])]
    assert req.topics == [("a", [(0, 8, 1000), (1, 3, 1000)])]  # what the fetcher reads the answer against


def test_a_broker_without_sessions_gets_the_plain_request() -> None:
    session = FetchSession()
    started(session, {A0: 5, B0: 9})
    req = request({A0: 6, B0: 9}, session)
    got = wire(req, FetchRequest_v4)
    assert [(t, [p[:2] for p in parts]) for t, parts in got.topics] == [("a", [(0, 6)]), ("b", [(0, 9)])]
    req.settle(object())  # an answer of that version has no session: start again
    assert session.id == 0


# ---- the fetcher: aiokafka's own, never started against a broker -----------------------------------
class Cluster:
    """aiokafka's ClusterMetadata as the fetcher reads it: a metadata update replaces ``_partitions``."""

    def __init__(self, leaders: dict[TopicPartition, int | None]) -> None:
        self.leaders = leaders
        self._partitions: dict[str, Any] = {}

    def update(self, leaders: dict[TopicPartition, int | None]) -> None:
        self.leaders = leaders
        self._partitions = {}

    def leader_for_partition(self, tp: TopicPartition) -> int | None:
        return self.leaders.get(tp)


class Client:
    def __init__(self, leaders: dict[TopicPartition, int | None], answer: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._metadata_max_age_ms = 300_000
        self.cluster = Cluster(leaders)
        self.answer = answer
        self.sent: list[Any] = []

    async def send(self, node_id: int, request: Any, **kwargs: Any) -> Any:
        request.build(FetchRequest_v11)
        self.sent.append(request)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class Pending:
    def __init__(self, backoff: float) -> None:
        self.backoff = backoff

    def calculate_backoff(self) -> float:
        return self.backoff


def fetcher_for(leaders: dict[TopicPartition, int | None], answer: Any = None) -> tuple[Fetcher, Any]:
    subscriptions = SubscriptionState()
    subscriptions.assign_from_user(list(leaders))
    fetcher = Fetcher(Client(leaders, answer), subscriptions, fetch_max_wait_ms=20)
    fetcher._fetch_task.cancel()  # decisions only: nothing is fetched
    return fetcher, subscriptions.subscription.assignment


TPS = [TopicPartition(t, p) for t in ("a", "b", "c") for p in range(3)]
partition_states = st.tuples(
    st.sampled_from([1, 2, None, -1]),  # leader
    st.one_of(st.none(), st.integers(0, 1000)),  # position (None: awaiting reset)
    st.booleans(),  # paused
    st.sampled_from([None, 0.0, 0.05]),  # records not yet taken, and their backoff
)


@settings(max_examples=300, deadline=None)
@given(st.lists(partition_states, min_size=len(TPS), max_size=len(TPS)), st.sets(st.sampled_from([1, 2])))
def test_the_decisions_are_aiokafka_s_own(states: list[tuple[Any, ...]], in_flight: set[int]) -> None:
    async def scenario() -> tuple[Any, Any]:
        fetcher, assignment = fetcher_for({tp: leader for tp, (leader, *_) in zip(TPS, states)})
        for tp, (_, position, paused, pending) in zip(TPS, states):
            state = assignment.state_value(tp)
            if position is not None:
                state.seek(position)
            if paused:
                state.pause()
            if pending is not None:
                fetcher._records[tp] = Pending(pending)
        fetcher._in_flight = set(in_flight)
        theirs = fetcher._get_actions_per_node(assignment)
        ours = actions_per_node(fetcher, assignment, {})
        return theirs, ours

    theirs, ours = asyncio.run(scenario())
    (their_fetches, their_resets, their_backoff, their_invalid, their_resume) = theirs
    (our_fetches, our_resets, our_backoff, our_invalid, our_resume) = ours
    assert {node: {(t, p, o, m) for t, parts in req.topics for p, o, m in parts} for node, req in their_fetches} == \
        {node: {(t, p, o, m) for t, parts in req.topics for p, o, m in parts} for node, req in our_fetches}
    assert {n: sorted(tps) for n, tps in their_resets.items()} == {n: sorted(tps) for n, tps in our_resets.items()}
    assert (their_backoff, their_invalid, len(their_resume)) == (our_backoff, our_invalid, len(our_resume))
    assert all(isinstance(req, SessionFetchRequest) for _, req in our_fetches)


def test_partitions_and_leaders_are_looked_up_again_when_the_metadata_or_the_assignment_changes() -> None:
    a0, b0 = TopicPartition("a", 0), TopicPartition("b", 0)

    async def scenario() -> list[dict[int, set[Any]]]:
        fetcher, assignment = fetcher_for({a0: 1, b0: 1})
        for tp in (a0, b0):
            assignment.state_value(tp).seek(3)
        rows, seen = _Rows(), []

        def fetches(assignment: Any) -> dict[int, set[Any]]:
            requests = actions_per_node(fetcher, assignment, {}, rows)[0]
            return {node: {(t, p) for t, parts in req.topics for p, _, _ in parts} for node, req in requests}

        seen.append(fetches(assignment))
        fetcher._client.cluster.update({a0: 1, b0: 2})  # b0's leadership moved
        seen.append(fetches(assignment))
        fetcher._subscriptions.assign_from_user([a0])
        moved = fetcher._subscriptions.subscription.assignment
        moved.state_value(a0).seek(4)
        seen.append(fetches(moved))
        return seen

    assert asyncio.run(scenario()) == [{1: {("a", 0), ("b", 0)}}, {1: {("a", 0)}, 2: {("b", 0)}}, {1: {("a", 0)}}]


class Answer:
    error_code = 0
    session_id = 42


def test_install_puts_the_fetchers_requests_in_sessions_and_settles_them_on_the_answer() -> None:
    async def scenario() -> dict[int, FetchSession]:
        fetcher, assignment = fetcher_for({TopicPartition("a", 0): 1}, Answer())
        assignment.state_value(TopicPartition("a", 0)).seek(5)
        sessions = install(fetcher)
        assert fetcher._client.cluster is fetcher._client._client.cluster  # the rest of the client is aiokafka's
        (node, req), = fetcher._get_actions_per_node(assignment)[0]
        assert node == 1 and isinstance(req, SessionFetchRequest)
        await fetcher._client.send(node, req)
        return sessions

    sessions = asyncio.run(scenario())
    assert (sessions[1].id, sessions[1].epoch, sessions[1].offsets) == (42, 1, {A0: 5})


@pytest.mark.parametrize("failure", [ConnectionError("gone"), asyncio.CancelledError()])
def test_a_failed_or_cancelled_fetch_forgets_the_session(failure: BaseException) -> None:
    async def scenario() -> dict[int, FetchSession]:
        fetcher, assignment = fetcher_for({TopicPartition("a", 0): 1}, Answer())
        state = assignment.state_value(TopicPartition("a", 0))
        state.seek(5)
        sessions = install(fetcher)
        (node, req), = fetcher._get_actions_per_node(assignment)[0]
        await fetcher._client.send(node, req)
        assert sessions[1].id == 42
        fetcher._client._client.answer = failure
        state.seek(6)
        (node, req), = fetcher._get_actions_per_node(assignment)[0]
        with pytest.raises(type(failure)):
            await fetcher._client.send(node, req)
        return sessions

    sessions = asyncio.run(scenario())
    assert (sessions[1].id, sessions[1].epoch) == (0, INITIAL_EPOCH)


# ---- fetch bounds --------------------------------------------------------------------------------
def test_a_bounded_topic_is_not_fetched_while_enough_of_its_records_wait() -> None:
    a0, b0, b1 = TopicPartition("a", 0), TopicPartition("b", 0), TopicPartition("b", 1)
    waiting = [0]
    bounds = FetchBounds()
    bounds.bound("b", lambda: waiting[0], 3)

    async def scenario() -> list[tuple[set[Any], float]]:
        fetcher, assignment = fetcher_for({a0: 1, b0: 1, b1: 2})
        for tp in (a0, b0, b1):
            assignment.state_value(tp).seek(0)
        seen = []
        for n in (2, 3, 7, 0):
            waiting[0] = n
            requests, _, backoff, _, _ = actions_per_node(fetcher, assignment, {}, None, bounds)
            seen.append(({(t, p) for _, req in requests for t, parts in req.topics for p, _, _ in parts}, backoff))
        fetcher._records[b0] = Pending(0.05)  # records fetched before the bound: they hold nothing back while it holds
        waiting[0] = 5
        requests, _, backoff, _, _ = actions_per_node(fetcher, assignment, {}, None, bounds)
        seen.append(({(t, p) for _, req in requests for t, parts in req.topics for p, _, _ in parts}, backoff))
        return seen

    everything = {("a", 0), ("b", 0), ("b", 1)}
    seen = asyncio.run(scenario())
    assert [fetched for fetched, _ in seen] == [everything, {("a", 0)}, {("a", 0)}, everything, {("a", 0)}]
    assert len({backoff for _, backoff in seen}) == 1  # a held partition's records never shorten the wait
    assert bounds.holds == {"b": 3 * 2}  # both of b's partitions left out in the three rounds at 3, 7 and 5


def test_a_fetch_bound_needs_a_topic_bound_and_at_least_one_record() -> None:
    bounds = FetchBounds()
    assert not bounds and not bounds.held(TopicPartition("a", 0))
    with pytest.raises(ValueError, match="at least one record"):
        bounds.bound("a", lambda: 0, 0)
    bounds.bound("a", lambda: 1, 1)
    assert bounds and bounds.held(TopicPartition("a", 0)) and not bounds.held(TopicPartition("b", 0))
