"""The declaration state's lifecycle through the topology, on the driver's manual clock: compaction
to a fingerprint, deletion with a tombstone, orphan scans, and the index behind the expiry timers."""

from __future__ import annotations

import base64
import gc
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from clients import topics
from common.settings import Settings
from decision.services import Services
from decision.state import Fingerprint, decode_stored
from policy.config import load_policy
from streams import metrics
from streams.runtime import tables
from streams.testing import TopologyDriver
from tests.unit.factories import FIXTURE_POLICY
from tests.unit.streams.helpers import FixedScorer, decl, policy, scan

COMPACT, RETAIN, ORPHAN = 60.0, 3 * 86_400.0, 3600.0
LATE = ORPHAN / 20  # the index hands a key out at most a twentieth of the shortest lifetime late (streams.expiry)


def lifecycle_settings(**over: object) -> Settings:
    fields: dict[str, object] = dict(app_id="driver", partitions=4, takeover_grace_s=0, state_compact_after_s=COMPACT,
                                     state_retention_s=RETAIN, input_topic_retention_s=86_400.0, orphan_scan_ttl_s=ORPHAN)
    fields.update(over)
    return Settings(**fields)  # type: ignore[arg-type]


def new_driver(**over: object) -> TopologyDriver:
    return TopologyDriver(Services(policy(), FixedScorer({"MC": 0.6, **{f"MC{i}": 0.6 for i in range(5)}})), lifecycle_settings(**over))


def state_changelog(driver: TopologyDriver) -> list[tuple[int, bytes | None, bytes | None]]:
    name = f"{driver.settings.app_id}-{topics.TABLE_DECLARATION_STATE}-changelog"
    return [(p, k, v) for t, p, k, v in driver.outputs if t == name]


def values_of(driver: TopologyDriver, key: bytes) -> list[bytes | None]:
    return [v for _, k, v in state_changelog(driver) if k == key]


def stored(driver: TopologyDriver, key: bytes) -> object:
    raw = tables.contents(driver.topology.state).get(key)
    return None if raw is None else decode_stored(raw)


def test_a_decided_declaration_becomes_a_fingerprint_then_a_tombstone() -> None:
    driver = new_driver()
    t0 = driver.clock()
    driver.send(topics.DECLARATIONS, [(b"LOW", decl("LOW"))])
    [released] = driver.instructions()
    driver.advance(COMPACT - 5)
    assert len(values_of(driver, b"LOW")) == 1 and not isinstance(stored(driver, b"LOW"), Fingerprint)
    driver.advance(10)  # past the compaction window: replaced by a fingerprint, on the changelog too
    full, compact = values_of(driver, b"LOW")
    fp = stored(driver, b"LOW")
    assert isinstance(fp, Fingerprint) and compact == driver.topology.state.data.data[b"LOW"] and len(compact or b"") < len(full or b"")
    assert fp.revision == 1 and fp.stage_names() == ["declaration"] and fp.finalised_at == int(t0)
    driver.advance(RETAIN + LATE)  # past the retention: deleted, with a tombstone on the changelog
    assert values_of(driver, b"LOW")[-1] is None and stored(driver, b"LOW") is None
    assert driver.instructions() == [released]  # the lifecycle emits no instruction


def test_a_redelivery_re_emits_the_bytes_within_the_window_and_is_only_counted_after() -> None:
    driver = new_driver()
    driver.send(topics.DECLARATIONS, [(b"LOW", decl("LOW"))])
    first = driver.records(topics.INSTRUCTIONS)[0][2]
    driver.advance(COMPACT / 2)
    driver.send(topics.DECLARATIONS, [(b"LOW", decl("LOW"))])  # a redelivery after a crash
    assert [v for _, _, v in driver.records(topics.INSTRUCTIONS)] == [first, first]  # the exact bytes again
    driver.advance(COMPACT)
    assert isinstance(stored(driver, b"LOW"), Fingerprint)
    duplicates = metrics.DUPLICATES.labels("declaration", "duplicate")._value.get()
    late = metrics.DUPLICATES.labels("declaration", "late-revision")._value.get()
    driver.send(topics.DECLARATIONS, [(b"LOW", decl("LOW"))])  # long after: recognised, nothing decided or emitted
    driver.send(topics.DECLARATIONS, [(b"LOW", decl("LOW", revision=2))])  # a late revision: not reopened
    assert [v for _, _, v in driver.records(topics.INSTRUCTIONS)] == [first, first]
    assert metrics.DUPLICATES.labels("declaration", "duplicate")._value.get() == duplicates + 1
    assert metrics.DUPLICATES.labels("declaration", "late-revision")._value.get() == late + 1
    assert isinstance(stored(driver, b"LOW"), Fingerprint)


def test_an_orphan_scan_expires_into_the_dead_letters() -> None:
    driver = new_driver()
    driver.send(topics.SCANS, [(b"NODECL", scan("NODECL", "clean"))])
    assert driver.dead_letters() == [] and stored(driver, b"NODECL") is not None
    before = metrics.STATE_EXPIRED.labels("orphan-scan")._value.get()
    driver.advance(ORPHAN + LATE)
    [dead] = driver.dead_letters()
    assert dead["reason"] == "orphan-scan" and dead["source_topic"] == driver.settings.topic(topics.SCANS)
    assert base64.b64decode(dead["key_b64"]) == b"NODECL"
    assert orjson.loads(base64.b64decode(dead["value_b64"]))["scan_id"] == "S-NODECL"
    assert values_of(driver, b"NODECL")[-1] is None and stored(driver, b"NODECL") is None
    assert metrics.STATE_EXPIRED.labels("orphan-scan")._value.get() == before + 1
    driver.advance(ORPHAN)
    assert len(driver.dead_letters()) == 1  # once


def test_scan_deadlines_fire_from_the_index_a_bounded_number_per_tick() -> None:
    driver = new_driver(state_expiry_max_per_tick=2)
    driver.send(topics.DECLARATIONS, [(f"MC{i}".encode(), decl(f"MC{i}")) for i in range(5)])
    timeout = load_policy(FIXTURE_POLICY).scan.timeout_s
    assert [i["action"] for i in driver.instructions()] == ["machine-check"] * 5
    driver.advance(timeout + 5)  # one tick: two of the five
    assert sum(1 for i in driver.instructions() if i["stage"] == "timeout") == 2
    driver.advance(1)
    driver.advance(1)
    timeouts = [i["declaration_id"] for i in driver.instructions() if i["stage"] == "timeout"]
    assert sorted(timeouts) == [f"MC{i}" for i in range(5)]  # the rest on the next ticks, each once


def test_a_recovered_worker_rebuilds_its_indexes_from_the_changelog() -> None:
    first = new_driver()
    first.send(topics.DECLARATIONS, [(b"LOW", decl("LOW")), (b"MC", decl("MC"))])
    first.send(topics.SCANS, [(b"NODECL", scan("NODECL", "clean"))])
    first.advance(COMPACT + 10)
    first.send(topics.DECLARATIONS, [(b"LOW2", decl("LOW2"))])
    assert isinstance(stored(first, b"LOW"), Fingerprint) and not isinstance(stored(first, b"LOW2"), Fingerprint)
    # A new worker (fresh topology, same clock) recovers the changelog of the first, then time passes.
    second = TopologyDriver(first.topology.services, first.settings, clock=first.clock)
    assert second.recover(first.outputs) > 0
    assert second.topology._near_index.size() + second.topology._far_index.size() >= 3
    timeout = load_policy(FIXTURE_POLICY).scan.timeout_s
    second.advance(max(timeout, COMPACT) + 10)
    assert [(i["declaration_id"], i["stage"]) for i in second.instructions()] == [("MC", "timeout")]  # the recovered deadline
    assert isinstance(stored(second, b"LOW2"), Fingerprint)  # the recovered full state, compacted
    second.advance(ORPHAN + LATE)
    assert [d["reason"] for d in second.dead_letters()] == ["orphan-scan"]
    second.advance(RETAIN + LATE)
    assert second.topology.state.data.data == {}  # everything retained has expired, with tombstones
    assert {k for _, k, v in state_changelog(second) if v is None} == {b"LOW", b"LOW2", b"MC", b"NODECL"}


def test_expiry_leaves_partitions_this_worker_does_not_own() -> None:
    driver = new_driver()
    driver.send(topics.DECLARATIONS, [(b"LOW", decl("LOW"))])
    driver.topology.owned_partitions = lambda: set()  # type: ignore[method-assign]  # revoked
    driver.advance(COMPACT + 10)
    assert not isinstance(stored(driver, b"LOW"), Fingerprint)
    assert driver.topology._near_index.partitions() == set()  # its index entries dropped


@pytest.mark.parametrize("over", [
    {"state_retention_s": 86_400.0, "input_topic_retention_s": 86_400.0},  # not longer than the input topics'
    {"state_compact_after_s": 1.0, "commit_interval_s": 1.0},  # a redelivery could find no bytes to re-emit
])
def test_settings_refuse_lifetimes_that_lose_duplicate_detection(over: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        lifecycle_settings(**over)


def test_with_the_rocksdb_store_a_restarted_worker_indexes_what_it_kept_on_disk(tmp_path: Path) -> None:
    # RocksDB keeps its data across a restart and Faust does not replay it as changelog events: the
    # expiry walks each owned partition's persisted keys into its index, a bounded step per tick.
    over = {"table_store": "rocksdb", "data_dir": tmp_path, "state_expiry_max_per_tick": 3}
    first = new_driver(**over)
    ids = [f"LOW{i}" for i in range(8)]
    first.send(topics.DECLARATIONS, [(i.encode(), decl(i)) for i in ids])
    first.send(topics.SCANS, [(b"NODECL", scan("NODECL", "clean"))])
    first.advance(COMPACT / 2)
    assert not isinstance(stored(first, b"LOW0"), Fingerprint)
    duplicate = first.records(topics.INSTRUCTIONS)[0]
    first.topology.state.data._dbs.clear()  # closes the databases, as Faust does on stop
    first.topology.deadlines.data._dbs.clear()
    del first
    gc.collect()

    second = new_driver(**over)
    second.clock.now += COMPACT  # type: ignore[attr-defined]
    second.send(topics.DECLARATIONS, [(duplicate[1], decl(duplicate[1].decode()))])  # a redelivery: found on disk, same bytes
    assert [v for _, _, v in second.records(topics.INSTRUCTIONS)] == [duplicate[2]]
    for _ in range(6):  # at most three keys a tick
        second.advance(1)
    assert all(isinstance(stored(second, i.encode()), Fingerprint) for i in ids)
    second.advance(ORPHAN + LATE)
    assert [d["reason"] for d in second.dead_letters()] == ["orphan-scan"]


def test_a_revoked_partition_s_keys_leave_the_store_and_the_indexes() -> None:
    from schemas.partitioning import partition_for

    driver = new_driver()
    t = driver.topology
    ids = [f"LOW{i}" for i in range(12)] + [f"MC{i}" for i in range(5)]  # released, and machine-checks awaiting their scans
    driver.send(topics.DECLARATIONS, [(i.encode(), decl(i)) for i in ids])
    driver.send(topics.SCANS, [(b"EARLY", scan("EARLY", "clean"))])
    keys = [i.encode() for i in [*ids, "EARLY"]]
    kept = {partition_for(k, 4) for k in keys[:1]}
    assert {partition_for(k, 4) for k in keys} - kept, "the test needs keys on a partition that is revoked"
    t.owned_partitions = lambda: kept  # type: ignore[method-assign]  # a rebalance took the other partitions away
    driver.advance(1)
    state, deadlines = tables.contents(t.state), tables.contents(t.deadlines)
    assert {partition_for(k, 4) for k in state} <= kept and {partition_for(k, 4) for k in deadlines} <= kept
    assert all(k in state for k in keys if partition_for(k, 4) in kept)  # the owned partition keeps its keys
    for index in (t._near_index, t._far_index, t._deadline_index):
        assert index.partitions() <= kept
    assert {int(k.split(b":")[1]) for k in tables.contents(t.capacity)} <= kept
