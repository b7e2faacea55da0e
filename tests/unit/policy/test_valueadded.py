"""Processing value-added: duty due under the threshold, implausible claims selected and warned of."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.config import PolicyError, load_policy
from policy.credit import UNKNOWN_ENTERPRISE, apply_credit_event
from policy.decide import decide
from policy.valueadded import BELOW_THRESHOLD, IMPLAUSIBLE, RatioHistory
from schemas import Action, Scenario, SelectionReason, Severity, SubjectKind
from tests.unit.factories import FIXTURE_POLICY, credit_event, declaration

POLICY = load_policy(FIXTURE_POLICY).model_copy(
    update={"random_selection": load_policy(FIXTURE_POLICY).random_selection.model_copy(update={"share": 0.0})})
QUALIFIED = apply_credit_event(UNKNOWN_ENTERPRISE, credit_event(
    event_type="qualification-registered", qualification="processing-value-added", credit_class=None))


def processing(imported: float, added: float, **over):
    return declaration(scenario="processing-value-added", declared_value=imported + added,
                       imported_material_value=imported, value_added=added, **over)


def history(enterprise: float | None = 0.5, rows: int = 40, chapter: float | None = 0.6, chapter_rows: int = 900) -> RatioHistory:
    return RatioHistory(enterprise, rows, chapter, chapter_rows)


def test_under_the_threshold_duty_is_due_and_the_goods_are_not_released_duty_free():
    d = decide(POLICY, processing(1000.0, 250.0), QUALIFIED, 0.0, history=history())
    assert d.action is Action.INSPECT and d.selection_reason is SelectionReason.RULE
    assert d.reasons[0].startswith("duty due: value added 25.0% of imported materials is below the 30% threshold")
    assert d.rules == (BELOW_THRESHOLD,) and d.warnings == ()  # declared honestly: duty, not a warning


def test_at_the_threshold_and_within_the_history_the_goods_go_free():
    d = decide(POLICY, processing(1000.0, 300.0), QUALIFIED, 0.0, history=history(0.35))
    assert d.action is Action.RELEASE and d.rules == () and d.warnings == ()


def test_a_claim_far_above_the_enterprises_history_is_selected_with_an_early_warning():
    d = decide(POLICY, processing(1000.0, 1500.0, enterprise_id="E7"), QUALIFIED, 0.0, history=history(0.45, 57))
    assert d.action is Action.INSPECT and d.selection_reason is SelectionReason.RULE and d.rules == (IMPLAUSIBLE,)
    assert "ratio 1.50 against 0.45 in the enterprise's history (57 declarations)" in d.reasons[0]
    # Just inside the margin (1.0 by default): plausible.
    assert decide(POLICY, processing(1000.0, 1400.0), QUALIFIED, 0.0, history=history(0.45, 57)).rules == ()
    (w,) = d.warnings
    assert (w.rule, w.severity, w.subject_kind, w.subject_id) == (IMPLAUSIBLE, Severity.HIGH, SubjectKind.ENTERPRISE, "E7")
    assert any("mean ratio 0.45 over 57 declarations" in e for e in w.evidence) and all(len(e) <= 200 for e in w.evidence)


def test_without_enough_enterprise_history_the_hs_chapter_is_the_reference():
    thin = history(0.45, rows=3, chapter=1.5)
    assert decide(POLICY, processing(1000.0, 1600.0), QUALIFIED, 0.0, history=thin).rules == ()  # 1.6 is near the chapter's 1.5
    d = decide(POLICY, processing(1000.0, 2600.0), QUALIFIED, 0.0, history=thin)
    assert d.rules == (IMPLAUSIBLE,) and "HS chapter's history" in d.reasons[0]
    # No usable history at all: nothing to compare with, no warning.
    assert decide(POLICY, processing(1000.0, 9000.0), QUALIFIED, 0.0, history=history(None, 0, None, 0)).rules == ()
    assert decide(POLICY, processing(1000.0, 9000.0), QUALIFIED, 0.0).rules == ()


def test_the_threshold_and_actions_come_from_the_policy(tmp_path):
    va = POLICY.processing_value_added.model_copy(update={"threshold": 0.2, "below_threshold_action": Action.MACHINE_CHECK})
    lenient = POLICY.model_copy(update={"processing_value_added": va})
    assert decide(lenient, processing(1000.0, 250.0), QUALIFIED, 0.0).action is Action.RELEASE
    d = decide(lenient, processing(1000.0, 150.0), QUALIFIED, 0.0)
    assert d.action is Action.MACHINE_CHECK and "below the 20% threshold" in d.reasons[0]
    text = Path(FIXTURE_POLICY).read_text() + "\nprocessing_value_added: {threshold: -0.1}\n"
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PolicyError, match=r"processing_value_added\.threshold"):
        load_policy(tmp_path / "p.yaml")


def test_other_scenarios_are_not_judged_by_value_added():
    d = decide(POLICY, declaration(), QUALIFIED, 0.0, history=history())
    assert d.rules == () and d.action is Action.RELEASE
    assert declaration().scenario is Scenario.GENERAL_TRADE


def test_the_shipped_policy_has_the_30_percent_threshold():
    va = load_policy().processing_value_added
    assert (va.threshold, va.below_threshold_action, va.implausible_action) == (0.30, Action.INSPECT, Action.INSPECT)
