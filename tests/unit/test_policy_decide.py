"""Precedence and credit classes of the declaration-time decision."""

from __future__ import annotations

import pytest

from policy.config import PolicyError, load_policy
from policy.credit import UNKNOWN_ENTERPRISE, EnterpriseCredit, apply_credit_event
from policy.decide import decide, random_draw
from schemas import Action, CreditClass, SelectionReason
from tests.unit.factories import credit_event, declaration

POLICY = load_policy().model_copy(update={"random_selection": load_policy().random_selection.model_copy(update={"share": 0.0})})


def credit(cls: CreditClass, **kw) -> EnterpriseCredit:
    return EnterpriseCredit(credit_class=cls, **kw)


@pytest.mark.parametrize("cls", [c for c in CreditClass if c is not CreditClass.JOINT_PENALTY])
def test_thresholds_follow_credit_class(cls):
    t = POLICY.thresholds[cls]
    d = declaration()
    assert decide(POLICY, d, credit(cls), t.inspect).action is Action.INSPECT
    assert decide(POLICY, d, credit(cls), t.machine_check).action is Action.MACHINE_CHECK
    below = decide(POLICY, d, credit(cls), max(0.0, t.machine_check - 0.01))
    assert below.action is Action.RELEASE and below.credit_class is cls


def test_aeo_is_treated_more_leniently_than_focus_list():
    d = declaration()
    score = 0.7
    assert decide(POLICY, d, credit(CreditClass.AEO), score).action is Action.RELEASE
    assert decide(POLICY, d, credit(CreditClass.FOCUS_LIST), score).action is Action.INSPECT


def test_zero_tariff_without_active_qualification_is_inspected_before_model():
    d = declaration(scenario="zero-tariff")
    out = decide(POLICY, d, credit(CreditClass.AEO), 0.0)
    assert out.action is Action.INSPECT and out.selection_reason is SelectionReason.RULE
    qualified = credit(CreditClass.AEO, qualifications={"zero-tariff": "active"})
    assert decide(POLICY, d, qualified, 0.0).action is Action.RELEASE
    suspended = credit(CreditClass.AEO, qualifications={"zero-tariff": "suspended"})
    assert "suspended" in decide(POLICY, d, suspended, 0.0).reasons[0]


def test_most_severe_wins_and_earlier_stage_names_the_reason_on_ties():
    d = declaration(scenario="processing-value-added")
    out = decide(POLICY, d, credit(CreditClass.GENERAL), 0.99)  # rule inspect and model inspect
    assert out.action is Action.INSPECT and out.selection_reason is SelectionReason.RULE
    assert len(out.reasons) == 2


def test_joint_penalty_overrides_certification():
    state = apply_credit_event(credit(CreditClass.AEO), credit_event(event_id="P1", event_type="joint-penalty-imposed", credit_class=None))
    assert state.effective_class is CreditClass.JOINT_PENALTY
    out = decide(POLICY, declaration(), state, 0.0)
    assert out.action is Action.MACHINE_CHECK and out.selection_reason is SelectionReason.RULE


def test_random_selection_is_deterministic_and_near_its_share():
    policy = load_policy().model_copy(update={"random_selection": load_policy().random_selection.model_copy(update={"share": 0.05})})
    ids = [f"D{i}" for i in range(20000)]
    picked = [i for i in ids if decide(policy, declaration(declaration_id=i), credit(CreditClass.GENERAL), 0.0).selection_reason is SelectionReason.RANDOM]
    again = [i for i in ids if random_draw(policy.seed, i) < 0.05]
    assert picked == again
    assert 0.045 < len(picked) / len(ids) < 0.055
    other_seed = [i for i in ids if random_draw(policy.seed + 1, i) < 0.05]
    assert other_seed != picked


def test_credit_fold_is_idempotent_and_tracks_lifecycle():
    s = UNKNOWN_ENTERPRISE
    reg = credit_event(event_id="Q1", event_type="qualification-registered", credit_class=None, qualification="zero-tariff")
    s1 = apply_credit_event(s, reg)
    assert s1.qualified_for(__import__("schemas").Qualification.ZERO_TARIFF)
    assert apply_credit_event(s1, reg) is s1
    s2 = apply_credit_event(s1, credit_event(event_id="Q2", event_type="qualification-revoked", credit_class=None, qualification="zero-tariff"))
    assert s2.qualifications["zero-tariff"] == "revoked"
    assert type(s2).from_bytes(s2.to_bytes()) == s2


def test_bad_policy_file_is_refused(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("version: x\nseed: 1\nthresholds: {general: {machine_check: 0.9, inspect: 0.5}}\n")
    with pytest.raises(PolicyError, match="invalid"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
