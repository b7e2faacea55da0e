"""Shadow (challenger) scores published with the batch's instructions: one strict ShadowScore per
newly decided revision, the challenger's action at the same thresholds, and the metrics."""

from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY

from clients import topics
from decision.services import Services
from schemas import ControlInstruction, ShadowScore
from streams.testing import TopologyDriver
from tests.unit.streams.helpers import FixedScorer, decl, policy


class ShadowScorer(FixedScorer):
    """A champion from ``scores`` and a challenger from ``challenger`` (nan: no shadow model covers it)."""

    def __init__(self, scores: dict[str, float], challenger: dict[str, float]) -> None:
        super().__init__(scores)
        self.challenger = challenger

    def score(self, declarations):
        batch = super().score(declarations)
        batch.shadow_scores = [self.challenger.get(d.declaration_id, math.nan) for d in declarations]
        batch.shadow_versions = [None if math.isnan(s) else "challenger-2" for s in batch.shadow_scores]
        return batch

    def shadow_versions(self):
        return {"general-trade": "challenger-2"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def shadows(driver: TopologyDriver) -> dict[str, tuple[int, ShadowScore]]:
    return {s.declaration_id: (p, s) for p, _, raw in driver.records(topics.SHADOW_SCORES)
            for s in [ShadowScore.model_validate_json(raw or b"")]}


def test_each_new_revision_gets_one_shadow_score_beside_its_instruction() -> None:
    scorer = ShadowScorer({"UP": 0.0, "DOWN": 0.99, "SAME": 0.6, "UNCOVERED": 0.0},
                          {"UP": 0.99, "DOWN": 0.0, "SAME": 0.62})
    driver = TopologyDriver(Services(policy(), scorer))
    scores_before = sample("customs_shadow_scores_total", scenario="general-trade", version="challenger-2")
    up_before = sample("customs_shadow_disagreements_total", scenario="general-trade", version="challenger-2",
                       champion_action="release", challenger_action="inspect")
    driver.send(topics.DECLARATIONS, [(d.encode(), decl(d)) for d in ("UP", "DOWN", "SAME", "UNCOVERED")])
    driver.send(topics.DECLARATIONS, [(b"UP", decl("UP"))])  # redelivered: re-emits the instruction, scores nothing

    got = shadows(driver)
    assert sorted(got) == ["DOWN", "SAME", "UP"]
    assert len(driver.records(topics.SHADOW_SCORES)) == 3
    instructions = {i["declaration_id"]: ControlInstruction.model_validate(i, strict=False) for i in driver.instructions()}
    placed = {k: p for p, k, _ in driver.records(topics.INSTRUCTIONS)}
    for did, (partition, shadow) in got.items():
        first = instructions[did]
        assert shadow.instruction_id == first.instruction_id == f"{did}:1:declaration"
        assert (shadow.champion_version, shadow.champion_score, shadow.champion_action) == (first.model_version, first.score, first.action)
        assert shadow.thresholds == first.thresholds and shadow.decided_at == first.decided_at
        assert shadow.challenger_version == "challenger-2" and partition == placed[did.encode()]
    assert (got["UP"][1].champion_action.value, got["UP"][1].challenger_action.value) == ("release", "inspect")
    assert (got["DOWN"][1].champion_action.value, got["DOWN"][1].challenger_action.value) == ("inspect", "release")
    assert got["SAME"][1].champion_action == got["SAME"][1].challenger_action
    assert sample("customs_shadow_scores_total", scenario="general-trade", version="challenger-2") - scores_before == 3
    assert sample("customs_shadow_disagreements_total", scenario="general-trade", version="challenger-2",
                  champion_action="release", challenger_action="inspect") - up_before == 1


def test_no_shadow_model_no_shadow_records() -> None:
    driver = TopologyDriver(Services(policy(), FixedScorer({"A": 0.99})))
    driver.send(topics.DECLARATIONS, [(b"A", decl("A")), (b"B", decl("B"))])
    assert len(driver.instructions()) == 2 and driver.records(topics.SHADOW_SCORES) == []


@pytest.mark.parametrize("amended_score,expected", [(0.0, "machine-check"), (0.99, "inspect")])
def test_the_challenger_does_not_lower_a_pending_control_either(amended_score: float, expected: str) -> None:
    scorer = ShadowScorer({"P": 0.6}, {"P": 0.6})
    driver = TopologyDriver(Services(policy(), scorer))
    driver.send(topics.DECLARATIONS, [(b"P", decl("P"))])  # machine-check, awaiting its scan
    scorer.scores["P"], scorer.challenger["P"] = 0.6, amended_score
    driver.send(topics.DECLARATIONS, [(b"P", decl("P", revision=2))])
    amended = [s for _, s in shadows_all(driver) if s.revision == 2]
    assert [(s.champion_action.value, s.challenger_action.value) for s in amended] == [("machine-check", expected)]


def shadows_all(driver: TopologyDriver) -> list[tuple[int, ShadowScore]]:
    return [(p, ShadowScore.model_validate_json(raw or b"")) for p, _, raw in driver.records(topics.SHADOW_SCORES)]
