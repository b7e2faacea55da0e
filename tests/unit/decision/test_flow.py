"""The declaration state machine, driven deterministically without a broker."""

from __future__ import annotations

import pytest

from decision.flow import Versions, on_declaration, on_scan, on_timeout
from decision.state import Outcome, Phase
from policy.decide import Decision
from schemas import Action, ControlInstruction, CreditClass, SelectionReason, Stage
from tests.unit.factories import declaration, scan

V = Versions("policy-1", "model-1")
MC = Decision(Action.MACHINE_CHECK, SelectionReason.MODEL_THRESHOLD, CreditClass.GENERAL, ("score high",))
RELEASE = Decision(Action.RELEASE, SelectionReason.NONE, CreditClass.GENERAL, ("score low",))


def decide_mc(state, decl=None, now=100.0):
    return on_declaration(state, decl or declaration(), MC, 0.7, V, 60.0, now)


def test_release_is_final_and_valid_instruction():
    step = on_declaration(None, declaration(), RELEASE, 0.1, V, 60.0, 100.0)
    assert step.state.phase is Phase.FINAL
    assert len(step.instructions) == 1
    parsed = ControlInstruction.model_validate_json(step.emit[0])
    assert parsed.instruction_id == "D1:1:declaration"
    assert parsed.final and parsed.action is Action.RELEASE
    assert parsed.policy_version == "policy-1" and parsed.model_version == "model-1"


def test_machine_check_waits_then_clean_scan_releases():
    step = decide_mc(None)
    assert step.state.phase is Phase.AWAITING_SCAN and step.deadline == 160.0
    assert step.instructions[0].final is False
    final = on_scan(step.state, scan(verdict="clean"), 120.0)
    [instr] = final.instructions
    assert instr.action is Action.RELEASE and instr.stage is Stage.SCAN and instr.final
    assert final.clear_deadline and final.state.phase is Phase.FINAL


def test_suspicious_scan_inspects_and_names_categories():
    step = decide_mc(None)
    final = on_scan(step.state, scan(verdict="suspicious", anomaly_score=0.9, suspected_categories=("firearms",)), 120.0)
    [instr] = final.instructions
    assert instr.action is Action.INSPECT and instr.suspected_categories == ["firearms"]
    assert "firearms" in instr.reasons[0]


def test_scan_before_declaration_is_joined_when_declaration_arrives():
    early = on_scan(None, scan(verdict="suspicious"), 90.0)
    assert early.outcome is Outcome.EARLY_SCAN and not early.instructions
    step = decide_mc(early.state)
    assert [i.stage for i in step.instructions] == [Stage.DECLARATION, Stage.SCAN]
    assert step.instructions[1].action is Action.INSPECT
    assert step.deadline is None and step.state.phase is Phase.FINAL


def test_timeout_inspects_only_while_awaiting_scan():
    step = decide_mc(None)
    timed = on_timeout(step.state, 1, 200.0)
    [instr] = timed.instructions
    assert instr.action is Action.INSPECT and instr.stage is Stage.TIMEOUT and instr.selection_reason is SelectionReason.TIMEOUT
    # A late scan after the timeout changes nothing.
    late = on_scan(timed.state, scan(scan_id="SC9"), 210.0)
    assert late.outcome is Outcome.IGNORED_SCAN and not late.instructions


def test_duplicate_declaration_re_emits_identical_instruction_without_deciding():
    step = on_declaration(None, declaration(), RELEASE, 0.1, V, 60.0, 100.0)
    again = on_declaration(step.state, declaration(), None, None, V, 60.0, 500.0)
    assert again.outcome is Outcome.DUPLICATE and again.state is None
    assert again.emit == step.emit and not again.instructions  # the stored bytes, not a new decision


def test_duplicate_scan_re_emits_same_final():
    step = decide_mc(None)
    final = on_scan(step.state, scan(), 120.0)
    again = on_scan(final.state, scan(), 130.0)
    assert again.outcome is Outcome.DUPLICATE and again.emit == final.emit


def test_new_revision_supersedes_pending_machine_check():
    step = decide_mc(None)
    rev2 = on_declaration(step.state, declaration(revision=2), RELEASE, 0.1, V, 60.0, 110.0)
    assert rev2.outcome is Outcome.DECIDED and rev2.deadline == 110.0 + 60.0  # replaces revision 1's deadline
    assert rev2.instructions[0].instruction_id == "D1:2:declaration"
    # The scan for the superseded revision no longer decides anything.
    assert on_scan(rev2.state, scan(revision=1), 120.0).outcome is Outcome.STALE


def test_revision_after_final_outcome_does_not_reopen():
    step = on_declaration(None, declaration(), RELEASE, 0.1, V, 60.0, 100.0)
    late = on_declaration(step.state, declaration(revision=2), None, None, V, 60.0, 110.0)
    assert late.outcome is Outcome.LATE_REVISION and not late.instructions and late.state is None


def test_stale_revision_is_ignored():
    step = on_declaration(None, declaration(revision=3), RELEASE, 0.1, V, 60.0, 100.0)
    assert on_declaration(step.state, declaration(revision=2), None, None, V, 60.0, 101.0).outcome is Outcome.STALE


@pytest.mark.parametrize("phase_step", ["release", "timeout"])
def test_timeout_for_wrong_revision_or_final_is_ignored(phase_step):
    step = on_declaration(None, declaration(), RELEASE, 0.1, V, 60.0, 100.0) if phase_step == "release" else decide_mc(None)
    state = step.state if phase_step == "release" else on_timeout(step.state, 1, 200.0).state
    assert on_timeout(state, 1, 300.0).outcome is Outcome.IGNORED_TIMEOUT
