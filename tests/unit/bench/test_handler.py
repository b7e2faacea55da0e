"""bench/handler.py: every size asked for is timed both ways on declarations that are all decided
(none repeated, none dead-lettered), and nonsense arguments are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.handler import Declarations, iter_rows, parse_args, run


@pytest.mark.parametrize("argv", [["--sizes", "0"], ["--sizes", "8,x"], ["--sizes", ""], ["--per-record", "0"],
                                  ["--batches", "0"], ["--evict-mb", "0"], ["--warmup", "-1"], ["--store", "disk"]])
def test_nonsense_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_micro_batches_carry_fresh_declarations_in_records_of_the_size_asked_for() -> None:
    source = Declarations(seed=3)
    first, second = source.micro_batch(7, 3), source.micro_batch(7, 3)
    assert [len(value["declarations"]) for _, _, value in first] == [3, 3, 1]
    ids = [d["declaration_id"] for batch in (first, second) for _, _, value in batch for d in value["declarations"]]
    assert len(ids) == len(set(ids)) == 14
    assert len({key for batch in (first, second) for _, key, _ in batch}) == 6  # batch ids unique too


def test_each_size_is_timed_warm_and_cold(tmp_path: Path) -> None:
    args = parse_args(["--sizes", "1,4", "--batches", "3", "--evict-mb", "1", "--store", "memory", "--warmup", "1"])
    results = run(args, tmp_path)
    rows = results["results"]
    assert [(r["declarations"], r["records"]) for r in rows] == [(1, 1), (4, 2)]
    for r in rows:
        assert r["batches"] == 5  # the floor: a handful even when fewer are asked for
        assert r["warm_us_per_batch"] > 0 and r["cold_us_per_batch"] > 0
        assert r["cold_over_warm"] == round(r["cold_us_per_batch"] / r["warm_us_per_batch"], 2)
    assert len(list(iter_rows(results))) == 2 + len(rows)
