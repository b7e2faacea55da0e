"""The risk-list index is kept by the changes, not by walking the table every second, and expired
entries leave it by their end of validity (issue 15, item 7)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import orjson
import pytest

from clients import topics
from common.settings import Settings
from decision.services import Services
from streams import metrics
from streams.runtime import tables
from streams.testing import FakeEvent, FakeMessage, TopologyDriver
from tests.unit.streams.helpers import NOW, FixedScorer, decl, policy


class WalkCounting(dict):
    """A table's inner dict that counts whole-table walks (look-ups by key are free)."""

    walks = 0

    def items(self) -> Any:
        WalkCounting.walks += 1
        return super().items()

    def __iter__(self) -> Any:
        WalkCounting.walks += 1
        return super().__iter__()

    def keys(self) -> Any:
        WalkCounting.walks += 1
        return super().keys()

    def values(self) -> Any:
        WalkCounting.walks += 1
        return super().values()


def entry(entry_id: str, value: str = "CN", **over: Any) -> dict:
    return {"schema_version": 1, "entry_id": entry_id, "list_id": "L1", "kind": "origin", "value": value, "action": "inspect",
            "reason": "alert", "source_agency": "customs", "valid_from": (NOW - timedelta(days=30)).isoformat(), **over}


@pytest.fixture
def driver() -> TopologyDriver:
    d = TopologyDriver(Services(policy(), FixedScorer()), Settings(app_id="driver", partitions=4, takeover_grace_s=0,
                                                                   risk_list_prune_after_s=86_400))
    d.topology.risk_lists.data.data = WalkCounting()  # the memory store's dict, which the handlers read and write
    WalkCounting.walks = 0
    return d


def test_ticks_reindex_the_written_entries_without_walking_the_table(driver: TopologyDriver) -> None:
    driver.send(topics.RISK_LISTS, [(f"E{i}".encode(), entry(f"E{i}", value="VN")) for i in range(50)])
    driver.send(topics.RISK_LISTS, [(b"HIT", entry("HIT"))])
    for _ in range(5):
        driver.advance(1.0)
    assert WalkCounting.walks == 0
    assert len(driver.topology.risk_index) == 51 and metrics.RISK_LIST_ENTRIES._value.get() == 51
    driver.send(topics.DECLARATIONS, [(b"A", decl("A"))])
    driver.send(topics.RISK_LISTS, [(b"HIT", None)])
    driver.advance(1.0)
    driver.send(topics.DECLARATIONS, [(b"B", decl("B"))])
    by_id = {i["declaration_id"]: i for i in driver.instructions()}
    assert by_id["A"]["risk_hits"] == ["L1/HIT"] and by_id["B"]["risk_hits"] == []
    assert WalkCounting.walks == 0


def test_an_entry_received_on_the_changelog_is_indexed_at_the_next_tick(driver: TopologyDriver) -> None:
    t = driver.topology
    value = orjson.dumps(entry("FROM-ELSEWHERE"))
    event = FakeEvent(FakeMessage(tables.changelog_topic(t.risk_lists), 0, 0, b"FROM-ELSEWHERE", value))
    asyncio.run(t._risk_list_changed(event))  # Faust calls back, then applies the record to the store
    tables.write(t.risk_lists, b"FROM-ELSEWHERE", value)
    driver.advance(1.0)
    assert "FROM-ELSEWHERE" in t.risk_index and WalkCounting.walks == 0


def test_expired_entries_leave_the_index_after_the_prune_horizon(driver: TopologyDriver) -> None:
    clock = driver.clock()
    ends = lambda hours: (NOW + timedelta(hours=hours)).isoformat()  # noqa: E731 - a named helper for the records below
    driver.send(topics.RISK_LISTS, [(b"OLD", entry("OLD", valid_until=ends(-25))), (b"RECENT", entry("RECENT", valid_until=ends(-23))),
                                    (b"OPEN", entry("OPEN"))])
    driver.advance(1.0)
    assert set(e.entry_id for e in driver.topology.risk_index.entries()) == {"RECENT", "OPEN"}  # OLD ended over a day ago
    driver.advance(2 * 3600.0)
    assert set(e.entry_id for e in driver.topology.risk_index.entries()) == {"OPEN"}
    assert driver.clock() > clock and metrics.RISK_LIST_ENTRIES._value.get() == 1


def test_once_ready_after_a_start_or_rebalance_the_index_is_synced_with_the_whole_table(
        driver: TopologyDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    t = driver.topology
    tables.write(t.risk_lists, b"ON-DISK", orjson.dumps(entry("ON-DISK")))  # a persistent store's entry: no event
    driver.advance(1.0)
    assert "ON-DISK" not in t.risk_index
    monkeypatch.setattr("streams.topology.status.ready", lambda app: True)
    driver.advance(1.0)
    assert "ON-DISK" in t.risk_index and WalkCounting.walks >= 1
    walks = WalkCounting.walks
    driver.advance(1.0)
    assert WalkCounting.walks == walks  # once per readiness, not every tick
