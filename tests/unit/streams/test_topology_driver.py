"""The topology's handlers driven without a broker: parsing, dead letters, policy, joins, timeouts."""

from __future__ import annotations

import time
from datetime import timedelta

import orjson
import pytest

from clients import topics
from common.settings import Settings
from decision.services import Services
from policy.config import load_policy
from schemas import Action, ControlInstruction
from schemas.partitioning import partition_for
from streams.testing import TopologyDriver
from tests.unit.factories import FIXTURE_POLICY
from tests.unit.streams.helpers import NOW, FixedScorer, decl, policy, scan


@pytest.fixture
def driver():
    scorer = FixedScorer({"HIGH": 0.99, "MID": 0.6, "MID2": 0.6, "LATE": 0.6})
    d = TopologyDriver(Services(policy(), scorer))
    d.scorer = scorer
    return d


def test_micro_batch_is_scored_once_and_every_instruction_is_valid(driver):
    driver.send(topics.DECLARATIONS, [(x.encode(), decl(x)) for x in ("LOW", "MID", "HIGH")])
    assert driver.scorer.calls == [3]  # one model call for the whole micro-batch
    by_id = {i["declaration_id"]: i for i in driver.instructions()}
    assert {k: v["action"] for k, v in by_id.items()} == {"LOW": "release", "MID": "machine-check", "HIGH": "inspect"}
    for instruction in driver.instructions():
        ControlInstruction.model_validate_json(orjson.dumps(instruction))
    assert by_id["HIGH"]["reasons"][-1] == "fixed score 0.99"  # explanation only for selected ones
    assert "fixed score" not in " ".join(by_id["LOW"]["reasons"])


def test_scan_join_and_timeout_through_the_tables(driver):
    t0 = time.time()  # deadlines are set from the worker's clock when it decides
    driver.send(topics.DECLARATIONS, [(b"MID", decl("MID")), (b"MID2", decl("MID2"))])
    driver.send(topics.SCANS, [(b"MID", scan("MID", "suspicious"))])
    finals = {i["declaration_id"]: i for i in driver.instructions() if i["final"]}
    assert finals["MID"]["action"] == "inspect" and "MID2" not in finals
    assert driver.expire(now=t0 + 10) == 0  # not yet due
    timeout = load_policy(FIXTURE_POLICY).scan.timeout_s
    assert driver.expire(now=t0 + timeout + 60) == 1
    finals = {i["declaration_id"]: i for i in driver.instructions() if i["final"]}
    assert finals["MID2"]["stage"] == "timeout" and finals["MID2"]["action"] == "inspect"
    assert driver.expire(now=t0 + timeout + 120) == 0  # deadline removed: fires once


def test_declarations_and_scans_in_one_micro_batch_join_in_either_order(driver):
    # The worker's agent reads declarations and scans together: here a scan ahead of its
    # declaration (MID), one after it (MID2), a scan of a declaration not seen yet (LATE), a release.
    driver.send_together([(topics.SCANS, b"MID", scan("MID", "clean")), (topics.DECLARATIONS, b"MID", decl("MID")),
                          (topics.DECLARATIONS, b"MID2", decl("MID2")), (topics.SCANS, b"MID2", scan("MID2", "suspicious")),
                          (topics.SCANS, b"LATE", scan("LATE", "clean")), (topics.DECLARATIONS, b"LOW", decl("LOW"))])
    by_stage = {(i["declaration_id"], i["stage"]): i["action"] for i in driver.instructions()}
    assert by_stage == {("MID", "declaration"): "machine-check", ("MID", "scan"): "release",
                        ("MID2", "declaration"): "machine-check", ("MID2", "scan"): "inspect",
                        ("LOW", "declaration"): "release"}
    assert driver.expire(now=time.time() + 10 * load_policy(FIXTURE_POLICY).scan.timeout_s) == 0  # no deadline left
    driver.send(topics.DECLARATIONS, [(b"LATE", decl("LATE"))])  # the kept scan finalises it at once
    late = {i["stage"]: i["action"] for i in driver.instructions() if i["declaration_id"] == "LATE"}
    assert late == {"declaration": "machine-check", "scan": "release"}


def test_bad_records_are_dead_lettered_with_reasons_and_good_ones_decided(driver):
    n = driver.settings.partitions
    stray = next(f"W{i}" for i in range(50) if partition_for(f"W{i}".encode(), n) != partition_for(b"GOOD", n))
    driver.send(topics.DECLARATIONS, [(b"X", b"{oops"), (b"Y", decl("Z")), (b"GOOD", decl("GOOD"))])
    driver.send(topics.DECLARATIONS, [(stray.encode(), decl(stray))], partition=partition_for(b"GOOD", n))
    reasons = sorted(d["reason"] for d in driver.dead_letters())
    assert reasons == ["invalid-json", "key-mismatch", "wrong-partition"]
    assert [i["declaration_id"] for i in driver.instructions()] == ["GOOD"]


def test_risk_list_entry_applies_and_retracts(driver):
    entry = {"schema_version": 1, "entry_id": "E1", "list_id": "L1", "kind": "origin", "value": "CN", "action": "inspect",
             "reason": "alert", "source_agency": "customs", "valid_from": (NOW - timedelta(days=1)).isoformat()}
    driver.send(topics.RISK_LISTS, [(b"E1", entry)])
    driver.advance(1.0)  # the worker re-indexes the risk lists every second
    driver.send(topics.DECLARATIONS, [(b"A", decl("A"))])
    driver.send(topics.RISK_LISTS, [(b"E1", None)])
    driver.advance(1.0)
    driver.send(topics.DECLARATIONS, [(b"B", decl("B"))])
    by_id = {i["declaration_id"]: i for i in driver.instructions()}
    assert by_id["A"]["action"] == "inspect" and by_id["A"]["risk_hits"] == ["L1/E1"]
    assert by_id["B"]["action"] == "release" and by_id["B"]["risk_hits"] == []


def test_credit_state_is_folded_and_used(driver):
    driver.send(topics.CREDIT_EVENTS, [(b"E1", {"event_id": "C1", "enterprise_id": "E1", "event_type": "qualification-registered",
                                                 "qualification": "zero-tariff", "source_agency": "customs",
                                                 "event_time": NOW.isoformat()})])
    driver.send(topics.DECLARATIONS, [(b"ZT1", decl("ZT1", scenario="zero-tariff")),
                                      (b"ZT2", decl("ZT2", scenario="zero-tariff", enterprise_id="E2"))])
    by_id = {i["declaration_id"]: i for i in driver.instructions()}
    assert by_id["ZT1"]["action"] == "release"
    assert by_id["ZT2"]["action"] == "inspect" and by_id["ZT2"]["selection_reason"] == "rule"


def test_selection_rates_are_published_for_both_lanes_across_partitions():
    from policy.capacity import CapacityController
    from streams import metrics
    from streams.topology import _capacity_key

    scores = {f"R{i}": (0.99 if i % 10 == 0 else 0.6 if i % 10 == 1 else 0.0) for i in range(200)}
    d = TopologyDriver(Services(load_policy(FIXTURE_POLICY), FixedScorer(scores)))
    d.send(topics.DECLARATIONS, [(k.encode(), decl(k, port="YPU-SEA")) for k in scores])
    partitions = range(d.settings.partitions)
    realised = d.topology.publish_selection_rates(partitions)
    capacity = d.topology.services.policy.capacity
    ports = d.topology.services.policy.ports
    controllers = [CapacityController.from_bytes(d.topology.capacity.data.get(_capacity_key(p)), capacity, ports) for p in partitions]
    for lane in ("machine-check", "inspect"):
        weighted = [(c.realised("YPU-SEA")[lane], c.observed("YPU-SEA")) for c in controllers if c.observed("YPU-SEA")]
        assert len(weighted) > 1  # the ids spread over several partitions
        expected = sum(r * n for r, n in weighted) / sum(n for _, n in weighted)
        assert realised[("YPU-SEA", lane)] == pytest.approx(expected)
        assert metrics.SELECTION_RATE.labels("YPU-SEA", lane)._value.get() == pytest.approx(expected)
    assert metrics.SELECTION_RATE_TARGET.labels("YPU-SEA", "machine-check")._value.get() == 0.07
    assert metrics.SELECTION_RATE_TARGET.labels("YPU-SEA", "inspect")._value.get() == 0.02


def test_capacity_state_restored_from_the_table_replaces_the_kept_controller():
    from policy.capacity import CapacityController
    from streams.topology import _capacity_key

    d = TopologyDriver(Services(load_policy(FIXTURE_POLICY), FixedScorer()))
    d.send(topics.DECLARATIONS, [(b"K1", decl("K1", port="YPU-SEA"))])
    p = partition_for(b"K1", d.settings.partitions)
    kept = d.topology._controller(p)
    assert kept.observed("YPU-SEA") == 1 and d.topology._controller(p) is kept  # reused while the table holds our bytes
    # A rebalance or recovery puts other bytes in the table (here: a controller that saw 41 declarations).
    other = CapacityController.from_bytes(None, d.topology.services.policy.capacity, d.topology.services.policy.ports)
    for _ in range(41):
        other.observe("YPU-SEA", Action.RELEASE)
    d.topology.capacity.data[_capacity_key(p)] = other.to_bytes()
    restored = d.topology._controller(p)
    assert restored is not kept and restored.observed("YPU-SEA") == 41


def test_deadlines_of_a_partition_just_taken_over_wait_for_the_grace_period():
    d = TopologyDriver(Services(policy(), FixedScorer()), settings=Settings(app_id="driver", partitions=4))
    topo = d.topology
    grace = topo.settings.takeover_grace_s
    assert grace > 0
    assert topo.settled({0, 1}, now=100.0) == set()  # just assigned: scans may be waiting
    assert topo.settled({0, 1}, now=100.0 + grace) == {0, 1}
    assert topo.settled({0, 1, 2}, now=100.0 + grace) == {0, 1}  # 2 newly taken over
    assert topo.settled({1, 2}, now=100.0 + 2 * grace) == {1, 2}
    assert topo.settled({0, 1, 2}, now=100.0 + 2 * grace) == {1, 2}  # 0 revoked and back: a new takeover


def test_a_rebalance_is_a_takeover_even_when_the_worker_keeps_its_partitions():
    """Every partition comes back from a rebalance with its inputs read again from the last
    commit, scans included: its deadlines wait for the grace period again, even though the timer
    never saw the partition leave (it does not tick while the worker is not ready)."""
    d = TopologyDriver(Services(policy(), FixedScorer()), settings=Settings(app_id="driver", partitions=4))
    topo = d.topology
    grace = topo.settings.takeover_grace_s
    assert topo.settled({0, 1}, now=100.0) == set()
    assert topo.settled({0, 1}, now=100.0 + grace) == {0, 1}
    topo.app.on_rebalance_start()  # what Faust calls when the group revokes the partitions
    assert topo.settled({0, 1}, now=100.0 + grace + 1) == set()
    assert topo.settled({0, 1}, now=100.0 + 2 * grace + 1) == {0, 1}


@pytest.mark.parametrize("fails", [False, True])
def test_no_garbage_collection_inside_a_handler_and_it_is_back_on_after(driver, fails):
    import asyncio
    import gc

    from streams.outputs import OutputBatch

    seen: list[bool] = []

    def handler(events):
        seen.append(gc.isenabled())
        if fails:
            raise RuntimeError("handler failed")
        return OutputBatch()

    assert gc.isenabled()
    # A handler that raises is undone and retried record by record (tests/unit/streams/test_handler_errors.py):
    # here there is no record to retry, so nothing is sent either way.
    assert asyncio.run(driver.topology._run_batch("test", handler, [], [])) == []
    assert seen == [False] and gc.isenabled()


def test_a_micro_batch_counts_its_thread_cpu_as_the_agents_handler_cpu(driver):
    """``customs_handler_cpu_seconds_total``: the CPU the handler burnt, at least, and no more than
    the decide phase's wall time (a handler that waits burns none)."""
    import asyncio
    import threading

    from streams import metrics
    from streams.outputs import OutputBatch

    burnt: list[float] = []

    def busy(events):
        started = time.thread_time()
        while time.thread_time() - started < 0.02:
            pass
        burnt.append(time.thread_time() - started)
        return OutputBatch()

    def waits(events):
        threading.Event().wait(0.05)  # the handler's work: waiting, which is not CPU
        return OutputBatch()

    counter = metrics.HANDLER_CPU.labels("cpu-test")
    decide = metrics.BATCH_SECONDS.labels("cpu-test", "decide")
    before, wall_before = counter._value.get(), decide._sum.get()
    asyncio.run(driver.topology._run_batch("cpu-test", busy, [], []))
    cpu = counter._value.get() - before
    assert burnt[0] <= cpu <= decide._sum.get() - wall_before + 0.001  # the two clocks' granularity apart
    before = counter._value.get()
    asyncio.run(driver.topology._run_batch("cpu-test", waits, [], []))
    assert counter._value.get() - before < 0.025


def test_advancing_the_clock_fires_the_deadline_timer_without_new_traffic(driver):
    driver.send(topics.DECLARATIONS, [(b"MID", decl("MID"))])
    [mc] = driver.instructions()
    assert mc["action"] == "machine-check"
    driver.advance(1.0)
    assert len(driver.instructions()) == 1  # not yet due
    driver.advance(load_policy(FIXTURE_POLICY).scan.timeout_s + 1.0)
    timeout = driver.instructions()[-1]
    assert timeout["stage"] == "timeout" and timeout["action"] == "inspect" and timeout["final"]
    driver.advance(60.0)
    assert len(driver.instructions()) == 2  # the deadline fired once
