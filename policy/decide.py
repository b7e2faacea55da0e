"""Declaration-time decision. Pure functions, no I/O: the worker, the backtest and the tests all
call the same code, so a backtest shows what the worker would have done.

Precedence is fixed (a policy file tunes each stage but cannot reorder them):

1. **Hard rules** (``rule``): a zero-tariff or processing value-added declaration from an
   enterprise whose matching qualification is not active -> inspect; an enterprise under joint
   penalty -> at least ``rules.joint_penalty_min_action``; a processing value-added ratio under
   the threshold (duty due) or implausibly above the history (``policy.valueadded``: an early
   warning too), zero-tariff goods on the register declared to the mainland (``policy.zerotariff``:
   an early warning too) -> the policy's action for it; a duty-free-shopping declaration (pick-up and
   departure) of a shopper flagged this year (quota, per-item limits, identity, resale patterns:
   ``policy.dutyfree``) -> ``duty_free.departure_action``.
2. **Risk-list hits** (``risk-list``): an entry of an ``inspect`` list -> inspect, of a
   ``machine-check`` list -> machine-check; ``watch`` entries change nothing but are recorded
   (``Decision.risk_hits`` and a reason line).
3. **Model score** (``model-threshold``) against the credit class's thresholds (scenario override
   if any), moved by the capacity controller's offset for the port and lane and then held inside
   the class's ``capacity.bounds``.
4. **Random selection** (``random``): a share of declarations drawn from a hash of the policy
   seed and the declaration id, so a replay selects the same ones.

Every stage proposes an action; the most severe wins (inspect > machine-check > release). On a tie
the earlier stage names the selection reason. The reasons keep every proposal's text in stage
order, followed by the watch-list notes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence, Sized
from dataclasses import dataclass

from policy.capacity import NO_OFFSETS, LaneOffsets
from policy.config import Policy, Thresholds
from policy.credit import EffectiveCredit
from policy.dutyfree import Standing, departure_findings
from policy.risklists import RiskHit
from policy.valueadded import RatioHistory, WarningProposal, check_value_added
from policy.zerotariff import RegisteredGoods, check_declaration
from schemas import Action, CreditClass, Declaration, Qualification, RiskListAction, Scenario, SelectionReason

SEVERITY = {Action.RELEASE: 0, Action.MACHINE_CHECK: 1, Action.INSPECT: 2}

_SCENARIO_QUALIFICATION = {
    Scenario.ZERO_TARIFF: Qualification.ZERO_TARIFF,
    Scenario.PROCESSING_VALUE_ADDED: Qualification.PROCESSING_VALUE_ADDED,
}
_LIST_ACTION = {RiskListAction.INSPECT: Action.INSPECT, RiskListAction.MACHINE_CHECK: Action.MACHINE_CHECK}


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    selection_reason: SelectionReason
    credit_class: CreditClass
    reasons: tuple[str, ...]
    # Every matched risk-list entry as "list_id/entry_id" (watch entries included), most severe first.
    risk_hits: tuple[str, ...] = ()
    # The (machine-check, inspect) thresholds the score was compared with, after capacity offsets
    # and bounds: recorded so that an instruction can be reproduced without the controller state.
    thresholds: tuple[float, float] | None = None
    # The named rules that fired (policy.valueadded.RULES) and the early warnings raised.
    rules: tuple[str, ...] = ()
    warnings: tuple[WarningProposal, ...] = ()


class BatchNotAllowed(ValueError):
    """A centralised declaration the policy refuses: the enterprise's class may not submit one."""

    reason_code = "centralised-not-allowed"


class TooManyItems(BatchNotAllowed):
    """A centralised declaration with more goods items than ``batch.max_items`` (or none)."""

    reason_code = "centralised-too-many-items"


def random_draw(seed: int, declaration_id: str) -> float:
    """A uniform number in [0, 1) fixed by the policy seed and the declaration id (replayable)."""
    digest = hashlib.blake2b(f"{seed}:{declaration_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def effective_thresholds(
    policy: Policy, credit_class: CreditClass, scenario: Scenario, offsets: LaneOffsets = NO_OFFSETS,
) -> tuple[float, float]:
    """Configured thresholds plus the capacity offsets, held inside the class's bounds.

    The machine-check threshold may end up above the inspect one; the machine-check lane is then
    empty for that class (inspect is tested first), which is the right outcome and keeps both
    bounds intact."""
    return _adapted(policy.thresholds_for(credit_class, scenario), policy, credit_class, offsets)


def _adapted(base: Thresholds, policy: Policy, credit_class: CreditClass, offsets: LaneOffsets) -> tuple[float, float]:
    bounds = policy.capacity.bounds_for(credit_class)
    return (bounds.machine_check.clamp(base.machine_check + offsets.machine_check),
            bounds.inspect.clamp(base.inspect + offsets.inspect))


def _threshold_text(lane: str, value: float, configured: float) -> str:
    if abs(value - configured) < 5e-5:
        return f"{lane} threshold {value:.2f}"
    return f"{lane} threshold {value:.2f} (configured {configured:.2f}, adapted to port capacity)"


def decide(
    policy: Policy,
    declaration: Declaration,
    credit: EffectiveCredit,
    score: float,
    hits: Sequence[RiskHit] = (),
    offsets: LaneOffsets | None = None,
    history: RatioHistory | None = None,
    registered: Sequence[RegisteredGoods] = (),
    duty_free: Sequence[Standing] = (),
) -> Decision:
    """Decide one declaration. ``hits``: ``RiskListIndex.matches(declaration)``; ``offsets``:
    ``CapacityController.offsets(declaration.port)`` (None: the configured thresholds);
    ``history``: the value-added ratio history the model call returned (processing declarations);
    ``registered``: the zero-tariff register's entries of the goods the declaration names.
    ``duty_free``: the standings of a duty-free shopper (``References.duty_free_for``).
    Model explanations are added by the caller, only for the declarations that are selected
    (explaining costs more than scoring)."""
    credit_class = credit.effective_class
    proposals: list[tuple[Action, SelectionReason, str]] = []

    # 1. Hard rules.
    required = _SCENARIO_QUALIFICATION.get(declaration.scenario)
    if required is not None and declaration.scenario in policy.rules.require_qualification and not credit.qualified_for(required):
        status = credit.qualifications.get(required.value, "not registered")
        proposals.append((Action.INSPECT, SelectionReason.RULE, f"{required.value} qualification is {status}"))
    if credit.joint_penalty:
        proposals.append((policy.rules.joint_penalty_min_action, SelectionReason.RULE, "enterprise under joint penalty"))
    # Processing value-added: duty due under the threshold, an implausible claim selected and warned of.
    findings = check_value_added(policy.processing_value_added, declaration, history)
    # Zero-tariff goods declared to the mainland: duty due, inspected and warned of.
    findings += check_declaration(policy.zero_tariff, declaration, registered)
    # Duty-free shopping: the departure of a shopper flagged this year (quota, limits, resale) is held.
    findings += departure_findings(policy.duty_free, declaration, duty_free)
    for finding in findings:
        proposals.append((finding.action, SelectionReason.RULE, finding.reason))
    rules = tuple(f.rule for f in findings)
    warnings = tuple(f.warning for f in findings if f.warning is not None)

    # 2. Risk-list hits (watch entries are only noted).
    notes: list[str] = []
    for hit in hits:
        action = _LIST_ACTION.get(hit.action)
        if action is None:
            notes.append(f"watch: {hit.describe()}")
        else:
            proposals.append((action, SelectionReason.RISK_LIST, f"{hit.action.value}: {hit.describe()}"))

    # 3. Model score against the credit class's (capacity-adapted, bounded) thresholds.
    base = policy.thresholds_for(credit_class, declaration.scenario)
    mc, insp = _adapted(base, policy, credit_class, offsets or NO_OFFSETS)
    if score >= insp:
        proposals.append((Action.INSPECT, SelectionReason.MODEL_THRESHOLD,
                          f"risk score {score:.2f} >= {_threshold_text('inspect', insp, base.inspect)} ({credit_class.value})"))
    elif score >= mc:
        proposals.append((Action.MACHINE_CHECK, SelectionReason.MODEL_THRESHOLD,
                          f"risk score {score:.2f} >= {_threshold_text('machine-check', mc, base.machine_check)} ({credit_class.value})"))

    # 4. Purely random selection.
    selection = policy.random_selection
    if selection.share > 0 and random_draw(policy.seed, declaration.declaration_id) < selection.share:
        proposals.append((selection.action, SelectionReason.RANDOM, f"random selection ({selection.share:.1%} of declarations)"))

    refs = tuple(h.ref for h in hits)
    if not proposals:
        # _value_: see decision.flow
        below = f"risk score {score:.2f} below thresholds ({credit_class._value_}: machine-check {mc:.2f}, inspect {insp:.2f})"
        return Decision(Action.RELEASE, SelectionReason.NONE, credit_class, (below, *notes), refs, (mc, insp), rules, warnings)
    # max() keeps the first of equally severe proposals, i.e. the earlier stage.
    action, reason, _ = max(proposals, key=lambda p: SEVERITY[p[0]])
    return Decision(action, reason, credit_class, (*(text for _, _, text in proposals), *notes), refs, (mc, insp), rules, warnings)


def check_centralised(policy: Policy, credit: EffectiveCredit, items: Sized) -> None:
    """May this enterprise submit a centralised declaration of ``items``? Only effective classes in
    ``batch.allowed_classes`` may (a joint penalty overrides a white-list certification), with 1 to
    ``batch.max_items`` items. Raises BatchNotAllowed (or TooManyItems) saying why."""
    effective = credit.effective_class
    if effective not in policy.batch.allowed_classes:
        why = " (joint penalty)" if credit.joint_penalty else ""
        allowed = ", ".join(c.value for c in policy.batch.allowed_classes) or "none"
        raise BatchNotAllowed(f"credit class {effective.value}{why} may not submit centralised declarations (allowed: {allowed})")
    if not 1 <= len(items) <= policy.batch.max_items:
        raise TooManyItems(f"a centralised declaration needs 1 to {policy.batch.max_items} items, got {len(items)}")


def decide_items(
    policy: Policy,
    items: Sequence[Declaration],
    credit: EffectiveCredit,
    scores: Sequence[float],
    hits: Sequence[Sequence[RiskHit]] | None = None,
    offsets: LaneOffsets | None = None,
) -> list[Decision]:
    """A centralised declaration: one decision per goods item, each item a ``Declaration`` with its
    own id (e.g. ``{centralised id}-{item no:04d}``), so each gets its own instruction, random draw
    and scan join. Refused (BatchNotAllowed) unless ``check_centralised`` allows it. (The worker
    runs ``check_centralised`` in its split agent, then decides each item as a declaration.)"""
    check_centralised(policy, credit, items)
    if len({i.enterprise_id for i in items}) != 1:
        raise BatchNotAllowed("all items of a centralised declaration must belong to one enterprise")
    if len(scores) != len(items) or (hits is not None and len(hits) != len(items)):
        raise ValueError("one score (and one hit list) per item is needed")
    return [decide(policy, item, credit, score, hits[i] if hits is not None else (), offsets)
            for i, (item, score) in enumerate(zip(items, scores))]
