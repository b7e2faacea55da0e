"""A RocksDB worker killed between its table writes and their delivery (the worker's failpoint,
``streams.failpoint``): its disk must never be ahead of the changelog. Otherwise a restarted worker
finds the state on disk, takes the redelivered declaration for a duplicate and never sends the state
to the changelog (the next owner of the partition then has no trace of it), and a scan timeout
written on disk but never sent is lost with its instruction. On both brokers."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from clients import topics
from devkit.launcher import WorkerProcess
from schemas.partitioning import partition_for
from tests.integration.pipeline_harness import Harness, declaration, pipeline_settings, scan, write_policy
from tests.integration.test_state_lifecycle import Changelog, start, wait

ROCKSDB = {"TABLE_STORE": "rocksdb", "TAKEOVER_GRACE_S": "1"}


def machine_check_harness(broker: Any, name: str, tmp_path: Path, scan_timeout_s: float) -> Harness:
    policy = write_policy(  # every declaration of a general enterprise is machine-checked
        tmp_path / "policy.yaml", version="it-1",
        thresholds={"aeo": {"machine_check": 1.0, "inspect": 1.0}, "general": {"machine_check": 0.0, "inspect": 1.0}},
        scenario_thresholds={}, random_selection={"share": 0.0, "action": "machine-check"},
        scan={"timeout_s": scan_timeout_s, "port_timeout_s": {}},
        capacity={"default": {"machine_check": None, "inspect": None}, "ports": {}, "bounds": {}},
    )
    return Harness(pipeline_settings(broker.bootstrap_servers, name, tmp_path, policy_file=policy), tmp_path)


@pytest.fixture
def long_deadline(broker: Any, unique_name: str, tmp_path: Path) -> Any:
    h = machine_check_harness(broker, unique_name, tmp_path, 600.0)
    yield h
    h.close()


@pytest.fixture
def short_deadline(broker: Any, unique_name: str, tmp_path: Path) -> Any:
    h = machine_check_harness(broker, unique_name, tmp_path, 3.0)
    yield h
    h.close()


def killed_by_failpoint(h: Harness, worker: WorkerProcess) -> None:
    wait("the failpoint to kill the worker", lambda: not worker.alive(), 90, h)
    assert worker.proc.returncode == -signal.SIGKILL, f"exit code {worker.proc.returncode}:\n{worker.log_tail()}"


def test_a_declaration_decided_but_not_sent_before_a_kill_reaches_the_changelog_after_the_restart(long_deadline: Harness) -> None:
    h = long_deadline
    log = Changelog(h)
    first = start(h, "rocks", {**ROCKSDB, "RISKCTL_WORKER_FAILPOINT": "kill-before-send:decide_declarations:1"})
    first.wait_ready()
    decided = "KILLED-1"
    n = h.settings.partitions
    marker = next(f"AFTER-{i}" for i in range(100) if partition_for(f"AFTER-{i}".encode(), n) == partition_for(decided.encode(), n))
    h.publish(topics.DECLARATIONS, decided, declaration(decided, "E1"))
    h.flush()
    killed_by_failpoint(h, first)  # decided, its state written, nothing sent

    second = start(h, "rocks", ROCKSDB)  # the same data dir: what the killed worker left on disk
    second.wait_ready()
    h.publish(topics.DECLARATIONS, marker, declaration(marker, "E1"))  # after the redelivered one, on its partition
    h.flush()
    wait("the declaration after the redelivered one", lambda: any(i["declaration_id"] == marker for i in h.instructions), 60, h)
    wait(f"{decided}'s state on the changelog", lambda: decided.encode() in log.last(), 30, h, log.read)
    second.stop()

    third = start(h, "fresh", ROCKSDB)  # another worker takes the partition over from the changelog alone
    third.wait_ready()
    h.publish(topics.SCANS, decided, scan(decided, "clean"))
    h.flush()
    wait(f"{decided} released by its scan", lambda: h.final_action(decided) is not None, 60, h)
    assert h.final_action(decided) == "release"
    assert h.finals()[decided] == {f"{decided}:1:scan"}
    assert {i["instruction_id"] for i in h.instructions if i["declaration_id"] == decided} == {
        f"{decided}:1:declaration", f"{decided}:1:scan"}
    assert third.alive() and not h.dead_letters
    log.close()


def test_a_scan_timeout_written_but_not_sent_before_a_kill_fires_again_after_the_restart(short_deadline: Harness) -> None:
    h = short_deadline
    first = start(h, "rocks", {**ROCKSDB, "RISKCTL_WORKER_FAILPOINT": "kill-before-send:expire_scan_deadlines:1"})
    first.wait_ready()
    unscanned = "UNSCANNED-1"
    h.publish(topics.DECLARATIONS, unscanned, declaration(unscanned, "E1"))
    h.flush()
    wait("the machine-check", lambda: any(i["declaration_id"] == unscanned for i in h.instructions), 60, h)
    killed_by_failpoint(h, first)  # at the deadline: the timeout written, its instruction not sent

    second = start(h, "rocks", ROCKSDB)
    second.wait_ready()
    wait(f"{unscanned}'s scan timeout", lambda: h.final_action(unscanned) is not None, 60, h)
    assert h.final_action(unscanned) == "inspect"
    assert h.finals()[unscanned] == {f"{unscanned}:1:timeout"}
    assert second.alive() and not h.dead_letters
