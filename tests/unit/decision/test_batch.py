"""decide_batch: the one decision function, called here without Faust, a broker or a worker."""

from __future__ import annotations

from decision.batch import CreditBook, ReferenceData, decide_batch
from decision.services import Services
from decision.state import DeclarationState, Outcome, Phase
from policy.capacity import CapacityController
from policy.credit import UNKNOWN_ENTERPRISE, EnterpriseCredit
from policy.risklists import RiskListIndex
from schemas import Action, CreditClass, Declaration, RiskListEntry
from tests.unit.factories import NOW, declaration
from tests.unit.streams.helpers import FixedScorer, policy


def decide(decls: list[Declaration], states: dict[str, DeclarationState | None] | None = None,
           scorer: FixedScorer | None = None, index: RiskListIndex | None = None) -> tuple[list, CapacityController, FixedScorer]:
    scorer = scorer or FixedScorer({"HIGH": 0.99})
    services = Services(policy(), scorer)
    controller = CapacityController(services.policy.capacity, services.policy.ports)
    states = states if states is not None else {d.declaration_id: None for d in decls}
    refs = ReferenceData(CreditBook(lambda: {}), index or RiskListIndex())
    steps = decide_batch([(0, d) for d in decls], states, services, refs, lambda _: controller, now=NOW.timestamp())
    return steps, controller, scorer


def test_one_model_call_per_batch_and_one_step_per_declaration() -> None:
    steps, controller, scorer = decide([declaration(declaration_id=i) for i in ("A", "HIGH", "B")])
    assert scorer.calls == [3]
    assert [s.outcome for s in steps] == [Outcome.DECIDED] * 3
    assert [s.instructions[0].action for s in steps] == [Action.RELEASE, Action.INSPECT, Action.RELEASE]
    assert controller.observed("HAK-SEA") == 3


def test_a_redelivered_declaration_in_the_same_batch_is_decided_once() -> None:
    steps, controller, _ = decide([declaration(declaration_id="A"), declaration(declaration_id="A")])
    assert [s.outcome for s in steps] == [Outcome.DECIDED, Outcome.DUPLICATE]
    assert steps[1].emit == steps[0].emit and not steps[1].instructions
    assert controller.observed("HAK-SEA") == 1  # the selection is counted once


def test_states_are_carried_through_the_batch_and_returned() -> None:
    states: dict[str, DeclarationState | None] = {"A": None}
    decide([declaration(declaration_id="A"), declaration(declaration_id="A", revision=2)], states)
    stored = states["A"]
    assert stored is not None and stored.phase is Phase.FINAL and stored.decl is not None and stored.decl.revision == 1
    steps, _, scorer = decide([declaration(declaration_id="A")], states)
    assert steps[0].outcome is Outcome.DUPLICATE and scorer.calls == []  # nothing new: the model is not called


def test_references_give_credit_and_risk_hits() -> None:
    entry = RiskListEntry.model_validate({"entry_id": "R1", "list_id": "L", "kind": "origin", "value": "CN", "action": "inspect",
                                          "reason": "alert", "source_agency": "customs", "valid_from": "2020-01-01T00:00:00Z"},
                                         strict=False)
    steps, _, _ = decide([declaration(declaration_id="A")], index=RiskListIndex([entry]))
    assert steps[0].instructions[0].action is Action.INSPECT and steps[0].instructions[0].risk_hits == ["L/R1"]
    aeo = EnterpriseCredit(credit_class=CreditClass.AEO)
    book = CreditBook(lambda: {b"E1": aeo.to_bytes()})
    assert book.of("E1").credit_class is CreditClass.AEO and book.of("E2") is UNKNOWN_ENTERPRISE
