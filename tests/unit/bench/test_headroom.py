"""The headroom section's figure arithmetic and options (the measurement itself needs brokers: run by hand)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bench.seedscale import headroom


def _load(p99: float, cpu: float) -> dict[str, Any]:
    return {"p50": p99 / 3, "p99": p99, "cpu_us_per_declaration": {"system": cpu, "broker": 40.0},
            "handler_cpu_us_per_declaration": cpu / 2}


def _system(p99_1k: float, p99_3k: float, cpu_1k: float, cpu_3k: float, cpu_sat: float, tp: float) -> dict[str, Any]:
    return {"throughput": tp, "mean_micro_batch": 1800.0, "cpu_us_per_declaration": {"system": cpu_sat},
            "handler_cpu_us_per_declaration": cpu_sat * 0.7,
            "latency_ms": {"1000": _load(p99_1k, cpu_1k), "3000": _load(p99_3k, cpu_3k)}}


def test_figures_put_the_pipeline_beside_the_ceiling_of_the_same_run() -> None:
    raw = _system(20.0, 18.0, 90.0, 40.0, 22.0, 30_000.0)
    pipe = _system(31.0, 36.0, 240.0, 160.0, 80.0, 10_000.0)
    f = headroom.figures(raw, pipe)
    assert (f["p99_ms_3k"], f["ceiling_p99_ms_3k"], f["p99_ratio_3k"]) == (36.0, 18.0, 2.0)
    assert (f["p99_ms_1k"], f["ceiling_p99_ms_1k"], f["p99_ratio_1k"]) == (31.0, 20.0, 1.55)
    assert (f["cpu_us_per_decl_1k"], f["cpu_us_per_decl_3k"], f["cpu_us_per_decl_saturation"]) == (240.0, 160.0, 80.0)
    assert f["ceiling_cpu_us_per_decl_3k"] == 40.0 and f["throughput"] == 10_000.0
    assert (f["handler_cpu_us_per_decl_1k"], f["handler_cpu_us_per_decl_3k"], f["handler_cpu_us_per_decl_saturation"]) == \
        (120.0, 80.0, 56.0)
    assert f["targets_met"] == {"p99_ratio_3k": False, "cpu_us_per_decl_3k": False, "cpu_us_per_decl_1k": True}


def test_a_ceiling_without_latency_gives_no_ratio() -> None:
    raw = _system(0.0, 0.0, 90.0, 40.0, 22.0, 30_000.0)
    f = headroom.figures(raw, _system(31.0, 27.0, 240.0, 140.0, 80.0, 10_000.0))
    assert f["p99_ratio_3k"] is None and f["targets_met"]["p99_ratio_3k"] is False


def _args(**given: Any) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    headroom.add_arguments(p.add_argument_group("headroom"))
    return p.parse_args([f"--{k.replace('_', '-')}={v}" if v is not True else f"--{k}" for k, v in given.items()])


def test_options_default_to_the_full_or_quick_sizes() -> None:
    assert headroom.options(_args()) == headroom.FULL
    assert headroom.options(_args(quick=True)) == headroom.QUICK
    assert headroom.options(_args(quick=True, headroom_duration=9))["duration"] == 9.0


@pytest.mark.parametrize("given", [{"headroom_count": 0}, {"headroom_warmup": 5, "headroom_duration": 5},
                                   {"headroom_worker_env": "BATCH_WITHIN_S"}])
def test_bad_options_are_refused(given: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        headroom.options(_args(**given))
