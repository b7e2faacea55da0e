"""Broker faults on a 3-node Apache Kafka cluster, under load, with a real worker.

A simulated gateway publishes declarations (in gateway batches and singly, acks=all with
idempotence) and their scans at a moderate rate while one worker decides them; meanwhile a node is
(a) killed with SIGKILL: the one leading most of the declarations and instructions partitions,
(b) restarted in turn, all three (a rolling restart, each waiting for full replication), or
(c) frozen with SIGSTOP for longer than the worker's session timeout, then resumed.

Each ends as the single-broker fault tests do (tests/integration/test_faults.py, whose accounting
is reused): every declaration has exactly one final instruction, none conflicting, no instruction
id with two byte strings. And no acknowledged instruction is lost: every instruction the test's
reader saw during the run (a consumer reads only what the in-sync replicas hold) is still in the
topic when it is read again from the beginning after the fault. Takeover times and duplicates are
printed (docs/reliability.md keeps the figures). Select with ``-m cluster``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from clients import topics
from devkit.cluster import KafkaCluster
from tests.integration.pipeline_harness import Harness, pipeline_settings
from tests.integration.test_faults import PARTITIONS, Instructions, Traffic, check_outcomes, fault_policy, lost_records_report, read_all

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]

RATE = 150.0  # declarations per second: moderate, so that three JVMs and a worker share two cores
FREEZE_S = 15.0  # longer than the worker's session timeout (10 s) and the brokers' (4 s)
IDEMPOTENT = {"enable.idempotence": True, "acks": "all"}


@pytest.fixture
def harness(kafka_cluster: KafkaCluster, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setenv("WORKER_IDEMPOTENT_PRODUCER", "true")  # inherited by the worker processes
    policy = fault_policy(tmp_path / "policy.yaml", 5.0)
    h = Harness(pipeline_settings(kafka_cluster.bootstrap_servers, unique_name, tmp_path, policy_file=policy,
                                  partitions=PARTITIONS), tmp_path)
    yield h
    for w in h.workers:
        w.kill()
    h.reader.close()
    # Leave the cluster as the next test expects it: every node up, every partition fully replicated.
    for node in kafka_cluster.nodes:
        if not node.is_running():
            node.restart()
    kafka_cluster.wait_replicated()


def figure(label: str, value: float | int, unit: str = "s") -> None:
    print(f"[kafka3] {label}: {value:.2f} s" if unit == "s" else f"[kafka3] {label}: {value} {unit}")


def busiest_leader(cluster: KafkaCluster, h: Harness) -> tuple[int, list[tuple[str, int]]]:
    """The node leading most partitions of the declarations and instructions topics, and those partitions."""
    names = [h.settings.topic(topics.DECLARATIONS), h.settings.topic(topics.INSTRUCTIONS)]
    leaders = cluster.leaders(names)
    counts: dict[int, int] = {}
    for node in leaders.values():
        counts[node] = counts.get(node, 0) + 1
    node = max(counts, key=lambda n: counts[n])
    return node, sorted(tp for tp, n in leaders.items() if n == node)


def run_under_fault(cluster: KafkaCluster, h: Harness, prefix: str, fault: Callable[[Instructions, Traffic], None]) -> None:
    """Traffic and a worker; ``fault`` once decisions flow; then traffic on, the outcomes checked."""
    log = Instructions(h)
    t_test = time.monotonic()
    worker = h.start_worker()
    worker.wait_ready()
    traffic = Traffic(h.settings, rate=RATE, scan_delay_s=1.0, prefix=prefix, producer_options=IDEMPOTENT).start()
    try:
        decided = lambda: sum(1 for r in log.recs if r.doc["stage"] == "declaration")  # noqa: E731 - a named condition
        log.wait(lambda: decided() >= 300, 90, "2 s of traffic decided", h.workers)
        fault(log, traffic)
        after = traffic.published
        t_back = time.monotonic()
        log.wait(lambda: any(int(r.doc["declaration_id"][len(prefix):]) >= after for r in log.recs[-500:]), 180,
                 "a decision for a declaration published after the fault", h.workers,
                 lambda: f"traffic: {traffic.queued()} queued, errors {traffic.delivery_errors[:3]}\n{cluster.log_tail(10)}")
        figure("fault over -> first decision of a new declaration", time.monotonic() - t_back)
        log.wait(lambda: traffic.published >= after + 300, 60, "traffic after the fault", h.workers)
    except BaseException:
        traffic.stop(check=False)
        raise
    traffic.stop()
    kinds = traffic.kinds
    log.settle(kinds, h.workers)
    assert worker.alive(), f"the worker died:\n{worker.log_tail()}"
    extra = check_outcomes(log, kinds, lambda missing: lost_records_report(h.settings, missing))
    assert log.divergent() == {}, f"instruction ids emitted with different bytes: {list(log.divergent())[:5]}"
    assert log.dead_letters == [], log.dead_letters[:3]
    # Acknowledged instructions survive: re-read the topic from the start.
    kept = {orjson.loads(m.value())["instruction_id"] for m in read_all(h.settings, [h.settings.topic(topics.INSTRUCTIONS)], 60)}
    lost = set(log.by_id) - kept
    assert lost == set(), f"{len(lost)} instructions read during the run are gone from the topic, e.g. {sorted(lost)[:5]}"
    figure("declarations published", len(kinds), "declarations")
    figure("raw duplicate instruction records", log.raw_duplicates(), "records")
    figure("clean scans overtaken by their deadline", extra["clean scans overtaken by the deadline"], "declarations")
    figure("test run time", time.monotonic() - t_test)


def test_kill_the_leader_of_declarations_and_instructions(kafka_cluster: KafkaCluster, harness: Harness) -> None:
    h = harness
    decl, instr = h.settings.topic(topics.DECLARATIONS), h.settings.topic(topics.INSTRUCTIONS)

    def kill(log: Instructions, traffic: Traffic) -> None:
        victim, led = busiest_leader(kafka_cluster, h)
        assert led, "the busiest node leads nothing"
        print(f"killing node {victim}, leader of {led}")
        t0 = time.monotonic()
        kafka_cluster.node(victim).kill()
        moved = log.wait(lambda: all(n not in (victim, -1) for n in kafka_cluster.leaders([decl, instr]).values()), 60,
                         "new leaders for the killed node's partitions", h.workers)
        figure(f"kill -9 of node {victim} -> every declarations/instructions partition led again", moved)
        published = traffic.published
        log.wait(lambda: any(int(r.doc["declaration_id"][1:]) >= published for r in log.recs[-500:]), 120,
                 "a decision for a declaration published after the kill", h.workers)
        figure("kill -9 -> first decision of a declaration published after it", time.monotonic() - t0)
        log.wait(lambda: traffic.published >= published + 300, 60, "traffic with a node down", h.workers)
        t1 = time.monotonic()
        kafka_cluster.node(victim).restart()
        figure("killed node restarted -> cluster fully replicated", kafka_cluster.wait_replicated() + (time.monotonic() - t1))

    run_under_fault(kafka_cluster, h, "K", kill)


def test_rolling_restart_of_all_three_nodes(kafka_cluster: KafkaCluster, harness: Harness) -> None:
    def roll(log: Instructions, traffic: Traffic) -> None:
        for node_id in range(1, len(kafka_cluster.nodes) + 1):
            t0 = time.monotonic()
            kafka_cluster.node(node_id).restart()  # SIGTERM: controlled shutdown, leadership moves first
            down = time.monotonic() - t0
            caught_up = kafka_cluster.wait_replicated()
            log.pump()
            figure(f"rolling restart: node {node_id} restarted / fully replicated again", down + caught_up)

    run_under_fault(kafka_cluster, harness, "R", roll)


def test_a_node_frozen_longer_than_the_session_timeout(kafka_cluster: KafkaCluster, harness: Harness) -> None:
    def freeze(log: Instructions, traffic: Traffic) -> None:
        victim, led = busiest_leader(kafka_cluster, harness)
        print(f"freezing node {victim}, leader of {led}")
        t0 = time.monotonic()
        kafka_cluster.node(victim).suspend()
        try:
            log.wait(lambda: time.monotonic() - t0 >= FREEZE_S, FREEZE_S + 30, f"{FREEZE_S:.0f} s of node {victim} frozen",
                     harness.workers)
        finally:
            kafka_cluster.node(victim).resume()
        figure(f"node {victim} frozen (SIGSTOP) for", time.monotonic() - t0)
        figure("resumed -> cluster fully replicated", kafka_cluster.wait_replicated())

    try:
        run_under_fault(kafka_cluster, harness, "Z", freeze)
    except AssertionError:
        # The worker's group and produce history, for whoever reads the failure (tmp dirs do not last).
        for w in harness.workers:
            lines = w.log_path.read_text(errors="replace").splitlines()
            print("\n".join(line[:200] for line in lines if any(k in line for k in ("Revoking", "newly assigned", "Error", "rebalanc"))))
        raise
