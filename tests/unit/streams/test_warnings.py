"""Early warnings through the worker's handlers: on the warnings topic once per declaration, stored
with the state (a redelivery re-emits the same bytes), counted; processing declarations without
their values dead-lettered with the reason."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest
from prometheus_client import REGISTRY

from clients import topics
from decision.services import Services
from schemas import EarlyWarning
from schemas.partitioning import partition_for
from streams.testing import TopologyDriver
from streams.topology import publish_metrics
from tests.unit.streams.helpers import FixedScorer, decl, policy


class HistoryScorer(FixedScorer):
    """A fixed score, and a value-added history of mean ratio 0.4 over 50 declarations for every enterprise."""

    def score(self, declarations):
        batch = super().score(declarations)
        batch.value_added = np.tile([0.4, 50.0, 0.5, 800.0], (len(declarations), 1))
        return batch


@pytest.fixture
def driver():
    return TopologyDriver(Services(policy(), HistoryScorer()))


def processing(did: str, imported: float, added: float, **over) -> dict:
    return decl(did, scenario="processing-value-added", declared_value=imported + added, imported_material_value=imported,
                value_added=added, **over)


def warned(rule: str) -> float:
    return REGISTRY.get_sample_value("customs_early_warnings_total", {"severity": "high", "rule": rule}) or 0.0


def test_an_implausible_claim_raises_one_warning_on_the_declarations_partition(driver):
    driver.send(topics.DECLARATIONS, [(b"P1", processing("P1", 1000.0, 2000.0)), (b"P2", processing("P2", 1000.0, 450.0)),
                                      (b"P3", processing("P3", 1000.0, 100.0))])
    records = driver.records(topics.WARNINGS)
    assert [k for _, k, _ in records] == [b"P1"]  # P2 is plausible, P3 under the threshold: duty, not a warning
    partition, _, raw = records[0]
    assert partition == partition_for(b"P1", driver.settings.partitions)
    w = EarlyWarning.model_validate_json(raw)
    assert (w.warning_id, w.rule, w.subject_id, w.declaration_id) == ("P1:1:value-added-implausible", "value-added-implausible", "E1", "P1")
    by_id = {i["declaration_id"]: i for i in driver.instructions()}
    assert by_id["P1"]["action"] == "inspect" and any("implausible value added" in r for r in by_id["P1"]["reasons"])
    assert not any("value added" in r for r in by_id["P2"]["reasons"])  # only the (unregistered) qualification
    assert by_id["P3"]["action"] == "inspect" and any(r.startswith("duty due") for r in by_id["P3"]["reasons"])


def test_a_redelivered_declaration_re_emits_the_same_warning_bytes_and_counts_once(driver):
    before = warned("value-added-implausible")
    handle = driver.topology.handle_declarations_and_scans
    event = driver._event(topics.DECLARATIONS, b"P1", processing("P1", 1000.0, 2000.0), None)
    first = handle([event])
    publish_metrics(first)  # what the agent does with every micro-batch
    assert warned("value-added-implausible") == before + 1
    driver.advance(5)  # another clock reading: the stored bytes, not a new decision
    again = handle([event])
    publish_metrics(again)
    name = driver.settings.topic(topics.WARNINGS)
    assert [v for t, _, _, v in first.records() if t == name] == [v for t, _, _, v in again.records() if t == name]
    assert len([v for t, _, _, v in again.records() if t == name]) == 1
    assert warned("value-added-implausible") == before + 1  # raised once, re-emitted on redelivery


def test_a_processing_declaration_without_its_values_is_dead_lettered_with_the_reason(driver):
    bare = decl("P9", scenario="processing-value-added")
    driver.send(topics.DECLARATIONS, [(b"P9", bare)])
    (letter,) = driver.dead_letters()
    assert letter["reason"] == "schema-violation" and "needs imported_material_value and value_added" in letter["error"]
    assert orjson.loads(base64.b64decode(letter["value_b64"]))["declaration_id"] == "P9"
    assert driver.instructions() == [] and driver.records(topics.WARNINGS) == []
