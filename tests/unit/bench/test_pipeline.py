"""The pipeline system's micro-batch figures from the workers' counters (the runs need brokers)."""

from __future__ import annotations

from bench.pipeline import BatchCounters


def test_micro_batch_size_and_handler_cpu_per_declaration_between_two_reads() -> None:
    before = BatchCounters(declarations=1_000.0, batches=100.0, handler_cpu_s=0.5)
    after = BatchCounters(declarations=4_000.0, batches=250.0, handler_cpu_s=0.8)
    assert after.since(before) == {"mean_micro_batch": 20.0, "handler_cpu_us_per_declaration": 100.0}


def test_nothing_decided_gives_zeros_not_a_division_by_zero() -> None:
    same = BatchCounters(declarations=10.0, batches=2.0, handler_cpu_s=0.1)
    assert same.since(same) == {"mean_micro_batch": 0.0, "handler_cpu_us_per_declaration": 0.0}
