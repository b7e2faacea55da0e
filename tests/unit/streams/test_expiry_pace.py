"""Expiry keeps pace with deciding (issue 15): the micro-batches that write declaration states also
expire due ones, so the states held stay bounded by rate x retention even when the expiry timer
never gets the event loop (a worker at its full rate). The driver's clock is moved without firing
a timer."""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict

import pytest

from clients import topics
from common.settings import Settings
from decision.services import Services
from decision.state import Fingerprint, decode_stored
from schemas.partitioning import partition_for
from streams import metrics
from streams.outputs import recording
from streams.runtime import tables
from streams.testing import ManualClock, TopologyDriver
from tests.unit.streams.helpers import FixedScorer, decl, policy

COMPACT, RETAIN, INPUT_RETAIN = 10.0, 100.0, 50.0
RATE, SECONDS = 10, 400  # declarations a second, seconds of traffic
FAR_LATE = RETAIN / 20  # the far index's bucket width: a deletion is at most that late (streams.expiry)


def pace_settings(**over: object) -> Settings:
    fields: dict[str, object] = dict(app_id="driver", partitions=4, takeover_grace_s=0, state_compact_after_s=COMPACT,
                                     state_retention_s=RETAIN, input_topic_retention_s=INPUT_RETAIN)
    fields.update(over)
    return Settings(**fields)  # type: ignore[arg-type]


def new_driver(**over: object) -> TopologyDriver:
    # A start on a whole 100 s: the index's buckets fall the same way in every run.
    start = float(math.ceil(time.time() / 100) * 100)
    return TopologyDriver(Services(policy(), FixedScorer()), pace_settings(**over), clock=ManualClock(start))


def on_partition_0(prefix: str, n: int) -> list[str]:
    """``n`` declaration ids of partition 0 (of 4)."""
    ids = (f"{prefix}{i:04d}" for i in range(100 * n))
    return list(itertools.islice((i for i in ids if partition_for(i.encode(), 4) == 0), n))


def held(driver: TopologyDriver) -> int:
    return len(tables.contents(driver.topology.state))


def tick_without_timers(driver: TopologyDriver, seconds: float) -> None:
    assert isinstance(driver.clock, ManualClock)
    driver.clock.now += seconds  # no timer fires: the event loop never gets to them


def state_changelog(driver: TopologyDriver) -> dict[bytes, list[bytes | None]]:
    name = tables.changelog_topic(driver.topology.state)
    values: dict[bytes, list[bytes | None]] = defaultdict(list)
    for topic, _, key, value in driver.outputs:
        if topic == name and key is not None:
            values[key].append(value)
    return values


def test_states_held_stay_bounded_by_rate_times_retention_without_a_timer_tick() -> None:
    driver = new_driver()
    compacted = metrics.STATE_EXPIRED.labels("compacted")._value.get()
    deleted = metrics.STATE_EXPIRED.labels("deleted")._value.get()
    decided_at: dict[bytes, float] = {}
    most = 0
    for second in range(SECONDS):
        ids = [f"PACE{second:04d}{i:02d}" for i in range(RATE)]
        driver.send(topics.DECLARATIONS, [(i.encode(), decl(i)) for i in ids])  # one micro-batch a second
        decided_at.update((i.encode(), driver.clock()) for i in ids)
        most = max(most, held(driver))
        tick_without_timers(driver, 1.0)
    assert len(driver.instructions()) == RATE * SECONDS  # every declaration decided, once
    # Rate x (retention + the index's lateness + a few seconds: a partition may get no write for a
    # few batches, and expires nothing meanwhile). Without the batch's expiry: every state ever decided (4,000).
    assert most <= RATE * (RETAIN + FAR_LATE + 5)
    now = driver.clock()
    state = tables.contents(driver.topology.state)
    # Nothing expires early: every declaration within its retention is still recognisable.
    assert all(key in state for key, at in decided_at.items() if now - at < RETAIN - 1)  # finalised_at: whole seconds
    changelog = state_changelog(driver)
    for key, at in decided_at.items():
        values = changelog[key]
        if now - at > RETAIN + FAR_LATE + 5:  # deleted: full state, fingerprint, tombstone, as the timer writes them
            full, fingerprint, tombstone = values
            stored = decode_stored(fingerprint or b"")
            assert isinstance(stored, Fingerprint) and stored.finalised_at == int(at) and tombstone is None
            assert len(fingerprint or b"") < len(full or b"")
        elif COMPACT + 5 < now - at < RETAIN - 1:  # compacted (a partition may get no write for a few batches), not yet deleted
            assert len(values) == 2 and isinstance(decode_stored(state[key]), Fingerprint)
    expired = sum(1 for values in changelog.values() if values[-1] is None)
    assert metrics.STATE_EXPIRED.labels("deleted")._value.get() - deleted == expired > 0
    assert metrics.STATE_EXPIRED.labels("compacted")._value.get() - compacted == sum(1 for v in changelog.values() if len(v) >= 2)


def test_a_batch_expires_in_proportion_to_what_it_wrote_and_no_more() -> None:
    driver = new_driver(state_expiry_per_write=2.0, state_expiry_max_per_tick=5)
    ids = on_partition_0("OLD", 40)
    for i in ids:  # one partition: the batch expires that partition's due keys
        driver.send(topics.DECLARATIONS, [(i.encode(), decl(i))], partition=0)
    tick_without_timers(driver, COMPACT + 5)  # all 40 due for compaction, no timer has run
    state_name = tables.changelog_topic(driver.topology.state)

    def compactions_by_next_batch(new_ids: list[str]) -> int:
        before = len(driver.outputs)
        driver.send(topics.DECLARATIONS, [(i.encode(), decl(i)) for i in new_ids], partition=0)
        return sum(1 for t, _, k, v in driver.outputs[before:] if t == state_name and k is not None and k.decode().startswith("OLD"))

    new = on_partition_0("NEW", 13)
    assert compactions_by_next_batch(new[:1]) == 2  # one state written: two due keys expired
    assert compactions_by_next_batch(new[1:3]) == 4
    assert compactions_by_next_batch(new[3:]) == 5  # bounded: state_expiry_max_per_tick
    for _ in range(6):  # the timer takes the other 29 in a quiet period, five a tick
        driver.advance(1)
    assert all(isinstance(decode_stored(tables.contents(driver.topology.state)[i.encode()]), Fingerprint) for i in ids)


def test_keys_taken_by_an_expiry_that_raises_go_back_to_the_index() -> None:
    driver = new_driver()
    topology = driver.topology
    due, following = on_partition_0("DUE", 2)
    driver.send(topics.DECLARATIONS, [(due.encode(), decl(due))], partition=0)
    tick_without_timers(driver, COMPACT + 5)
    real = topology._expire_state
    calls = 0

    def failing_once(*args: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected")
        real(*args)  # type: ignore[arg-type]

    topology._expire_state = failing_once  # type: ignore[method-assign]
    with recording() as journal, pytest.raises(RuntimeError):
        driver.send(topics.DECLARATIONS, [(following.encode(), decl(following))], partition=0)
    journal.rollback()  # what streams.isolation does before it retries
    assert not isinstance(decode_stored(tables.contents(topology.state)[due.encode()]), Fingerprint)
    tick_without_timers(driver, 1.0)
    driver.send(topics.DECLARATIONS, [(following.encode(), decl(following))], partition=0)  # the retry expires it
    assert isinstance(decode_stored(tables.contents(topology.state)[due.encode()]), Fingerprint)
