"""One record cannot hold a worker, and a handler exception cannot stall a partition (issue 15,
items 5 and 6), on both brokers with real worker processes.

* A 5,000-declaration gateway batch record is refused whole (``batch-too-large``), while records
  at the limit are decided in micro-batches of at most ``batch_max`` declarations (read back from
  the worker's ``customs_batch_declarations`` histogram).
* A handler that raises for one declaration (injected from the test side: a ``sitecustomize``
  module on the worker's PYTHONPATH wraps the handler; production code has no hook) leaves the
  worker alive, that record in the dead letters (``handler-error``; also when it is the first and
  only record the worker reads), every other declaration decided
  exactly once and the oldest-undecided gauge back at 0. A handler that fails on every record
  stops the worker (exit code 1) with nothing committed past the records, and a restarted worker
  decides each of them exactly once.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from clients import topics
from devkit.brokers import free_port
from devkit.launcher import WorkerProcess, metric_value
from schemas.partitioning import partition_for
from tests.integration.pipeline_harness import Harness, declaration, pipeline_settings, write_policy

PARTITIONS = 2
BATCH_MAX = 1024  # a bucket bound of customs_batch_declarations: "no batch above it" reads off the histogram

SITECUSTOMIZE = '''
"""Test-side fault injection (tests/integration/test_runtime_bounds.py): the declarations agent's
handler raises once it has written its tables, for the declaration ids in RISK_TEST_POISON_ID (comma-separated), or for
every record when RISK_TEST_FAIL_ALL is set."""
import os

from streams import topology

_poison = set(os.environ.get("RISK_TEST_POISON_ID", "").encode().split(b","))
_fail_all = bool(os.environ.get("RISK_TEST_FAIL_ALL"))
_real = topology.Topology.handle_declarations_and_scans


def _handle(self, events):
    out = _real(self, events)
    if _fail_all or any(e.message.key in _poison for e in events):
        raise ZeroDivisionError("injected by the test")
    return out


topology.Topology.handle_declarations_and_scans = _handle
'''


@pytest.fixture
def harness(broker, unique_name, tmp_path):
    # Everything is released at declaration time: a final instruction per declaration, at once.
    policy = write_policy(
        tmp_path / "policy.yaml", version="it-bounds-1",
        thresholds={c: {"machine_check": 1.0, "inspect": 1.0} for c in ("aeo", "white-list", "general", "focus-list", "joint-penalty")},
        scenario_thresholds={}, random_selection={"share": 0.0, "action": "machine-check"},
        capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}},
    )
    h = Harness(pipeline_settings(broker.bootstrap_servers, unique_name, tmp_path, policy_file=policy, partitions=PARTITIONS), tmp_path)
    yield h
    h.close()


def start_worker(h: Harness, name: str, env: dict[str, str]) -> WorkerProcess:
    s = h.settings.model_copy(update={"metrics_port": free_port(), "data_dir": h.tmp_path / name})
    worker = WorkerProcess(s, h.tmp_path / f"{name}.log", extra_env=env)
    h.workers.append(worker)
    return worker


def ids_on(partition: int, n: int, prefix: str) -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        did = f"{prefix}-{i:05d}"
        if partition_for(did.encode(), PARTITIONS) == partition:
            out.append(did)
        i += 1
    return out


def instruction_counts(h: Harness) -> Counter[str]:
    return Counter(i["declaration_id"] for i in h.instructions)


def test_a_5000_declaration_record_is_refused_and_micro_batches_stay_within_batch_max(harness: Harness) -> None:
    h = harness
    big = ids_on(0, 5000, "BIG")
    at_limit = [ids_on(p, 3000, f"LIM{p}") for p in range(PARTITIONS)]
    # Compressed, as a gateway packing 5,000 declarations must: uncompressed it is over the broker's 1 MB.
    packer = Producer({**h.settings.confluent_config(), "compression.type": "zstd", "message.max.bytes": 16_000_000, "linger.ms": 50})
    batch_topic = h.settings.topic(topics.DECLARATION_BATCHES)

    def batch(batch_id: str, ids: list[str], partition: int) -> None:
        record = {"schema_version": 1, "batch_id": batch_id, "gateway": "IT-GW", "declarations": [declaration(d, "GEN1") for d in ids]}
        packer.produce(batch_topic, key=batch_id.encode(), value=orjson.dumps(record), partition=partition)

    batch("B-BIG", big, 0)
    for p, ids in enumerate(at_limit):  # three records of 1,000 per partition: 3,000 records' worth of decisions
        for k in range(3):
            batch(f"B-LIM{p}-{k}", ids[k * 1000:(k + 1) * 1000], p)
    assert packer.flush(30) == 0
    # Published before the worker starts: its first fetches return them all at once, so only the
    # weight keeps a micro-batch small.
    worker = start_worker(h, "worker0", {"BATCH_MAX": str(BATCH_MAX), "GATEWAY_BATCH_MAX_DECLARATIONS": "1000"})
    worker.wait_ready()
    good = {d for ids in at_limit for d in ids}
    h.read_until(lambda h: good <= set(h.finals()) and h.dead_letters, 120, "every declaration at the limit decided and a dead letter")
    (letter,) = h.dead_letters
    assert letter["reason"] == "batch-too-large" and "5000 declarations" in letter["error"]
    assert letter["source_topic"] == batch_topic and letter["value_size"] > 1_000_000
    counts = instruction_counts(h)
    assert not set(big) & set(counts)  # nothing of the refused record is decided
    assert {d: n for d, n in counts.items() if n != 1} == {}  # every other one exactly once
    text = worker.metrics_text()
    batches = metric_value(text, "customs_batch_declarations_count")
    within = metric_value(text, "customs_batch_declarations_bucket", le=f"{BATCH_MAX}.0")
    assert batches >= len(good) / BATCH_MAX and within == batches, f"{batches - within} micro-batches over {BATCH_MAX} declarations"
    assert metric_value(text, "customs_dead_letters_total", reason="batch-too-large") == 1
    assert worker.alive()


def write_fault(tmp_path: Path) -> str:
    """The worker's PYTHONPATH: the fault module, then this source tree (sitecustomize runs before
    the worker's own path is set up: it must patch the code the worker runs)."""
    faults = tmp_path / "faults"
    faults.mkdir(exist_ok=True)
    (faults / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return os.pathsep.join([str(faults), str(Path(__file__).resolve().parents[2])])


def wait_gauge_zero(worker: WorkerProcess, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while worker.metric("customs_oldest_undecided_seconds") != 0.0:
        assert time.monotonic() < deadline, "customs_oldest_undecided_seconds did not come back to 0"
        time.sleep(0.2)  # probe interval; the deadline bounds the wait


def test_a_handler_exception_dead_letters_its_record_and_the_rest_is_decided_once(harness: Harness) -> None:
    h = harness
    worker = start_worker(h, "worker0", {"PYTHONPATH": write_fault(h.tmp_path), "RISK_TEST_POISON_ID": "POISON,POISON-FIRST"})
    worker.wait_ready()
    # A lone bad record on a quiet partition, the first the worker reads: dead-lettered, the worker goes on.
    h.publish(topics.DECLARATIONS, "POISON-FIRST", declaration("POISON-FIRST", "GEN1"))
    h.flush()
    h.read_until(lambda h: len(h.dead_letters) == 1, 60, "the lone bad record's dead letter")
    assert worker.alive(), worker.log_tail()
    h.publish(topics.DECLARATIONS, "WARM", declaration("WARM", "GEN1"))
    h.flush()
    h.read_until(lambda h: "WARM" in h.finals(), 60, "the first declaration")
    before = [f"GOOD-{i:03d}" for i in range(60)]
    for did in before[:30]:
        h.publish(topics.DECLARATIONS, did, declaration(did, "GEN1"))
    h.publish(topics.DECLARATIONS, "POISON", declaration("POISON", "GEN1"))
    for did in before[30:]:
        h.publish(topics.DECLARATIONS, did, declaration(did, "GEN1"))
    h.flush()
    h.read_until(lambda h: set(before) <= set(h.finals()) and len(h.dead_letters) == 2, 60, "the good declarations and the dead letter")
    after = [f"LATER-{i:03d}" for i in range(20)]  # the partitions are not stalled
    for did in after:
        h.publish(topics.DECLARATIONS, did, declaration(did, "GEN1"))
    h.flush()
    h.read_until(lambda h: set(after) <= set(h.finals()), 60, "declarations published after the failure")
    for letter in h.dead_letters:
        assert letter["reason"] == "handler-error" and "ZeroDivisionError" in letter["error"]
        assert letter["source_topic"] == h.settings.topic(topics.DECLARATIONS)
    counts = instruction_counts(h)
    assert "POISON" not in counts and "POISON-FIRST" not in counts
    assert {d: n for d, n in counts.items() if n != 1} == {} and len(counts) == len(before) + len(after) + 1
    assert worker.alive()
    wait_gauge_zero(worker)
    text = worker.metrics_text()
    assert metric_value(text, "customs_handler_errors_total", outcome="dead-lettered") == 2
    assert metric_value(text, "customs_handler_retries_total") >= 1


def test_a_handler_failing_on_every_record_stops_the_worker_and_a_restart_decides_each_once(harness: Harness) -> None:
    h = harness
    # HANDLER_FAILURES_BEFORE_EXIT=1: a batch of one that fails exits at once too (otherwise up to ten
    # lone records would be dead-lettered first, depending on how the fetches cut the batches).
    broken = start_worker(h, "worker0", {"PYTHONPATH": write_fault(h.tmp_path), "RISK_TEST_FAIL_ALL": "1",
                                         "HANDLER_FAILURES_BEFORE_EXIT": "1"})
    broken.wait_ready()
    ids = [f"SYS-{i:03d}" for i in range(40)]
    for did in ids:
        h.publish(topics.DECLARATIONS, did, declaration(did, "GEN1"))
    h.flush()
    deadline = time.monotonic() + 60
    while broken.alive():
        assert time.monotonic() < deadline, "the worker did not stop on a failure it cannot pin on records"
        time.sleep(0.2)  # probe interval; the deadline bounds the wait
    assert broken.proc.returncode == 1, broken.log_tail()
    assert "fails on every record" in broken.log_path.read_text()
    fixed = start_worker(h, "worker1", {})  # the supervisor's restart, the fault gone
    fixed.wait_ready()
    h.read_until(lambda h: set(ids) <= set(h.finals()), 90, "every declaration after the restart")
    counts = instruction_counts(h)
    assert {d: n for d, n in counts.items() if n != 1} == {} and not h.dead_letters
    wait_gauge_zero(fixed)
