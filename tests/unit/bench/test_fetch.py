"""bench/fetch.py: the consumer reads as many partitions as asked, the first two topics (the busy
ones) with two partitions each, and nonsense arguments are refused."""

from __future__ import annotations

import pytest

from bench.fetch import _layout, parse_args
from common.settings import Settings


@pytest.mark.parametrize("partitions", [4, 5, 39, 40])
def test_the_layout_has_the_partitions_asked_for_and_two_busy_topics_of_two(partitions: int) -> None:
    topics = _layout(partitions)
    assert sum(topics.values()) == partitions
    assert list(topics.values())[:2] == [2, 2]
    assert len(set(topics)) == len(topics)


@pytest.mark.parametrize("argv", [["--partitions", "3"], ["--rounds", "0"], ["--rate", "0"], ["--seconds", "-1"]])
def test_nonsense_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_the_defaults_are_a_worker_s_partitions_at_its_everyday_fetch_rate() -> None:
    args = parse_args([])
    assert (args.partitions, args.rate) == (39, 300.0)
    assert args.fetch_max_wait_ms == Settings.model_fields["fetch_max_wait_ms"].default


def test_the_summary_takes_each_kind_s_median_and_its_ratio_to_full_fetches() -> None:
    from bench.fetch import KINDS, SUMMARISED, summarise

    runs = [{"kind": kind, **{key: base * scale for key in SUMMARISED}}
            for kind, base in zip(KINDS, (1.0, 0.5, 0.25), strict=True) for scale in (100.0, 300.0, 200.0)]
    summary = summarise(runs)
    assert summary["consumer_cpu_us_per_fetch"] == {"full": 200.0, "sessions": 100.0, "librdkafka": 50.0,
                                                    "sessions_ratio": 0.5, "librdkafka_ratio": 0.25}
    assert summary["consumer_cores"]["librdkafka"] == 50.0
