"""The office's reference risk lists: 147 lists, about 300,000 entries, every kind, valid per the schema."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from portsim.population import Population
from portsim.risklists import (
    EXPIRED_WITHIN,
    LARGEST_LIST,
    SMALLEST_LIST,
    ReferenceLists,
    list_sizes,
    reference_lists,
)
from schemas import RiskListAction, RiskListEntry, RiskListKind

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(7, 5_000)


@pytest.fixture(scope="module")
def lists(population: Population) -> ReferenceLists:
    return reference_lists(population, NOW)


def test_147_lists_of_300000_entries_of_every_kind(lists: ReferenceLists) -> None:
    assert len(lists.plans) == 147 and len(lists) == 300_000
    assert sum(p.size for p in lists.plans) == 300_000
    assert {p.kind for p in lists.plans} == set(RiskListKind)
    per_list = Counter(r["list_id"] for r in lists.records)
    assert all(per_list[p.list_id] == p.size for p in lists.plans)
    sizes = sorted(p.size for p in lists.plans)
    assert sizes[0] <= 10 and 10_000 <= sizes[-1] <= LARGEST_LIST  # a handful to tens of thousands
    assert sizes[len(sizes) // 2] < 1_000  # skewed: most lists are small, a few hold most entries


def test_every_entry_is_valid_and_its_id_and_value_are_unique(lists: ReferenceLists) -> None:
    entries = [RiskListEntry.model_validate_json(value) for _, value in lists.key_values()]
    assert len({e.entry_id for e in entries}) == len(entries)
    assert len({(e.list_id, e.value) for e in entries}) == len(entries)
    assert all(key == e.entry_id.encode() for (key, _), e in zip(lists.key_values(), entries))


def test_actions_and_windows_are_mixed(lists: ReferenceLists) -> None:
    actions = Counter(r["action"] for r in lists.records)
    assert actions[RiskListAction.WATCH.value] > actions[RiskListAction.MACHINE_CHECK.value] > actions[RiskListAction.INSPECT.value] > 0
    starts = np.array([datetime.fromisoformat(r["valid_from"]) > NOW for r in lists.records])
    ends = [datetime.fromisoformat(r["valid_until"]) for r in lists.records if "valid_until" in r]
    expired = sum(1 for e in ends if e <= NOW)
    assert 0.02 < starts.mean() < 0.1 and 0.05 < expired / len(lists) < 0.2
    assert sum(1 for r in lists.records if "valid_until" not in r) > len(lists) / 3  # most open
    assert all(e > NOW - EXPIRED_WITHIN for e in ends)
    assert lists.held_at(NOW, timedelta(days=7)) == len(lists)
    assert lists.held_at(NOW + timedelta(days=30), timedelta(days=7)) < len(lists)


def test_some_entries_name_the_offices_own_traders_and_goods_not_most(lists: ReferenceLists, population: Population) -> None:
    ours = set(population.ids)
    enterprises = [r["value"] for r in lists.records if r["kind"] == "enterprise"]
    share = sum(v in ours for v in enterprises) / len(enterprises)
    assert 0.005 < share < 0.05


def test_deterministic_for_a_seed(population: Population) -> None:
    a = reference_lists(population, NOW, seed=3, lists=20, entries=2_000)
    b = reference_lists(population, NOW, seed=3, lists=20, entries=2_000)
    c = reference_lists(population, NOW, seed=4, lists=20, entries=2_000)
    assert list(a.key_values()) == list(b.key_values())
    assert list(a.key_values()) != list(c.key_values())
    assert len(a) == 2_000 and len(a.plans) == 20


@pytest.mark.parametrize("lists,entries", [(1, 3), (7, 100), (147, 300_000), (147, 5_000), (30, 1_000_000)])
def test_list_sizes_sum_to_the_entries_within_bounds(lists: int, entries: int) -> None:
    sizes = list_sizes(np.random.default_rng(1), lists, entries)
    assert len(sizes) == lists and sum(sizes) == entries
    assert min(sizes) >= SMALLEST_LIST and max(sizes) <= max(LARGEST_LIST, SMALLEST_LIST)


def test_impossible_sizes_are_refused(population: Population) -> None:
    with pytest.raises(ValueError, match="cannot fill"):
        list_sizes(np.random.default_rng(1), 10, 20)
    with pytest.raises(ValueError, match="timezone"):
        reference_lists(population, NOW.replace(tzinfo=None))


def test_records_are_json_ready(lists: ReferenceLists) -> None:
    assert orjson.loads(next(lists.key_values())[1]) == lists.records[0]
