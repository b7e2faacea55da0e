"""Joint control, outbound, through the worker's handlers: a found inspection result and a confirmed
warning each become one joint finding with the declaration's enterprise and HS code (from the full
state or its fingerprint), the same finding id on redelivery; nothing for a not-found result or a
dismissed warning; bad reviews dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from clients import topics
from decision.services import Services
from decision.state import Fingerprint
from schemas import JointFinding
from streams.testing import TopologyDriver
from tests.unit.streams.helpers import FixedScorer, decl, policy
from tests.unit.streams.test_state_lifecycle import COMPACT, lifecycle_settings, stored

NOW = datetime.now(UTC).replace(microsecond=0).isoformat()


@pytest.fixture
def driver() -> TopologyDriver:
    return TopologyDriver(Services(policy(), FixedScorer({})), lifecycle_settings())


def result(did: str, found: bool = True, **over: Any) -> dict[str, Any]:
    return {"schema_version": 1, "instruction_id": f"{did}:1:declaration", "declaration_id": did, "revision": 1,
            "port": "HAK-SEA", "station_id": "ST1", "found": found, "category": "cigarettes" if found else None,
            "duty_recovered": 250.0 if found else 0.0, "inspected_at": NOW, **over}


def review(did: str, verdict: str = "confirmed", **over: Any) -> dict[str, Any]:
    return {"schema_version": 1, "warning_id": f"{did}:1:value-added-implausible", "verdict": verdict,
            "rule": "value-added-implausible", "severity": "high", "subject_kind": "enterprise", "subject_id": "E1",
            "port": "HAK-SEA", "declaration_id": did, "revision": 1, "warning_time": NOW, "reviewed_at": NOW, **over}


def findings(driver: TopologyDriver) -> list[tuple[bytes | None, JointFinding]]:
    return [(k, JointFinding.model_validate_json(v)) for _, k, v in driver.records(topics.JOINT_FINDINGS) if v is not None]


def test_a_found_result_becomes_one_finding_with_the_declarations_parties(driver: TopologyDriver) -> None:
    driver.send(topics.DECLARATIONS, [(b"D1", decl("D1", hs_code="85171200")), (b"D2", decl("D2"))])
    driver.send(topics.INSPECTION_RESULTS, [(b"D1", result("D1")), (b"D2", result("D2", found=False))])
    [(key, finding)] = findings(driver)
    assert key == b"D1" and finding.kind.value == "inspection" and finding.finding_id.startswith("IR-")
    assert (finding.enterprise_id, finding.hs_code, finding.port, finding.category, finding.duty_recovered) == (
        "E1", "85171200", "HAK-SEA", "cigarettes", 250.0)
    doc = orjson.loads(driver.records(topics.JOINT_FINDINGS)[0][2] or b"")
    assert not {"station_id", "note", "score", "user", "model_version"} & set(doc)
    # Redelivered: the same finding id and the same bytes.
    driver.send(topics.INSPECTION_RESULTS, [(b"D1", result("D1"))])
    raws = [v for _, _, v in driver.records(topics.JOINT_FINDINGS)]
    assert len(raws) == 2 and raws[0] == raws[1]


def test_a_result_after_compaction_finds_the_parties_in_the_fingerprint(driver: TopologyDriver) -> None:
    driver.send(topics.DECLARATIONS, [(b"D1", decl("D1", enterprise_id="E-000123"))])
    driver.advance(COMPACT * 3)
    assert isinstance(stored(driver, b"D1"), Fingerprint)
    driver.send(topics.INSPECTION_RESULTS, [(b"D1", result("D1"))])
    [(_, finding)] = findings(driver)
    assert (finding.enterprise_id, finding.hs_code) == ("E-000123", "851712")
    driver.send(topics.INSPECTION_RESULTS, [(b"D404", result("D404"))])  # no state at all: published without them
    assert [(f.declaration_id, f.enterprise_id, f.hs_code) for _, f in findings(driver)][1] == ("D404", None, None)


def test_a_confirmed_warning_becomes_a_finding_a_dismissed_one_does_not(driver: TopologyDriver) -> None:
    driver.send(topics.DECLARATIONS, [(b"D1", decl("D1")), (b"D2", decl("D2"))])
    driver.send(topics.WARNING_REVIEWS, [(b"D1", review("D1")), (b"D2", review("D2", verdict="dismissed"))])
    [(key, finding)] = findings(driver)
    assert key == b"D1" and finding.kind.value == "confirmed-warning" and finding.finding_id.startswith("EW-")
    assert (finding.category, finding.enterprise_id, finding.hs_code, finding.subject_id) == (
        "value-added-implausible", "E1", "851712", "E1")
    driver.send(topics.WARNING_REVIEWS, [(b"D1", review("D1"))])
    assert len({f.finding_id for _, f in findings(driver)}) == 1


def test_bad_reviews_are_dead_lettered_with_the_reason(driver: TopologyDriver) -> None:
    driver.send(topics.WARNING_REVIEWS, [(b"OTHER", review("D1")), (b"D1", review("D1", port="NOWHERE")),
                                         (b"D1", {**review("D1"), "note": "x"}), (None, review("D1"))])
    assert sorted(d["reason"] for d in driver.dead_letters()) == ["key-mismatch", "key-mismatch", "schema-violation",
                                                                  "unknown-port"]
    assert findings(driver) == []
