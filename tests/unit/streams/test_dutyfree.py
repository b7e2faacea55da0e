"""Duty-free shopping through the worker's handlers: the per-shopper fold and its warnings, the
re-keyed resale index, departures reading the standings, redeliveries, expiry, dead letters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clients import topics
from decision.services import Services
from policy.config import MAX_LINKED_SHOPPERS
from policy.dutyfree import LINKED_SHOPPERS, QUOTA_EXCEEDED, ShopperYear, year_expires_at
from schemas import EarlyWarning
from schemas.partitioning import partition_for
from streams.dutyfree import EXPIRY_BUCKET_S
from streams.runtime import tables
from streams.testing import ManualClock, TopologyDriver
from tests.unit.streams.helpers import FixedScorer, decl, policy

AT = "2026-06-01T10:00:00+08:00"


@pytest.fixture
def driver():
    return TopologyDriver(Services(policy(), FixedScorer()), clock=ManualClock(datetime(2026, 6, 2, tzinfo=UTC).timestamp()))


def purchase(pid: str, shopper: str, total: float, payer: str | None = None, code: str = "G1") -> dict:
    record = {"purchase_id": pid, "shop_id": "SHOP1", "shopper_token": shopper,
              "identity_check": {"token": f"IC-{pid}", "method": "face", "matched": True},
              "items": [{"category": "other", "goods_code": code, "quantity": 1, "unit_price_cny": total}],
              "total_cny": total, "purchased_at": AT}
    return record if payer is None else {**record, "payer_token": payer}


def warnings(driver: TopologyDriver) -> list[tuple[int, bytes | None, EarlyWarning]]:
    return [(p, k, EarlyWarning.model_validate_json(v)) for p, k, v in driver.records(topics.WARNINGS) if v is not None]


def test_over_the_quota_one_warning_on_the_shoppers_partition_and_a_redelivery_resends_it(driver):
    driver.send(topics.DUTY_FREE_PURCHASES, [(b"SH1", purchase("P1", "SH1", 60_000.0, code="A")),
                                             (b"SH1", purchase("P2", "SH1", 60_000.0, code="B"))])
    ((partition, key, w),) = warnings(driver)
    assert partition == partition_for(b"SH1", 4) and key == b"SH1"
    assert w.rule == QUOTA_EXCEEDED and w.warning_id == "SH1:2026:duty-free-quota-exceeded"
    held = ShopperYear.from_bytes(tables.contents(driver.topology.duty_free.shoppers)[b"SH1"])
    assert held.spent_cny == 120_000.0 and held.purchases == 2
    first = driver.records(topics.WARNINGS)[0][2]
    driver.send(topics.DUTY_FREE_PURCHASES, [(b"SH1", purchase("P2", "SH1", 60_000.0, code="B"))])
    assert [v for _, _, v in driver.records(topics.WARNINGS)] == [first, first]  # the same bytes, not a second count
    assert ShopperYear.from_bytes(tables.contents(driver.topology.duty_free.shoppers)[b"SH1"]).spent_cny == 120_000.0


def test_shoppers_on_one_payer_are_a_resale_pattern_and_their_departures_are_inspected(driver):
    limit = policy().duty_free.max_shoppers_per_link
    shoppers = [f"RS{n}" for n in range(limit + 1)]
    for n, s in enumerate(shoppers):
        driver.send(topics.DUTY_FREE_PURCHASES, [(s.encode(), purchase(f"R{n}", s, 500.0, payer="PAY9"))])
    ties = driver.records(topics.DUTY_FREE_SHOPPER_LINKS)
    assert {(p, k) for p, k, _ in ties} == {(partition_for(b"payer:PAY9", 4), b"payer:PAY9")}  # the repartition
    assert warnings(driver) == []
    driver.forward(topics.DUTY_FREE_SHOPPER_LINKS)
    ((_, key, w),) = warnings(driver)
    assert key == b"payer:PAY9" and w.rule == LINKED_SHOPPERS and w.subject_id == "PAY9"
    assert w.warning_id == "payer:PAY9:2026:duty-free-linked-shoppers"
    standings = tables.contents(driver.topology.duty_free.standing)
    assert {k for k in standings} == {b"l:" + s.encode() for s in shoppers}
    driver.send(topics.DECLARATIONS, [(b"DEP1", decl("DEP1", scenario="duty-free-shopping", shopper_token="RS0",
                                                         event_time="2026-06-02T00:00:00+00:00")),
                                      (b"DEP2", decl("DEP2", scenario="duty-free-shopping", shopper_token="CLEAN",
                                                     event_time="2026-06-02T00:00:00+00:00"))])
    by_id = {i["declaration_id"]: i for i in driver.instructions()}
    assert by_id["DEP1"]["action"] == "inspect" and any("resale pattern" in r for r in by_id["DEP1"]["reasons"])
    assert by_id["DEP2"]["action"] == "release"


def test_a_years_state_and_standings_expire_after_the_grace(driver):
    driver.send(topics.DUTY_FREE_PURCHASES, [(b"SH1", purchase("P1", "SH1", 60_000.0, code="A")),
                                             (b"SH1", purchase("P2", "SH1", 60_000.0, code="B", payer="PAY1"))])
    driver.forward(topics.DUTY_FREE_SHOPPER_LINKS)
    flow = driver.topology.duty_free
    assert b"SH1" in tables.contents(flow.shoppers) and b"payer:PAY1" in tables.contents(flow.links)
    assert b"q:SH1" in tables.contents(flow.standing)
    driver.advance(year_expires_at(policy().duty_free, 2026) - driver.clock() - 60)  # not yet
    assert b"SH1" in tables.contents(flow.shoppers)
    driver.advance(EXPIRY_BUCKET_S + 120)  # expiry is by hourly bucket: at most an hour late
    assert b"SH1" not in tables.contents(flow.shoppers) and b"payer:PAY1" not in tables.contents(flow.links)
    assert b"q:SH1" not in tables.contents(flow.standing)


def test_hostile_purchases_are_dead_lettered_with_the_reason(driver):
    too_many = {**purchase("H1", "SH1", 1.0), "items": [
        {"category": "other", "goods_code": f"G{n}", "quantity": 1, "unit_price_cny": 1.0} for n in range(51)], "total_cny": 51.0}
    driver.send(topics.DUTY_FREE_PURCHASES, [(b"SH1", too_many), (b"SH1", b"{oops"), (b"SH1", purchase("H3", "SH1", 2e7)),
                                             (b"SH2", purchase("H4", "SH1", 10.0))])
    letters = driver.dead_letters()
    assert [d["reason"] for d in letters] == ["schema-violation", "invalid-json", "schema-violation", "key-mismatch"]
    assert "items" in letters[0]["error"] and "total_cny" in letters[2]["error"]
    driver.send(topics.DUTY_FREE_PURCHASES, [(b"SH1", purchase("H5", "SH1", 10.0))], partition=(partition_for(b"SH1", 4) + 1) % 4)
    assert driver.dead_letters()[-1]["reason"] == "wrong-partition"
    assert tables.contents(driver.topology.duty_free.shoppers) == {} and warnings(driver) == []


def test_every_flagged_ring_shopper_expires_even_past_what_a_link_remembers(driver):
    ring = [f"RS{n}" for n in range(MAX_LINKED_SHOPPERS + 6)]
    for n, s in enumerate(ring):
        driver.send(topics.DUTY_FREE_PURCHASES, [(s.encode(), purchase(f"R{n}", s, 500.0, payer="PAY9"))])
    driver.forward(topics.DUTY_FREE_SHOPPER_LINKS)
    flow = driver.topology.duty_free
    assert len(tables.contents(flow.standing)) == len(ring)
    driver.advance(year_expires_at(policy().duty_free, 2026) - driver.clock() + EXPIRY_BUCKET_S + 60)
    assert tables.contents(flow.standing) == {} and tables.contents(flow.links) == {} and tables.contents(flow.shoppers) == {}
