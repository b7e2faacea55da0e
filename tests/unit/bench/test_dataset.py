"""The benchmark's data set: every system a run compares sees the same credit lifecycle."""

from __future__ import annotations

from itertools import islice

from bench.common import Dataset


def _first_events(data: Dataset, n: int) -> list[tuple[str, str, str]]:
    return [(e.event_id, e.enterprise_id, e.event_type.value) for e in islice(data.lifecycle, n)]


def test_each_run_starts_the_credit_lifecycle_from_its_first_event() -> None:
    data = Dataset.generate(seed=7, enterprises=300, count=10)
    data.begin_run()
    first = _first_events(data, 50)
    data.begin_run()
    again = _first_events(data, 50)
    assert again == first
    assert first[0][0] == "LC7-0"


def test_within_a_run_the_gateways_continue_the_lifecycle() -> None:
    data = Dataset.generate(seed=7, enterprises=300, count=10)
    data.begin_run()
    first = _first_events(data, 20)
    more = _first_events(data, 20)
    assert [e[0] for e in more] == [f"LC7-{i}" for i in range(20, 40)]
    assert set(first).isdisjoint(more)
