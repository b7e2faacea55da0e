"""One micro-batch of declarations decided: the one decision function of the pipeline.

The worker's agent, the backtest and the test driver all call :func:`decide_batch`; it is pure
(no Kafka, no Faust, no clock of its own), so a replay of the same declarations against the same
states, references and controllers gives the same steps, byte for byte.

Order of operations, per micro-batch:

1. classify every declaration against its stored state (new revision, duplicate, stale, late);
2. score every new revision in one model call (the model's fixed cost is paid once per batch; a
   shadow model, if loaded, in the same call);
3. in input order, for each new revision: look up the enterprise's credit and the risk-list hits,
   decide with the capacity controller of the declaration's partition and record the selection in
   it, explain (only) what is not released, and run the state machine (``decision.flow``); with a
   shadow score, decide again with it to record what the challenger would have done
   (``decision.shadow``: ``Step.shadow``, never acted on);
   a revision that is not new goes straight to the state machine (it re-emits, ignores, or refuses
   an amendment that changes the enterprise of a pending control: ``Step.refusal``).

``states`` is read and updated as the batch goes (a batch may hold several revisions of one id).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import replace
from typing import Protocol

from decision.flow import Step, Versions, classify_declaration, on_declaration
from decision.services import ScoreResult, Services, selected_risk_types
from decision.shadow import challenger_action, shadow_of
from decision.state import DeclarationState, RevisionKind, Stored
from policy.capacity import CapacityController
from policy.credit import UNKNOWN_ENTERPRISE, EffectiveCredit, EnterpriseCredit
from policy.decide import decide
from policy.dutyfree import Standing
from policy.risklists import RiskHit, RiskListIndex
from policy.zerotariff import RegisteredGoods, registered_goods
from schemas import Action, Declaration


class References(Protocol):
    """The reference data a decision reads: enterprise credit and risk-list hits."""

    def credit_for(self, declaration: Declaration) -> EffectiveCredit: ...

    def risk_hits(self, declaration: Declaration) -> list[RiskHit]: ...

    def zero_tariff_goods(self, declaration: Declaration) -> list[RegisteredGoods]: ...
    def duty_free_for(self, declaration: Declaration) -> Sequence[Standing]: ...


def decide_batch(
    declarations: Sequence[tuple[int, Declaration]],
    states: MutableMapping[str, Stored | None],
    services: Services,
    references: References,
    controller_for: Callable[[int], CapacityController],
    now: float,
) -> list[Step]:
    """Decide ``(partition, declaration)`` pairs in order; one ``Step`` per pair.

    ``states`` must hold an entry (None for unknown) for every declaration id; it is updated with
    each step's new state. ``controller_for(partition)`` is called once per new revision."""
    policy = services.policy
    # An amendment refused for changing the enterprise or the port is neither scored nor counted by the controller.
    to_score = [d for _, d in declarations
                if classify_declaration(states[d.declaration_id], d.revision, d.enterprise_id, d.port) is RevisionKind.NEW]
    scored = services.score(to_score)
    steps: list[Step] = []
    for partition, decl in declarations:
        state = states[decl.declaration_id]
        decision = score = shadow = None
        risk_types: tuple[str, ...] = ()
        versions = Versions(policy.version, None)
        if classify_declaration(state, decl.revision, decl.enterprise_id, decl.port) is RevisionKind.NEW:
            result = _score(scored, services, decl)
            score = result.score
            versions = Versions(policy.version, result.model_version)
            controller = controller_for(partition)
            credit, hits, offsets = references.credit_for(decl), references.risk_hits(decl), controller.offsets(decl.port)
            registered = references.zero_tariff_goods(decl) if decl.goods_identifiers else []
            standings = references.duty_free_for(decl) if decl.shopper_token is not None else ()
            decision = decide(policy, decl, credit, score, hits, offsets, result.value_added, registered, standings)
            if result.shadow is not None:  # the challenger decides on the same footing; only the champion is acted on
                version, challenger_score = result.shadow
                held = state if isinstance(state, DeclarationState) else None
                challenger = decide(policy, decl, credit, challenger_score, hits, offsets, result.value_added, registered,
                                    standings)
                shadow = (version, challenger_score, challenger_action(held, challenger))
            controller.observe(decl.port, decision.action)
            risk_types = selected_risk_types(result.risk_scores, decision.action, decision.thresholds)
            if decision.action is not Action.RELEASE:
                decision = replace(decision, reasons=decision.reasons + result.explain())
        step = on_declaration(state, decl, decision, score, versions, policy.scan.timeout_for(decl.port), now,
                              policy.scan.clock_skew_s, risk_types=risk_types)
        if shadow is not None and step.instructions:
            step.shadow = shadow_of(step.instructions[0], *shadow)
        if step.state is not None:
            states[decl.declaration_id] = step.state
        steps.append(step)
    return steps


def _score(scored: Mapping[tuple[str, int], ScoreResult], services: Services, decl: Declaration) -> ScoreResult:
    key = (decl.declaration_id, decl.revision)
    result = scored.get(key)
    if result is None:  # a revision that became new within the batch: scored on its own
        result = services.score([decl])[key]
    return result


class CreditBook:
    """Enterprises' current credit, read from the folded credit table's contents (enterprise id
    bytes -> ``EnterpriseCredit`` bytes) at each read. Decisions get the effective view
    (``EffectiveCredit``: under a microsecond to decode, so nothing is kept per enterprise); the
    fold gets the whole record with the agencies' entries (``record_of``), which is never cached:
    parsed, it is about 8 KB for an enterprise with 20 agencies (docs/benchmark.md, "The worker's
    memory during a reload")."""

    def __init__(self, contents: Callable[[], Mapping[bytes, bytes]]) -> None:
        self._contents = contents

    def of(self, enterprise_id: str) -> EffectiveCredit:
        raw = self._contents().get(enterprise_id.encode())
        return EffectiveCredit.from_bytes(raw) if raw else UNKNOWN_ENTERPRISE

    def record_of(self, enterprise_id: str) -> EnterpriseCredit:
        raw = self._contents().get(enterprise_id.encode())
        return EnterpriseCredit.from_bytes(raw) if raw else UNKNOWN_ENTERPRISE


class ReferenceData:
    """``References`` over the worker's reference tables: the credit book, the risk-list index,
    the zero-tariff register's contents (``policy.zerotariff``; None: an empty register) and the
    duty-free standings (flagged shoppers' keys -> ``Standing`` bytes)."""

    def __init__(self, credit: CreditBook, risk_index: RiskListIndex,
                 zero_tariff: Callable[[], Mapping[bytes, bytes]] | None = None,
                 standings: Callable[[], Mapping[bytes, bytes]] | None = None) -> None:
        self.credit = credit
        self.risk_index = risk_index
        self._zero_tariff = zero_tariff
        self._standings = standings

    def duty_free_for(self, declaration: Declaration) -> list[Standing]:
        if self._standings is None or declaration.shopper_token is None:
            return []
        return standings_of(self._standings(), declaration.shopper_token)

    def credit_for(self, declaration: Declaration) -> EffectiveCredit:
        return self.credit.of(declaration.enterprise_id)

    def risk_hits(self, declaration: Declaration) -> list[RiskHit]:
        return self.risk_index.matches(declaration)

    def zero_tariff_goods(self, declaration: Declaration) -> list[RegisteredGoods]:
        return registered_goods(self._zero_tariff(), declaration) if self._zero_tariff is not None else []


def standings_of(contents: Mapping[bytes, bytes], shopper: str) -> list[Standing]:
    """A shopper's standings in the duty-free standing table: the shopper's own year (key
    ``q:<token>``) and its resale ties (``l:<token>``); an unreadable value counts as none."""
    found = []
    for prefix in (b"q:", b"l:"):
        raw = contents.get(prefix + shopper.encode())
        if raw:
            try:
                found.append(Standing.from_bytes(raw))
            except ValueError:
                continue
    return found
