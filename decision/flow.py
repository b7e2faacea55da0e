"""The life of one declaration, as a pure state machine over its stored state.

    declaration ──> release / inspect (final)
               └──> machine-check (pre-determined) ──> scan: clean -> release, suspicious -> inspect
                                                  └──> no scan before the port's deadline -> inspect

The worker keeps one ``DeclarationState`` per declaration id in a changelog-backed Faust table;
every function here takes that state (or None) and returns a ``Step``: the new state and what to
emit. Keeping the transitions free of I/O is what lets the tests drive them deterministically, and
what makes at-least-once delivery safe: a redelivered event finds its own effect in the state and
re-emits the *same* instruction bytes (consumers deduplicate by ``instruction_id``) instead of
deciding again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from msgspec.structs import replace

from common.timefmt import utc_iso
from decision.guards import (
    Refusal,
    amendment_moves,
    amendment_refusal,
    hold_pending_control,
    scan_refusal,
)
from decision.shadow import Shadow
from decision.state import (
    SCHEMA_VERSION,
    DeclarationState,
    DeclarationSummary,
    Fingerprint,
    Instruction,
    Outcome,
    Phase,
    RevisionKind,
    ScanSummary,
    encode_instruction,
)
from policy.config import DEFAULT_CLOCK_SKEW_S
from policy.decide import Decision
from policy.valueadded import WarningProposal
from schemas import Action, CreditClass, Declaration, EarlyWarning, ScanResult, ScanVerdict, SelectionReason, Stage, WarningSource

# Hot paths read enum values as ``member._value_`` (the stored value, a plain attribute): on Python
# 3.11 the ``.value`` property is a descriptor call, and a declaration would pay it about ten times.


@dataclass(slots=True)
class Step:
    """The result of one transition."""

    state: DeclarationState | None  # new state to store (None: leave the table as it is)
    instructions: list[Instruction] = field(default_factory=list)  # decided by this step
    emit: list[bytes] = field(default_factory=list)  # instruction bytes to send: the new ones, or a duplicate's stored ones
    deadline: float | None = None  # set a scan deadline (epoch seconds)
    clear_deadline: bool = False
    outcome: Outcome = Outcome.DECIDED
    refusal: Refusal | None = None  # an input to dead-letter (decision.guards); with a scan: the kept early scan
    shadow: Shadow | None = None  # the challenger's score of a newly decided revision (decision.shadow), to publish
    warnings: list[bytes] = field(default_factory=list)  # early-warning bytes to send: new ones, or a duplicate's stored ones
    raised: list[tuple[str, str]] = field(default_factory=list)  # (severity, rule) of the warnings raised by this step
    rules: tuple[str, ...] = ()  # the named policy rules that fired (policy.valueadded.RULES)


@dataclass(frozen=True, slots=True)
class Versions:
    policy_version: str
    model_version: str | None


def instruction_id(declaration_id: str, revision: int, stage: Stage) -> str:
    return f"{declaration_id}:{revision}:{stage._value_}"


@lru_cache(maxsize=16)  # a micro-batch shares one clock reading: format it once
def _iso(ts: float) -> str:
    return utc_iso(ts)


def _instruction(
    decl: DeclarationSummary, stage: Stage, action: Action, final: bool, reason: SelectionReason,
    credit_class: CreditClass, score: float | None, versions: Versions, reasons: tuple[str, ...] | list[str], now: float,
    suspected: list[str] | None = None, scan_id: str | None = None,
    risk_hits: tuple[str, ...] | list[str] = (), thresholds: tuple[float, float] | None = None,
    risk_types: tuple[str, ...] | list[str] = (),
) -> Instruction:
    return Instruction(
        schema_version=SCHEMA_VERSION,
        instruction_id=instruction_id(decl.declaration_id, decl.revision, stage),
        declaration_id=decl.declaration_id,
        revision=decl.revision,
        port=decl.port,
        enterprise_id=decl.enterprise_id,
        scenario=decl.scenario,
        stage=stage,
        action=action,
        final=final,
        selection_reason=reason,
        credit_class=credit_class,
        score=score,
        model_version=versions.model_version,
        policy_version=versions.policy_version,
        reasons=list(reasons),
        risk_hits=list(risk_hits),
        thresholds=thresholds,
        suspected_categories=suspected or [],
        scan_id=scan_id,
        event_time=decl.event_time,
        decided_at=_iso(now),
        centralised_id=decl.centralised_id,
        risk_types=list(risk_types),
    )


def _summary(d: Declaration) -> DeclarationSummary:
    return DeclarationSummary(
        d.declaration_id, d.revision, d.port, d.enterprise_id, d.scenario,
        d.event_time.isoformat().replace("+00:00", "Z"), d.centralised_id,  # in the declaration's own offset: not converted
        d.hs_code,
    )


def scan_summary(scan: ScanResult) -> ScanSummary:
    return ScanSummary(scan.scan_id, scan.revision, scan.device_type._value_, scan.anomaly_score, scan.verdict,
                       list(scan.suspected_categories), scan.port, scan.device_id, scan.event_time.timestamp())


def classify_declaration(state: DeclarationState | Fingerprint | None, revision: int, enterprise_id: str | None = None,
                         port: str | None = None) -> RevisionKind:
    """What a declaration revision means given the stored state, before any scoring (with
    ``enterprise_id`` and ``port``: an amendment of a pending control that changes the enterprise
    or the port is refused)."""
    if isinstance(state, Fingerprint):  # finalised long ago: nothing is new any more
        return _against_fingerprint(state, revision)
    if state is None or state.decl is None:
        return RevisionKind.NEW
    stored = state.decl.revision
    if revision < stored:
        return RevisionKind.STALE
    if revision == stored:
        return RevisionKind.DUPLICATE
    if state.phase is Phase.FINAL:
        return RevisionKind.LATE_REVISION
    if enterprise_id is not None and amendment_moves(state, "enterprise_id", enterprise_id):
        return RevisionKind.ENTERPRISE_CHANGED
    if port is not None and amendment_moves(state, "port", port):
        return RevisionKind.PORT_CHANGED
    return RevisionKind.NEW


def on_declaration(
    state: DeclarationState | Fingerprint | None, decl: Declaration, decision: Decision | None, score: float | None,
    versions: Versions, scan_timeout_s: float, now: float, clock_skew_s: float = DEFAULT_CLOCK_SKEW_S,
    risk_types: tuple[str, ...] = (),
) -> Step:
    kind = classify_declaration(state, decl.revision, decl.enterprise_id, decl.port)
    if isinstance(state, Fingerprint):
        return _recognised(kind)
    if kind is RevisionKind.DUPLICATE:
        assert state is not None
        return Step(None, emit=list(state.emitted), warnings=list(state.warnings), outcome=Outcome.DUPLICATE)
    if kind is RevisionKind.STALE:
        return Step(None, outcome=Outcome.STALE)
    if kind is RevisionKind.LATE_REVISION:
        return Step(None, outcome=Outcome.LATE_REVISION)
    if kind is RevisionKind.ENTERPRISE_CHANGED:
        assert state is not None
        return Step(None, outcome=Outcome.REFUSED, refusal=amendment_refusal(state, decl, "enterprise_id"))
    if kind is RevisionKind.PORT_CHANGED:
        assert state is not None
        return Step(None, outcome=Outcome.REFUSED, refusal=amendment_refusal(state, decl, "port"))
    assert decision is not None, "a new declaration revision needs a decision"
    decision = hold_pending_control(state, decision)
    summary = _summary(decl)
    is_mc = decision.action is Action.MACHINE_CHECK
    first = _instruction(
        summary, Stage.DECLARATION, decision.action, not is_mc, decision.selection_reason,
        decision.credit_class, score, versions, decision.reasons, now,
        risk_hits=decision.risk_hits, thresholds=decision.thresholds, risk_types=risk_types,
    )
    first_bytes = encode_instruction(first)
    warnings = [early_warning(decl, w, versions.policy_version, now) for w in decision.warnings]
    new_state = DeclarationState(
        Phase.AWAITING_SCAN if is_mc else Phase.FINAL, summary, decision.credit_class, score,
        versions.policy_version, versions.model_version, list(decision.risk_hits), [first_bytes], warnings=warnings,
        risk_types=list(risk_types),
    )
    step = Step(new_state, [first], [first_bytes], clear_deadline=state is not None and state.phase is Phase.AWAITING_SCAN,
                warnings=list(warnings), raised=[(w.severity._value_, w.rule) for w in decision.warnings], rules=decision.rules)
    early = state.early_scan if state is not None else None
    if early is not None and early.revision == decl.revision:
        # A scan that came first counts only if it binds; one that does not is dead-lettered and the
        # declaration waits for a proper scan or its deadline.
        step.refusal = scan_refusal(summary, early, clock_skew_s)
        if step.refusal is not None:
            early = None
    if is_mc and early is not None and early.revision == decl.revision:
        final = _scan_instruction(new_state, early, now)
        final_bytes = encode_instruction(final)
        new_state.phase = Phase.FINAL
        new_state.emitted.append(final_bytes)
        step.instructions.append(final)
        step.emit.append(final_bytes)
    elif is_mc:
        step.deadline = now + scan_timeout_s
        step.clear_deadline = False
    return step


def warning_id(declaration_id: str, revision: int, rule: str) -> str:
    return f"{declaration_id}:{revision}:{rule}"


def early_warning(decl: Declaration, proposal: WarningProposal, policy_version: str, now: float) -> bytes:
    """The ``EarlyWarning`` record of a warning a decision raised (validated: warnings are a strict
    topic for their consumers too). Stored with the state, so a redelivery re-emits the same bytes."""
    return EarlyWarning(
        warning_id=warning_id(decl.declaration_id, decl.revision, proposal.rule), severity=proposal.severity,
        subject_kind=proposal.subject_kind, subject_id=proposal.subject_id, source=WarningSource.RULE, rule=proposal.rule,
        evidence=proposal.evidence, event_time=decl.event_time, raised_at=datetime.fromtimestamp(now, UTC), port=decl.port,
        scenario=decl.scenario, declaration_id=decl.declaration_id, revision=decl.revision, policy_version=policy_version,
    ).model_dump_json(exclude_none=True).encode()


def _stored_versions(state: DeclarationState) -> Versions:
    """Later stages record the versions that made the declaration-time decision."""
    return Versions(state.policy_version, state.model_version)


def _scan_instruction(state: DeclarationState, scan: ScanSummary, now: float) -> Instruction:
    assert state.decl is not None
    suspicious = scan.verdict is ScanVerdict.SUSPICIOUS
    categories = scan.suspected_categories
    if suspicious:
        what = ", ".join(categories) if categories else "unspecified goods"
        reasons = (f"scan {scan.scan_id} ({scan.device_type}) suspicious: {what}; anomaly score {scan.anomaly_score:.2f}",)
        action = Action.INSPECT
    else:
        reasons = (f"scan {scan.scan_id} ({scan.device_type}) clean; anomaly score {scan.anomaly_score:.2f}",)
        action = Action.RELEASE
    return _instruction(
        state.decl, Stage.SCAN, action, True, SelectionReason.SCAN, state.credit_class, state.score,
        _stored_versions(state), reasons, now, suspected=list(categories) if suspicious else [], scan_id=scan.scan_id,
        risk_hits=state.risk_hits, risk_types=state.risk_types,
    )


def on_scan(state: DeclarationState | Fingerprint | None, scan: ScanResult, now: float,
            clock_skew_s: float = DEFAULT_CLOCK_SKEW_S) -> Step:
    """A scan checked on arrival (``decision.guards.check_scan_arrival``): kept if its declaration
    revision has not come yet, refused if it does not bind to the one awaiting it."""
    if isinstance(state, Fingerprint):  # after the final outcome, long delivered: nothing to join or re-emit
        return Step(None, outcome=Outcome.STALE if scan.revision < state.revision else Outcome.IGNORED_SCAN)
    if state is None or state.decl is None or state.decl.revision < scan.revision:
        # The declaration (or this revision of it) has not arrived yet: keep the scan for it.
        if state is not None and state.early_scan is not None and state.early_scan.scan_id == scan.scan_id:
            return Step(None, outcome=Outcome.DUPLICATE)
        early = scan_summary(scan)
        kept = DeclarationState(Phase.SCAN_FIRST, early_scan=early) if state is None else replace(state, early_scan=early)
        return Step(kept, outcome=Outcome.EARLY_SCAN)
    if state.decl.revision > scan.revision:
        return Step(None, outcome=Outcome.STALE)
    if state.phase is Phase.FINAL:
        if state.final_scan_id == scan.scan_id:
            return Step(None, emit=[state.emitted[-1]], outcome=Outcome.DUPLICATE)
        return Step(None, outcome=Outcome.IGNORED_SCAN)
    summary = scan_summary(scan)
    refusal = scan_refusal(state.decl, summary, clock_skew_s)
    if refusal is not None:  # the declaration keeps waiting for a proper scan or its deadline
        return Step(None, outcome=Outcome.REFUSED, refusal=Refusal(refusal.reason, refusal.detail))  # its own bytes go to the dead letters
    final = _scan_instruction(state, summary, now)
    final_bytes = encode_instruction(final)
    new_state = replace(state, phase=Phase.FINAL, final_scan_id=scan.scan_id, emitted=[*state.emitted, final_bytes])
    return Step(new_state, [final], [final_bytes], clear_deadline=True)


def on_timeout(state: DeclarationState | Fingerprint | None, revision: int, now: float) -> Step:
    """The port's scan deadline passed. Only a declaration still awaiting this revision's scan moves."""
    if isinstance(state, Fingerprint):  # final long ago
        return Step(None, clear_deadline=True, outcome=Outcome.IGNORED_TIMEOUT)
    if state is None or state.phase is not Phase.AWAITING_SCAN or state.decl is None or state.decl.revision != revision:
        return Step(None, clear_deadline=True, outcome=Outcome.IGNORED_TIMEOUT)
    final = _instruction(
        state.decl, Stage.TIMEOUT, Action.INSPECT, True, SelectionReason.TIMEOUT, state.credit_class,
        state.score, _stored_versions(state), ("scan timeout: no scan result before the port's deadline",), now,
        risk_hits=state.risk_hits, risk_types=state.risk_types,
    )
    final_bytes = encode_instruction(final)
    new_state = replace(state, phase=Phase.FINAL, emitted=[*state.emitted, final_bytes])
    return Step(new_state, [final], [final_bytes], clear_deadline=True, outcome=Outcome.TIMEOUT)


# ---- a fingerprint (decision.retention): the declaration's final outcome was delivered long ago ----
def _against_fingerprint(fp: Fingerprint, revision: int) -> RevisionKind:
    if revision < fp.revision:
        return RevisionKind.STALE
    return RevisionKind.DUPLICATE if revision == fp.revision else RevisionKind.LATE_REVISION


def _recognised(kind: RevisionKind) -> Step:
    """A record that meets a fingerprint is recognised and counted as with the full state, but
    nothing is re-emitted: the stored bytes are gone, and the instruction was delivered long before
    (the full state is kept ``state_compact_after_s`` after the final outcome for the redeliveries
    a crash can cause)."""
    outcome = {RevisionKind.DUPLICATE: Outcome.DUPLICATE, RevisionKind.STALE: Outcome.STALE}.get(kind, Outcome.LATE_REVISION)
    return Step(None, outcome=outcome)
