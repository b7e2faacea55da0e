"""Declaration-time decision: hard rules, then model thresholds, then random selection.

Precedence is fixed: each stage proposes an action and the most severe action wins; on a tie the
earlier stage gives the reason (rule before model before random). Pure functions, no I/O: the
worker, the backtest and the tests all call the same code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from policy.config import Policy
from policy.credit import EnterpriseCredit
from schemas import Action, CreditClass, Declaration, Qualification, Scenario, SelectionReason

SEVERITY = {Action.RELEASE: 0, Action.MACHINE_CHECK: 1, Action.INSPECT: 2}

_SCENARIO_QUALIFICATION = {
    Scenario.ZERO_TARIFF: Qualification.ZERO_TARIFF,
    Scenario.PROCESSING_VALUE_ADDED: Qualification.PROCESSING_VALUE_ADDED,
}


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    selection_reason: SelectionReason
    credit_class: CreditClass
    reasons: tuple[str, ...]


def random_draw(seed: int, declaration_id: str) -> float:
    """A uniform number in [0, 1) fixed by the policy seed and the declaration id (replayable)."""
    digest = hashlib.blake2b(f"{seed}:{declaration_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def decide(
    policy: Policy,
    declaration: Declaration,
    credit: EnterpriseCredit,
    score: float,
) -> Decision:
    """Decide one declaration. Model explanations are added by the caller, only for the
    declarations that are selected (explaining costs more than scoring)."""
    credit_class = credit.effective_class
    proposals: list[tuple[Action, SelectionReason, str]] = []

    # 1. Hard rules.
    required = _SCENARIO_QUALIFICATION.get(declaration.scenario)
    if required is not None and declaration.scenario in policy.rules.require_qualification and not credit.qualified_for(required):
        status = credit.qualifications.get(required.value, "not registered")
        proposals.append((Action.INSPECT, SelectionReason.RULE, f"{required.value} qualification is {status}"))
    if credit.joint_penalty:
        proposals.append((policy.rules.joint_penalty_min_action, SelectionReason.RULE, "enterprise under joint penalty"))

    # 2. Model score against the credit class's thresholds.
    limits = policy.thresholds_for(credit_class, declaration.scenario)
    if score >= limits.inspect:
        proposals.append((Action.INSPECT, SelectionReason.MODEL_THRESHOLD, f"risk score {score:.2f} >= inspect threshold {limits.inspect:.2f} ({credit_class.value})"))
    elif score >= limits.machine_check:
        proposals.append((Action.MACHINE_CHECK, SelectionReason.MODEL_THRESHOLD, f"risk score {score:.2f} >= machine-check threshold {limits.machine_check:.2f} ({credit_class.value})"))

    # 3. Purely random selection.
    selection = policy.random_selection
    if selection.share > 0 and random_draw(policy.seed, declaration.declaration_id) < selection.share:
        proposals.append((selection.action, SelectionReason.RANDOM, f"random selection ({selection.share:.1%} of declarations)"))

    if not proposals:
        return Decision(Action.RELEASE, SelectionReason.NONE, credit_class, (f"risk score {score:.2f} below thresholds ({credit_class.value})",))
    # max() keeps the first of equally severe proposals, i.e. the earlier stage.
    action, reason, _ = max(proposals, key=lambda p: SEVERITY[p[0]])
    return Decision(action, reason, credit_class, tuple(text for _, _, text in proposals))
