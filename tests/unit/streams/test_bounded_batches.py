"""Micro-batches are bounded by the declarations their records carry, and an oversize gateway batch
record is refused whole (issue 15, item 5)."""

from __future__ import annotations

import orjson
import pytest

from clients import topics
from common.settings import Settings
from decision.services import Services
from schemas.partitioning import partition_for
from streams.limits import carried, record_weight
from streams.testing import FakeEvent, FakeMessage, TopologyDriver
from tests.unit.streams.helpers import FixedScorer, decl, policy

PARTITIONS = 4


def ids_on(partition: int, n: int, prefix: str = "GB") -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        did = f"{prefix}-{i:06d}"
        if partition_for(did.encode(), PARTITIONS) == partition:
            out.append(did)
        i += 1
    return out


def batch_record(batch_id: str, ids: list[str]) -> dict:
    return {"schema_version": 1, "batch_id": batch_id, "gateway": "GW1", "declarations": [decl(d) for d in ids]}


@pytest.fixture
def driver() -> TopologyDriver:
    settings = Settings(app_id="driver", partitions=PARTITIONS, takeover_grace_s=0, gateway_batch_max_declarations=100)
    return TopologyDriver(Services(policy(), FixedScorer()), settings)


def test_a_batch_record_over_the_limit_is_refused_whole_and_one_at_the_limit_is_decided(driver: TopologyDriver) -> None:
    over, at = ids_on(1, 101, "OVER"), ids_on(1, 100, "AT")
    driver.send(topics.DECLARATION_BATCHES, [(b"B-OVER", batch_record("B-OVER", over))], partition=1)
    driver.send(topics.DECLARATION_BATCHES, [(b"B-AT", batch_record("B-AT", at))], partition=1)
    letters = driver.dead_letters()
    assert [d["reason"] for d in letters] == ["batch-too-large"]
    assert "101 declarations" in letters[0]["error"] and "at most 100" in letters[0]["error"]
    decided = {i["declaration_id"] for i in driver.instructions()}
    assert decided == set(at)  # nothing of the refused record is decided


def test_a_record_weighs_the_declarations_it_may_carry_without_being_parsed() -> None:
    ids = ids_on(0, 37)
    raw = orjson.dumps(batch_record("B1", ids))
    assert carried(raw, 5000) == 37
    assert carried(raw, 10) == 10  # capped: a record over the limit is refused, not decided
    assert carried(orjson.dumps(decl("D1")), 5000) == 1
    assert carried(None, 5000) == 1
    # A '{' inside a string only makes a record heavier; an object cannot hide from the count.
    assert carried(b'{"batch_id": "{{{", "declarations": [{"a": 1}]}', 5000) >= 1
    weight = record_weight({"t.batches": 5000})
    assert weight(FakeEvent(FakeMessage("t.batches", 0, 0, b"B1", raw))) == 37
    assert weight(FakeEvent(FakeMessage("t.declarations", 0, 0, b"D1", raw))) == 1  # another topic: one record
