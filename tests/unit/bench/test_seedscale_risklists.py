"""The risk_lists section's pure parts: its headline figures and the index figures on a small set."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from bench.common import BenchError, Dataset
from bench.seedscale import risklists
from portsim.risklists import reference_lists


def test_the_ratio_is_with_lists_over_without() -> None:
    out = risklists.figures({"throughput": 4000.0}, {"throughput": 3700.0})
    assert out == {"throughput_no_lists": 4000.0, "throughput_with_lists": 3700.0, "throughput_ratio": 0.925}
    out = risklists.figures({"throughput": 4000.0, "cpu_us_per_declaration": {"system": 120.0}},
                            {"throughput": 3700.0, "cpu_us_per_declaration": {"system": 150.0}})
    assert out["cpu_ratio"] == 0.8 and out["cpu_us_per_declaration_with_lists"] == 150.0
    with pytest.raises(BenchError):
        risklists.figures({"throughput": 0.0}, {"throughput": 1.0})


def test_index_figures_on_a_small_office() -> None:
    data = Dataset.generate(7, 500, 300)
    now = datetime.now(UTC)
    lists = reference_lists(data.office.population, now, lists=20, entries=3_000)
    out = risklists.index_figures(lists, data, now)
    assert out["index_memory_mb"] > 0 and 100 < out["index_bytes_per_entry"] < 2_000
    assert out["sync_seconds"] >= 0 and out["tick_ms"] > 0
    assert set(out["match_us_per_declaration"]) == {"no_lists", "with_lists", "declarations_hit_share"}


def test_console_figures_hold_every_entry_and_count_the_matches() -> None:
    data = Dataset.generate(7, 500, 300)
    lists = reference_lists(data.office.population, datetime.now(UTC), lists=20, entries=3_000)
    out = risklists.console_figures(lists)
    assert out["entries_held"] == len(lists) and out["lists"] == len(lists.plans)
    assert 100 < out["bytes_per_entry"] < 2_000
    assert set(out["search_ms"]) == {"(all)", "8517", "kp", "smuggling", "no-such-text"}
    assert out["search_ms"]["(all)"]["matches"] == len(lists) and out["search_ms"]["no-such-text"]["matches"] == 0
    routes = sum(p.size for p in lists.plans if p.kind.value == "route")  # every route list's reason is about smuggling
    assert out["search_ms"]["smuggling"]["matches"] >= routes


def test_options_default_to_the_reference_volumes_and_quick_shrinks_them() -> None:
    p = argparse.ArgumentParser()
    risklists.add_arguments(p.add_argument_group("risk_lists"))
    args = p.parse_args([])
    args.quick = False
    ctx = type("Ctx", (), {"args": args, "quick": False})()
    assert risklists._option(ctx, "entries") == 300_000  # type: ignore[arg-type]
    ctx.quick = True
    assert risklists._option(ctx, "entries") == risklists.QUICK["entries"]  # type: ignore[arg-type]
    assert risklists._option(ctx, "count") == risklists.QUICK["count"]  # type: ignore[arg-type]
